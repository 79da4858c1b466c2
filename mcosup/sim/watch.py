"""The watch machinery: one long-lived chunked response per watch.

A watch starts from the current state (`resourceVersion` unset or "0", or `sendInitialEvents`) or
resumes from a resourceVersion still in the store's per-type log (older: 410 Expired, sent as an
ERROR event). Events are filtered by namespace and selectors, with the transitions the apiserver's
watch cache computes (an object entering a selector is ADDED, leaving it DELETED); BOOKMARKs are sent
when allowed, every `bookmark_interval` and before the timeout. `faults.cut_watches()` ends streams,
cleanly or by dropping the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from mcosup.sim import errors, selectors, tables
from mcosup.sim.reads import Reads
from mcosup.sim.resources import ResourceType
from mcosup.sim.store import ADDED, CUT, DELETED, MODIFIED, Watcher, WatchEvent
from mcosup.sim.wire import Ctx, RequestRecord, Target, as_version, truthy

log = logging.getLogger(__name__)


class Watching(Reads):
    """GET with `watch=true` (or the legacy `/watch/` paths)."""

    async def _watch(self, request: web.Request, t: Target, ctx: Ctx) -> web.StreamResponse:
        rt = t.rt
        q = ctx.query
        labels, fields = self._selectors(t, q)
        if t.name is not None:  # legacy /watch/<plural>/<name>
            fields = selectors.FieldSelector(
                (*fields.requirements, selectors.FieldRequirement("metadata.name", False, t.name))
            )
        namespace = t.namespace if rt.namespaced else None
        rv_param = q.get("resourceVersion", "")
        try:
            timeout = float(q.get("timeoutSeconds") or self.default_watch_timeout)
        except ValueError:
            raise errors.bad_request(f"timeoutSeconds: invalid value {q.get('timeoutSeconds')!r}") from None
        bookmarks = truthy(q.get("allowWatchBookmarks"))
        send_initial = truthy(q.get("sendInitialEvents"))
        api_version = t.api_version
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        resource_log = self.store.log(rt.key)

        def line_for(kind: str, obj: dict[str, Any]) -> bytes:
            if as_table:
                shown = self._table(
                    t, ctx, [as_version(obj, api_version)], obj["metadata"]["resourceVersion"]
                )
                return orjson.dumps({"type": kind, "object": shown}) + b"\n"
            return _event_line(kind, obj, api_version)

        watcher = Watcher(rt.key)
        initial: list[dict[str, Any]] = []
        expired: errors.ApiStatusError | None = None
        if rv_param in ("", "0") or send_initial:
            initial = self._matching(Target(rt, t.version, namespace, None, None), labels, fields)
            start_rv = self.store.rv
        else:
            try:
                start_rv = int(rv_param)
            except ValueError:
                # The storage layer's parse error, passed through as a plain 500.
                raise errors.storage(
                    f'resourceVersion: Invalid value: "{rv_param}": strconv.ParseUint: parsing '
                    f'"{rv_param}": invalid syntax'
                ) from None
            if start_rv < resource_log.compacted_rv:
                expired = errors.expired(
                    f"too old resource version: {start_rv} ({resource_log.compacted_rv})"
                )
            else:
                for event in resource_log.events:
                    if event.rv > start_rv:
                        watcher.queue.put_nowait(event)
        if expired is None:
            resource_log.watchers.add(watcher)

        def matches(obj: dict[str, Any] | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            return (labels.empty or labels.matches(meta.get("labels"))) and fields.matches(obj)

        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
        )
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            # Logged once the stream is open, so tests can wait for a client's watch to be in place.
            self._streaming.add(id(request))
            self.requests.append(
                RequestRecord(request.method, request.path, dict(request.query), ctx.user.username, 200)
            )
            if expired is not None:
                await response.write(orjson.dumps({"type": "ERROR", "object": expired.body()}) + b"\n")
                await response.write_eof()
                return response
            for i in range(0, len(initial), 500):  # a few sends, not one per object nor one huge one
                await response.write(b"".join(line_for("ADDED", obj) for obj in initial[i : i + 500]))
            if send_initial and bookmarks:
                await response.write(self._bookmark(rt, api_version, start_rv, initial_end=True))
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if bookmarks:
                        await response.write(self._bookmark(rt, api_version, self.store.rv))
                    break
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    if watcher.queue.empty():
                        item = await asyncio.wait_for(watcher.queue.get(), timeout=wait)
                    else:
                        item = watcher.queue.get_nowait()
                except TimeoutError:
                    if bookmarks and watcher.queue.empty():
                        await response.write(self._bookmark(rt, api_version, self.store.rv))
                    continue
                # Everything queued by now goes out in one chunk: a burst of writes costs the stream
                # one send, not one per event.
                lines: list[bytes] = []
                while item is not CUT:
                    assert isinstance(item, WatchEvent)
                    if (line := self._line(item, matches, line_for, q, api_version, as_table)) is not None:
                        lines.append(line)
                    if watcher.queue.empty():
                        break
                    item = watcher.queue.get_nowait()
                if lines:
                    await response.write(b"".join(lines))
                if item is CUT:
                    if watcher.abrupt and request.transport is not None:
                        request.transport.abort()
                        return response
                    break
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        except Exception:
            # The stream is already open: a Status can no longer be sent, so end the watch like a
            # dropped connection (clients re-watch) and say why in the log.
            log.exception("emulator: watch of %s failed; closing the stream", request.path_qs)
            if request.transport is not None:
                request.transport.abort()
        finally:
            resource_log.watchers.discard(watcher)
        return response

    @staticmethod
    def _line(
        item: WatchEvent,
        matches: Callable[[dict[str, Any] | None], bool],
        line_for: Callable[[str, dict[str, Any]], bytes],
        q: Mapping[str, str],
        api_version: str,
        as_table: bool,
    ) -> bytes | None:
        """The stream's line for one event, or None when the watch's selectors hide it; the line is
        encoded once per event for every watch that shows it the same way."""
        kind = _transition(item, matches)
        if kind is None:
            return None
        cache_key = (kind, api_version + (f";table;{q.get('includeObject')}" if as_table else ""))
        line = item.cache.get(cache_key)
        if line is None:
            shown = item.obj
            if kind == DELETED and item.type == MODIFIED and item.old is not None:
                # Leaving the selector: the last state that matched, at the event's version.
                old_meta = {**item.old["metadata"], "resourceVersion": str(item.rv)}
                shown = {**item.old, "metadata": old_meta}
            line = item.cache[cache_key] = line_for(kind, shown)
        return line

    def _bookmark(self, rt: ResourceType, api_version: str, rv: int, *, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return (
            orjson.dumps(
                {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": api_version, "metadata": meta}}
            )
            + b"\n"
        )


def _event_line(kind: str, obj: dict[str, Any], api_version: str) -> bytes:
    return orjson.dumps({"type": kind, "object": as_version(obj, api_version)}) + b"\n"


def _transition(event: WatchEvent, matches: Any) -> str | None:
    """The event type a selector-filtered watch sees, as the apiserver's watch cache computes it."""
    now = matches(event.obj)
    if event.type == ADDED:
        return ADDED if now else None
    if event.type == DELETED:
        return DELETED if now else None
    before = matches(event.old)
    if now and before:
        return MODIFIED
    if now:
        return ADDED
    if before:
        return DELETED
    return None
