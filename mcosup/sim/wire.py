"""What the emulator's handlers share about a request: who asks, what it is addressed to, bodies in,
JSON out.

`Target` (a resource type, version, namespace, name and subresource parsed from the path) and `Ctx`
(the user, the query, dry-run and the warnings gathered on the way) travel from the router to every
handler; `RequestRecord` is one line of `emu.requests`. The rest are the wire's small rules: JSON
responses with `Warning` headers, bodies decoded from JSON, YAML or protobuf, the options objects
admission webhooks see, boolean query parameters and timestamps as the apiserver writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import yaml
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from mcosup.sim import errors, protobuf
from mcosup.sim.admission import UserInfo
from mcosup.sim.resources import ResourceType

BODY_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]


def timestamp(offset_seconds: float = 0.0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    user: str
    status: int


@dataclass
class Target:
    rt: ResourceType
    version: str
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def api_version(self) -> str:
        return self.rt.api_version_for(self.version)


@dataclass
class Ctx:
    user: UserInfo
    query: MultiMapping[str]
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)


ADMIN = UserInfo("system:admin", ("system:masters", "system:authenticated"))


def truthy(value: str | None) -> bool:
    """A boolean query parameter, parsed as Go's strconv.ParseBool does for the apiserver."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def page_not_found() -> web.Response:
    """A path no API group serves: the real server's mux answers in plain text, not with a Status."""
    return web.Response(status=404, text="404 page not found\n", content_type="text/plain", charset="utf-8")


def no_route() -> errors.ApiStatusError:
    return errors.ApiStatusError(404, "NotFound", "the server could not find the requested resource", {})


def warning_header(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def json_response(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    for warning in warnings or []:
        headers.add("Warning", warning_header(warning))
    return web.Response(
        status=status, body=orjson.dumps(obj), content_type="application/json", headers=headers
    )


def as_version(obj: dict[str, Any], api_version: str) -> dict[str, Any]:
    if obj.get("apiVersion") == api_version:
        return obj
    return {**obj, "apiVersion": api_version}


def write_options(kind: str, ctx: Ctx) -> dict[str, Any]:
    options: dict[str, Any] = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if ctx.dry_run:
        options["dryRun"] = ["All"]
    manager = ctx.query.get("fieldManager")
    if manager:
        options["fieldManager"] = manager
    return options


def delete_options(body: Any, query: MultiMapping[str]) -> dict[str, Any]:
    options: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    options.pop("kind", None)
    options.pop("apiVersion", None)
    if "gracePeriodSeconds" in query:
        try:
            options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
        except ValueError:
            raise errors.bad_request(
                f"gracePeriodSeconds: invalid value {query['gracePeriodSeconds']!r}"
            ) from None
    if "propagationPolicy" in query:
        options["propagationPolicy"] = query["propagationPolicy"]
    if "orphanDependents" in query:
        options["orphanDependents"] = truthy(query["orphanDependents"])
    if query.getall("dryRun", []):
        options["dryRun"] = ["All"]
    return options


async def read_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise errors.bad_request("the request body is empty; send the object as JSON")
    content_type = request.content_type
    if content_type in ("application/json", "application/octet-stream", "text/plain", ""):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise errors.bad_request(f"error decoding the request body as JSON: {exc}") from None
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error decoding the request body as YAML: {exc}") from None
    if content_type == "application/vnd.kubernetes.protobuf":
        try:
            return protobuf.decode(raw)
        except protobuf.Unsupported as exc:
            raise errors.ApiStatusError(
                415, "UnsupportedMediaType", f"the emulator cannot decode this protobuf body: {exc}"
            ) from None
    raise errors.unsupported_media_type(content_type, BODY_TYPES)


async def read_optional_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.bad_request(f"error decoding DeleteOptions: {exc}") from None
