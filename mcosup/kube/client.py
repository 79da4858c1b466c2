"""The API client facade: exactly the calls mcosup makes, over one HTTP transport.

Where the server is and how to authenticate comes from :mod:`mcosup.kube.clientconfig` (kubeconfig or
in-cluster config: server URL, TLS context, ``Authorization`` header source). Requests are made here,
on raw JSON with orjson, so objects stay plain dicts (no generated model classes: they cost memory per
cached object and drop unknown fields) and so content types are always explicit. The HTTP itself is a
:mod:`~mcosup.kube.transport`: aiohttp's by default, the lighter :class:`~mcosup.kube.transport.Http1`
where a process's start-up matters more than its throughput (``connect(..., light=True)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import orjson

from mcosup.kube import clientconfig, errors, transport
from mcosup.kube.resources import EVENTS, PODS, Resource
from mcosup.model.objects import Obj
from mcosup.runtime.settings import KubeSettings

log = logging.getLogger(__name__)

PatchType = Literal["merge", "strategic", "json"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


#: Connections per client: each informer holds one long-lived watch connection; leave room for them
#: plus ordinary calls.
CONNECTION_LIMIT = 64


@contextlib.asynccontextmanager
async def connect(
    settings: KubeSettings,
    *,
    retry: errors.RetryPolicy | None = None,
    config: clientconfig.ClientConfig | None = None,
    light: bool = False,
) -> AsyncIterator[Kube]:
    """A client for the cluster ``settings`` name (kubeconfig, else in-cluster config), closed on exit.

    ``config`` overrides what ``settings`` would load (tests build in-cluster configs this way).
    ``light``: HTTP by :class:`~mcosup.kube.transport.Http1`, which imports in milliseconds where aiohttp
    takes ~0.15 s, for a process whose start is on a user's way (the builder pod).
    """
    if config is None:
        config = await clientconfig.load(settings)
    # HTTPS_PROXY/NO_PROXY apply, as they do for kubectl, read once: every request goes to the same server.
    proxy = transport.env_proxy(config.server)
    http: transport.Transport
    if light:
        http = transport.Http1(ssl_context=config.ssl_context, proxy=proxy)
    else:
        from mcosup.kube.transport_aiohttp import Aiohttp

        # read_bufsize: a watch event with a large object must fit aiohttp's read buffer.
        http = Aiohttp(
            ssl_context=config.ssl_context, limit=CONNECTION_LIMIT, proxy=proxy, read_bufsize=2**21
        )
    try:
        yield Kube(http, config, settings, retry or errors.RetryPolicy())
    finally:
        await http.close()


class Kube:
    """Typed calls against the API server; every one goes through :meth:`request`."""

    def __init__(
        self,
        http: transport.Transport,
        config: clientconfig.ClientConfig,
        settings: KubeSettings,
        retry: errors.RetryPolicy,
    ):
        self._http = http
        self._host = config.server
        self._authorization = config.authorization
        # tls-server-name: the name the server's certificate is checked against, instead of the host.
        self._server_hostname = config.server_hostname
        self.settings = settings
        self.retry = retry

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        authorization = await self._authorization()
        if authorization:
            headers["Authorization"] = authorization
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        retry: errors.RetryPolicy | None = None,
    ) -> Any:
        """One API call with the retry policy applied; returns the decoded JSON answer."""
        policy = retry or self.retry
        data = orjson.dumps(body) if body is not None else None
        attempt = 0
        while True:
            attempt += 1
            headers = await self._headers(content_type or ("application/json" if data is not None else None))
            try:
                async with asyncio.timeout(self.settings.request_timeout):
                    answer = await self._http.fetch(
                        method,
                        self._host + path,
                        params=query,
                        body=data,
                        headers=headers,
                        server_hostname=self._server_hostname,
                    )
                if answer.status < 400:
                    return orjson.loads(answer.body) if answer.body else None
                error = errors.from_status(answer.status, answer.body, answer.headers.get("Retry-After"))
            except (transport.TransportError, TimeoutError) as exc:
                error = errors.ConnectionFailed(f"{method} {path}: {type(exc).__name__}: {exc}")
            if attempt >= policy.attempts or not policy.retryable(error, method):
                raise error
            delay = policy.delay(error, attempt)
            log.debug("retrying %s %s in %.2fs after %s", method, path, delay, error)
            await asyncio.sleep(delay)

    def _query(self, dry_run: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        query = {"fieldManager": self.settings.field_manager}
        if dry_run:
            query["dryRun"] = "All"
        if extra:
            query.update(extra)
        return query

    # Reads.

    async def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> Obj:
        result: Obj = await self.request("GET", resource.path(name, namespace))
        return result

    async def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        """Every matching object and the list's resourceVersion (to watch from)."""
        query: dict[str, str] = {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        result = await self.request("GET", resource.path(namespace=namespace), query=query)
        items: list[Obj] = result.get("items") or []
        for item in items:
            # Lists omit kind/apiVersion on items; put them back so objects look the same everywhere.
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
        return items, str(result.get("metadata", {}).get("resourceVersion", ""))

    async def pod_log(
        self, name: str, namespace: str, *, container: str | None = None, tail_lines: int | None = None
    ) -> str:
        """The pod's log (``pods/log``), the last ``tail_lines`` lines when given."""
        query: dict[str, str] = {}
        if container:
            query["container"] = container
        if tail_lines is not None:
            query["tailLines"] = str(tail_lines)
        headers = await self._headers(None)
        headers["Accept"] = "text/plain"
        path = PODS.path(name, namespace, "log")
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                answer = await self._http.fetch(
                    "GET",
                    self._host + path,
                    params=query,
                    headers=headers,
                    server_hostname=self._server_hostname,
                )
        except (transport.TransportError, TimeoutError) as exc:
            raise errors.ConnectionFailed(f"GET {path}: {type(exc).__name__}: {exc}") from exc
        if answer.status >= 400:
            raise errors.from_status(answer.status, answer.body)
        return answer.body.decode(errors="replace")

    async def watch(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[Obj]:
        """Watch events (``type``, ``object``) until the server ends the stream; ERROR events raise."""
        server_timeout = timeout_seconds or self.settings.watch_timeout
        query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(server_timeout)}
        if resource_version:
            query["resourceVersion"] = resource_version
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        path = resource.path(namespace=namespace)
        try:
            # The server closes the stream after timeoutSeconds; a silent connection beyond that (plus
            # slack for bookmarks) is dead, so the client gives up on it too.
            async with self._http.stream(
                "GET",
                self._host + path,
                params=query,
                headers=await self._headers(None),
                connect_timeout=self.settings.request_timeout,
                read_timeout=server_timeout + 30,
                server_hostname=self._server_hostname,
            ) as resp:
                if resp.status >= 400:
                    raise errors.from_status(resp.status, await resp.read(), resp.headers.get("Retry-After"))
                async for line in _lines(resp.chunks()):
                    event: Obj = orjson.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise errors.from_status(int(status.get("code") or 500), status)
                    yield event
        except (transport.TransportError, TimeoutError) as exc:
            raise errors.ConnectionFailed(f"watch {path}: {type(exc).__name__}: {exc}") from exc

    # Writes.

    async def create(
        self, resource: Resource, body: Obj, *, namespace: str | None = None, dry_run: bool = False
    ) -> Obj:
        result: Obj = await self.request(
            "POST", resource.path(namespace=namespace), query=self._query(dry_run), body=body
        )
        return result

    async def replace(
        self, resource: Resource, name: str, body: Obj, *, namespace: str | None = None, dry_run: bool = False
    ) -> Obj:
        result: Obj = await self.request(
            "PUT", resource.path(name, namespace), query=self._query(dry_run), body=body
        )
        return result

    async def replace_status(
        self, resource: Resource, name: str, body: Obj, *, namespace: str | None = None
    ) -> Obj:
        result: Obj = await self.request(
            "PUT", resource.path(name, namespace, "status"), query=self._query(False), body=body
        )
        return result

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
        subresource: str = "",
        dry_run: bool = False,
    ) -> Obj:
        """Patch with an explicit content type; merge patch unless asked otherwise."""
        if patch_type == "strategic" and not resource.builtin:
            raise ValueError(f"{resource}: custom resources take merge or JSON patches, not strategic")
        result: Obj = await self.request(
            "PATCH",
            resource.path(name, namespace, subresource),
            query=self._query(dry_run),
            body=patch,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        )
        return result

    async def patch_status(
        self, resource: Resource, name: str, patch: Obj, *, namespace: str | None = None
    ) -> Obj:
        return await self.patch(resource, name, patch, namespace=namespace, subresource="status")

    async def delete(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None = None,
        propagation: Literal["Background", "Foreground", "Orphan"] = "Background",
        grace_period: int | None = None,
        uid: str | None = None,
        dry_run: bool = False,
    ) -> Obj | None:
        """Delete; ``uid`` makes it conditional on the object still being that one."""
        options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if grace_period is not None:
            options["gracePeriodSeconds"] = grace_period
        if uid:
            options["preconditions"] = {"uid": uid}
        if dry_run:
            options["dryRun"] = ["All"]
        result: Obj | None = await self.request("DELETE", resource.path(name, namespace), body=options)
        return result

    async def evict(self, name: str, namespace: str) -> None:
        """Evict a pod through the Eviction API; TooManyRequests when a PodDisruptionBudget forbids it.

        Not retried here: the drain decides how to wait for a PDB, and reports which one blocks.
        """
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        await self.request(
            "POST", PODS.path(name, namespace, "eviction"), body=body, retry=errors.RetryPolicy(attempts=1)
        )

    async def record_event(
        self,
        involved: Obj,
        *,
        reason: str,
        message: str,
        type_: Literal["Normal", "Warning"] = "Normal",
        component: str = "mcosup",
        when: datetime.datetime | None = None,
    ) -> None:
        """Emit a core/v1 Event about ``involved``. Failing to record an event never fails the caller.

        The Event lives in the involved object's namespace, or in ``default`` for a cluster-scoped object
        (pools, nodes): the API server accepts no other. ``when`` it happened, if not now (an Event
        queued behind others keeps its own time).
        """
        meta = involved.get("metadata", {})
        event_namespace = meta.get("namespace") or "default"
        now = (when or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": event_namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", ""),
                "kind": involved.get("kind", ""),
                "name": meta.get("name", ""),
                "namespace": meta.get("namespace", ""),
                "uid": meta.get("uid", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
        }
        try:
            await self.create(EVENTS, event, namespace=event_namespace)
        except errors.ApiError as exc:
            log.warning(
                "could not record event %s on %s/%s: %s", reason, involved.get("kind"), meta.get("name"), exc
            )


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Newline-delimited events of a watch stream, however the server splits them into frames.

    Split by hand rather than with aiohttp's ``readline``, which caps a line at its buffer size: one
    event carrying a large MachineConfig is longer than that.
    """
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
