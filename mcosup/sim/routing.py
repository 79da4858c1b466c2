"""The HTTP front of the emulator: one aiohttp handler for every path.

Authenticates the bearer token, applies the injected faults (`emu.faults`), logs the request
(`emu.requests`), serves the unversioned endpoints (health, `/version`, discovery, OpenAPI), parses
an API path into a :class:`~mcosup.sim.wire.Target` and dispatches by verb and subresource to the
handlers; an `ApiStatusError` raised anywhere becomes the Status response it describes.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiohttp import web
from multidict import CIMultiDict

from mcosup.sim import discovery, errors, tables
from mcosup.sim.admission import UserInfo
from mcosup.sim.pods import PodSubresources
from mcosup.sim.watch import Watching
from mcosup.sim.wire import (
    Ctx,
    RequestRecord,
    Target,
    json_response,
    no_route,
    page_not_found,
    read_body,
    read_optional_body,
    truthy,
    warning_header,
)
from mcosup.sim.writes import Writes

log = logging.getLogger(__name__)

KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-mcosup-sim",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
CR_PATCH_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
]


class Routing(Writes, PodSubresources, Watching):
    """Every request enters at `_handle`."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        user_name = ""
        status = 500
        try:
            user = self._authenticate(request)
            user_name = user.username
            delay = self.faults.match_delay(request.method, request.path)
            if delay:
                await asyncio.sleep(delay)
            if self.faults.match_reset(request.method, request.path) and request.transport is not None:
                status = 0
                request.transport.abort()
                return web.Response(status=499)  # never sent: the connection is gone
            rule = self.faults.match_failure(request.method, request.path)
            if rule is not None:
                headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
                details = {"retryAfterSeconds": rule.retry_after} if rule.retry_after is not None else None
                raise errors.ApiStatusError(
                    rule.status,
                    errors.REASONS.get(rule.status, "Unknown"),
                    rule.message,
                    details,
                    headers=headers,
                )
            response = await self._route(request, user)
            status = response.status
            return response
        except errors.ApiStatusError as exc:
            status = exc.code
            log.debug(
                "%s %s -> %d %s: %s", request.method, request.path_qs, exc.code, exc.reason, exc.message
            )
            return self._error_response(exc)
        except asyncio.CancelledError:
            status = 499
            raise
        except Exception as exc:
            log.exception("emulator: unhandled error for %s %s", request.method, request.path_qs)
            status = 500
            return self._error_response(errors.internal(f"{type(exc).__name__}: {exc}"))
        finally:
            if id(request) in self._streaming:
                self._streaming.discard(id(request))
            else:
                self.requests.append(
                    RequestRecord(request.method, request.path, dict(request.query), user_name, status)
                )

    def _error_response(self, exc: errors.ApiStatusError) -> web.Response:
        headers: CIMultiDict[str] = CIMultiDict(exc.headers)
        for warning in exc.warnings:
            headers.add("Warning", warning_header(warning))
        return web.Response(
            status=exc.code, body=orjson.dumps(exc.body()), content_type="application/json", headers=headers
        )

    def _authenticate(self, request: web.Request) -> UserInfo:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip() in self._tokens:
            return self._tokens[token.strip()]
        raise errors.unauthorized()

    async def _route(self, request: web.Request, user: UserInfo) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return json_response(
                {"paths": ["/api", "/api/v1", "/apis", "/version", "/healthz", "/readyz", "/livez"]}
            )
        head = parts[0]
        if head in ("healthz", "readyz", "livez") and len(parts) == 1:
            return web.Response(text="ok")
        if head == "version" and len(parts) == 1:
            return json_response(KUBE_VERSION)
        if head == "openapi" and parts[1:2] == ["v2"]:
            # An empty OpenAPI v2 document (protobuf: zero bytes is an empty message). Clients that
            # validate against it find no schema for any kind and skip client-side validation, which
            # is what they do for kinds a real server does not describe.
            if "protobuf" in request.headers.get("Accept", ""):
                return web.Response(
                    body=b"", content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
                )
            return json_response(
                {
                    "swagger": "2.0",
                    "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
                    "paths": {},
                    "definitions": {},
                }
            )
        if head == "openapi":
            return self._openapi(parts)
        if head == "api":
            if len(parts) == 1:
                return json_response(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}
                        ],
                    }
                )
            group, version, rest = "", parts[1], parts[2:]
        elif head == "apis":
            if len(parts) == 1:
                return json_response(discovery.group_list(self._types))
            if len(parts) == 2:
                group_doc = discovery.group(self._types, parts[1])
                if group_doc is None:
                    return page_not_found()
                return json_response(group_doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return page_not_found()
        if not discovery.serves(self._types, group, version):
            return page_not_found()
        if not rest:
            if request.method != "GET":
                raise errors.method_not_allowed()
            resources = discovery.resource_list(self._types, group, version)
            if resources is None:
                raise no_route()
            return json_response(resources)
        ctx = Ctx(user, request.query)
        watch = False
        if rest[0] == "watch":
            watch = True
            rest = rest[1:]
        target = self._target(group, version, rest)
        dry_run = request.query.getall("dryRun", [])
        if dry_run and any(d != "All" for d in dry_run):
            options_kind = {"PUT": "UpdateOptions", "PATCH": "PatchOptions", "DELETE": "DeleteOptions"}
            raise errors.invalid(
                options_kind.get(request.method, "CreateOptions"),
                "meta.k8s.io",
                "",
                [
                    {
                        "reason": "FieldValueNotSupported",
                        "field": "dryRun",
                        "message": f"Unsupported value: {orjson.dumps(dry_run).decode()}: "
                        'supported values: "All"',
                    }
                ],
            )
        ctx.dry_run = bool(dry_run)
        if watch or truthy(request.query.get("watch")):
            if request.method != "GET" or (target.name is not None and not watch):
                raise errors.method_not_allowed()
            return await self._watch(request, target, ctx)
        return await self._dispatch(request, target, ctx)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace: str | None = None
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        rt = self._types.get((group, version, rest[0]))
        if rt is None or len(rest) > 3:
            raise no_route()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if rt.namespaced and name is not None and namespace is None:
            raise no_route()
        if not rt.namespaced and namespace is not None:
            raise no_route()
        if sub is not None and sub not in rt.subresources():
            raise no_route()
        return Target(rt, version, namespace, name, sub)

    async def _dispatch(self, request: web.Request, t: Target, ctx: Ctx) -> web.StreamResponse:
        method = request.method
        if t.name is None:
            if method == "GET":
                return json_response(
                    self._list(t, ctx, tables.wants_table(request.headers.get("Accept", "")))
                )
            if method == "POST":
                obj = await self._create(t, ctx, await read_body(request))
                return json_response(obj, 201, ctx.warnings)
            if method == "DELETE":
                if t.rt.builtin and t.rt.plural == "namespaces":  # no DeleteCollection for namespaces
                    raise errors.method_not_allowed()
                result = await self._delete_collection(t, ctx, await read_optional_body(request))
                return json_response(result, 200, ctx.warnings)
            raise errors.method_not_allowed()
        if t.subresource == "log":
            if method != "GET":
                raise errors.method_not_allowed()
            return await self._pod_log(request, t)
        if t.subresource == "eviction":
            if method != "POST":
                raise errors.method_not_allowed()
            result = await self._evict(t, ctx, await read_body(request))
            return json_response(result, 201, ctx.warnings)
        if t.subresource == "binding":
            if method != "POST":
                raise errors.method_not_allowed()
            return json_response(self._bind(t, await read_body(request)), 201, ctx.warnings)
        if method == "GET":
            obj = self._get(t)
            if tables.wants_table(request.headers.get("Accept", "")):
                return json_response(self._table(t, ctx, [obj], obj["metadata"]["resourceVersion"]))
            return json_response(obj)
        if method == "PUT":
            obj = await self._update(t, ctx, await read_body(request))
            return json_response(obj, 200, ctx.warnings)
        if method == "PATCH":
            patch_type = PATCH_TYPES.get(request.content_type)
            if (
                patch_type is None
                or patch_type == "apply"
                or (patch_type == "strategic" and not t.rt.builtin)
            ):
                if patch_type is None and t.rt.builtin:
                    # Built-in kinds are routed by go-restful, which refuses the type before any handler.
                    raise errors.ApiStatusError(
                        415, "UnsupportedMediaType", "415: Unsupported Media Type", {}
                    )
                accepted = list(PATCH_TYPES) if t.rt.builtin else CR_PATCH_TYPES
                raise errors.unsupported_media_type(request.content_type, accepted)
            try:
                patch = orjson.loads(await request.read())
            except orjson.JSONDecodeError as exc:
                raise errors.bad_request(f"error decoding patch: {exc}") from None
            obj = await self._patch(t, ctx, patch_type, patch)
            return json_response(obj, 200, ctx.warnings)
        if method == "DELETE" and t.subresource is None:
            obj = await self._delete(t, ctx, await read_optional_body(request))
            return json_response(obj, 200, ctx.warnings)
        raise errors.method_not_allowed()

    def _openapi(self, parts: list[str]) -> web.Response:
        if len(parts) < 2 or parts[1] != "v3":
            raise no_route()
        if len(parts) == 2:
            return json_response(discovery.openapi_v3_index(self._types, self.store.rv))
        doc = discovery.openapi_v3_document(self._types, "/".join(parts[2:]), KUBE_VERSION["gitVersion"])
        if doc is None:
            raise no_route()
        return json_response(doc)
