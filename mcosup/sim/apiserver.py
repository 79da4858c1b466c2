"""The Kubernetes API emulator: an aiohttp HTTPS server speaking the apiserver's wire protocol.

    async with Emulator(history_window=1000, service_map={}) as emu:
        emu.write_kubeconfig(path)            # admin, group system:masters
        ...                                   # point any client at emu.url with that kubeconfig

What is modelled (each pinned by tests/sim): bearer-token users with groups and `extra`; discovery,
a minimal OpenAPI v3/v2 and server-side Table printing (kubectl get/describe/apply/wait/patch work,
1.20 and 1.32); built-in kinds and CRD-registered kinds (status subresource, schema pruning,
defaulting and validation); server-set metadata, generation, generateName, 409 AlreadyExists and
Conflict, no-op writes keeping the resourceVersion; merge, JSON and strategic merge patches (415 for
custom resources); label and field selectors; finalizers, deletionTimestamp, graceful pod deletion,
namespace deletion and ownerReference GC (background, foreground, orphan, dangling owners); watches
with resume, bookmarks, timeouts, selector transitions and 410 Expired; eviction under PDBs; pods/log;
validating admission webhooks; unknown-field pruning with warnings (or 400 under Strict); the
metadata, Event, Secret, ConfigMap, Pod and webhook-configuration validation controllers meet first.

What is not modelled, so nobody mistakes its absence for real behaviour:

- no authorization: every authenticated user may do everything (tokens still map to users,
  groups and `extra`, which admission webhooks see); requests without a known token get 401;
- no server-side apply (`application/apply-patch+yaml` gets 415), no managedFields; protobuf
  request bodies only for the kinds kubectl creates imperatively here (`create namespace|configmap|
  secret|serviceaccount`), others get 415; responses are always JSON;
- built-in kinds get the validation listed above and a few defaults, not their full OpenAPI
  validation (unknown fields are pruned only at the top level, in metadata and in Node/Lease/PDB
  specs); CRD `x-kubernetes-validations` (CEL) rules and `format`s are not evaluated;
- no RBAC enforcement (Roles and bindings are stored); no Service cluster IPs;
- list `continue` tokens page through the current state rather than a snapshot;
- no controllers: Deployments, DaemonSets and PDB status are stored as written (PDB status is
  computed when an eviction asks); no scheduler (pods run where `spec.nodeName` says);
- garbage collection runs synchronously after the owner is removed and does not call admission;
- mutating admission webhooks are not called; validating webhooks' `matchConditions` (CEL) are not
  evaluated; the ServiceAccount and DefaultTolerationSeconds admission plugins do not run;
- HTTP/1.1 only (a real server negotiates HTTP/2).

Measured against a real kube-apiserver: `tests/sim/test_emu_conformance.py` runs the same probes on
both; `mcosup/sim/README.md` gives the figures and the one table of known differences, each pinned
by a test.

Test hooks: `emu.faults` (fault injection), `emu.requests` (request log), `emu.history` (every
object version written), `emu.set_pod_log(...)` / `emu.append_pod_log(...)` (what `pods/log` serves),
`emu.add_token(...)` (a user for raw HTTP), `await emu.create_object(obj)` (seed as admin, in-process),
`emu.get_object(...)` / `emu.list_objects(...)` (read the store without HTTP).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import secrets
import shutil
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import aiohttp
import orjson
import yaml
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from mcosup.http import certs
from mcosup.sim import (
    admission,
    discovery,
    disruption,
    errors,
    patching,
    protobuf,
    schema,
    selectors,
    tables,
    validation,
)
from mcosup.sim.admission import Attributes, UserInfo
from mcosup.sim.faults import Faults
from mcosup.sim.resources import BUILTINS, ResourceType, from_crd
from mcosup.sim.store import ADDED, CUT, DELETED, MODIFIED, Store, Watcher, WatchEvent

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
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Built-in kinds whose validation is one function of the object (Secret and Pod need more).
_BUILTIN_CAUSES: dict[str, Callable[[dict[str, Any]], list[validation.Cause]]] = {
    "ConfigMap": validation.configmap_causes,
    "Event": validation.event_causes,
    "ValidatingWebhookConfiguration": validation.webhook_configuration_causes,
}

SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
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
BODY_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]


def _bump_generation(meta: dict[str, Any]) -> None:
    """Marking an object for deletion bumps its generation, when it has one (the registry's rule)."""
    if meta.get("generation"):
        meta["generation"] = int(meta["generation"]) + 1


def _go_strings(items: Iterable[str]) -> str:
    """A list of strings the way Go's %#v prints a []string: []string{"a", "b"}."""
    return "[]string{" + ", ".join(orjson.dumps(i).decode() for i in items) + "}"


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


class Emulator:
    """An in-process kube-apiserver stand-in (see the module docstring for what is modelled)."""

    def __init__(
        self,
        history_window: int = 1000,
        service_map: Mapping[tuple[str, str, int], str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bookmark_interval: float = 5.0,
        default_watch_timeout: float = 1800.0,
        graceful_pod_deletion: bool = True,
        collect_dangling_dependents: bool = True,
    ) -> None:
        """`history_window`: events kept per resource type for watch resume (older: 410 Expired).
        `service_map[(namespace, name, port)] = "127.0.0.1:PORT"`: where webhook Services live.
        `bookmark_interval`: seconds between BOOKMARK events on watches that allow them.
        `graceful_pod_deletion`: pods bound to a node stay (with a deletionTimestamp) until a delete
        with gracePeriodSeconds=0 (the kubelet's), as on a real cluster; False deletes at once.
        `collect_dangling_dependents`: an object whose ownerReferences all name owners that do not
        exist (wrong uid, other namespace) is garbage-collected right after the write, as the real
        garbage collector does moments later; False keeps such objects (for fixtures that fake owners).
        """
        self.store = Store(history_window)
        self.service_map: dict[tuple[str, str, int], str] = dict(service_map or {})
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.graceful_pod_deletion = graceful_pod_deletion
        self.collect_dangling_dependents = collect_dangling_dependents
        self.requests: list[RequestRecord] = []
        self.faults = Faults(self.store.cut_watches, self.store.compact)
        self._tokens: dict[str, UserInfo] = {}
        self._streaming: set[int] = set()  # watch requests already in the request log
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}
        self._pod_logs: dict[tuple[str, str, str], str] = {}
        self._log_changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tmp: Path | None = None
        self._caller = admission.Caller(self.service_map)
        self._ca_pem = b""
        self.url = ""
        self.ca_path = Path()
        for rt in BUILTINS:
            self._types[(rt.group, rt.version, rt.plural)] = rt
        for ns in INITIAL_NAMESPACES:
            self._seed(
                validation.namespace_defaults(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                )
            )

    # Lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        # The same certificate code as the webhook's self-managed TLS: a CA and a serving cert for the
        # addresses clients use.
        now = datetime.now(UTC)
        ca = certs.generate_ca(now=now, validity=timedelta(days=3650), common_name="mcosup-sim-ca")
        server = certs.issue_serving_cert(
            ca, [self.host, "localhost", "127.0.0.1", "kubernetes"], now=now, validity=timedelta(days=365)
        )
        self._tmp = Path(tempfile.mkdtemp(prefix="mcosup-sim-"))
        self.ca_path = self._tmp / "ca.pem"
        self.ca_path.write_bytes(ca.cert_pem)
        self._ca_pem = ca.cert_pem
        (self._tmp / "server.pem").write_bytes(server.cert_pem)
        (self._tmp / "server-key.pem").write_bytes(server.key_pem)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self._tmp / "server.pem", self._tmp / "server-key.pem")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ctx)
        await site.start()
        sockets = self._runner.addresses
        self.port = int(sockets[0][1])
        self.url = f"https://{self.host}:{self.port}"
        self._caller.session = aiohttp.ClientSession()
        log.info("emulator serving on %s", self.url)

    async def stop(self) -> None:
        self.store.cut_watches(abrupt=False)
        self._log_changed.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._caller.session is not None:
            await self._caller.session.close()
            self._caller.session = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # Users and kubeconfigs --------------------------------------------------------------------

    def add_token(
        self,
        user: str,
        groups: Iterable[str] = (),
        extra: Mapping[str, Iterable[str]] | None = None,
        token: str | None = None,
    ) -> str:
        """Map a new bearer token to a user; `system:authenticated` is added as the apiserver does."""
        token = token or secrets.token_urlsafe(24)
        all_groups = tuple(dict.fromkeys([*groups, "system:authenticated"]))
        self._tokens[token] = UserInfo(
            user, all_groups, {k: tuple(v) for k, v in (extra or {}).items()}, uid=str(uuid.uuid4())
        )
        return token

    def write_kubeconfig(
        self,
        path: str | Path,
        user: str = "admin",
        groups: Iterable[str] = ("system:masters",),
        extra: Mapping[str, Iterable[str]] | None = None,
    ) -> Path:
        token = self.add_token(user, groups, extra)
        return self._write_kubeconfig(Path(path), user, token)

    def write_kubeconfig_for_service_account(
        self, path: str | Path, namespace: str, name: str, node_name: str | None = None
    ) -> Path:
        user = f"system:serviceaccount:{namespace}:{name}"
        extra = {NODE_NAME_EXTRA: [node_name]} if node_name else None
        token = self.add_token(user, ("system:serviceaccounts", f"system:serviceaccounts:{namespace}"), extra)
        return self._write_kubeconfig(Path(path), user, token)

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> Path:
        if not self.url:
            raise RuntimeError(
                "start the emulator before writing a kubeconfig (its URL and CA are not known yet)"
            )
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "mcosup-sim",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self._ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "mcosup-sim", "context": {"cluster": "mcosup-sim", "user": user}}],
            "current-context": "mcosup-sim",
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # Test hooks -------------------------------------------------------------------------------

    @property
    def history(self) -> list[tuple[int, str, dict[str, Any]]]:
        """Every object version ever written: (resourceVersion, ADDED|MODIFIED|DELETED, object)."""
        return self.store.history

    def set_pod_log(self, namespace: str, name: str, container: str, text: str) -> None:
        """Replace what `pods/<name>/log?container=<container>` serves."""
        self._pod_logs[(namespace, name, container)] = text
        self._notify_logs()

    def append_pod_log(self, namespace: str, name: str, container: str, text: str) -> None:
        """Append to a pod container's log (followers of `?follow=true` see it at once)."""
        key = (namespace, name, container)
        self._pod_logs[key] = self._pod_logs.get(key, "") + text
        self._notify_logs()

    def _notify_logs(self) -> None:
        self._log_changed.set()
        self._log_changed = asyncio.Event()

    def get_object(
        self, api_version: str, plural: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The stored object (read-only: do not mutate it), or None."""
        group = api_version.rpartition("/")[0]
        return self.store.get((group, plural), namespace, name)

    def list_objects(
        self, api_version: str, plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        group = api_version.rpartition("/")[0]
        return list(self.store.items((group, plural), namespace))

    async def create_object(self, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Create an object in-process as the admin (admission webhooks are still called)."""
        rt, version = self._type_for_object(body)
        ns = (
            (namespace or (body.get("metadata") or {}).get("namespace") or "default")
            if rt.namespaced
            else None
        )
        ctx = Ctx(ADMIN, CIMultiDict())
        target = Target(rt, version, ns, None, None)
        return await self._create(target, ctx, orjson.loads(orjson.dumps(body)))

    def _type_for_object(self, body: Mapping[str, Any]) -> tuple[ResourceType, str]:
        api_version = str(body.get("apiVersion", ""))
        group, _, version = api_version.rpartition("/")
        kind = body.get("kind")
        for (g, v, _), rt in self._types.items():
            if g == group and v == version and rt.kind == kind:
                return rt, version
        raise errors.not_found("kinds", group, f"{kind} in {api_version}")

    def _seed(self, obj: dict[str, Any]) -> None:
        rt, _ = self._type_for_object(obj)
        meta = dict(obj["metadata"])
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=timestamp())
        new = {**obj, "metadata": meta}
        if rt.initial_status is not None:
            new["status"] = dict(rt.initial_status)
        self.store.commit(rt.key, new, ADDED, None)

    # HTTP -------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        user_name = ""
        status = 500
        try:
            user = self._authenticate(request)
            user_name = user.username
            delay = self.faults.match_delay(request.method, request.path)
            if delay:
                await asyncio.sleep(delay)
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
            headers.add("Warning", _warning_header(warning))
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
            return _json({"paths": ["/api", "/api/v1", "/apis", "/version", "/healthz", "/readyz", "/livez"]})
        head = parts[0]
        if head in ("healthz", "readyz", "livez") and len(parts) == 1:
            return web.Response(text="ok")
        if head == "version" and len(parts) == 1:
            return _json(KUBE_VERSION)
        if head == "openapi" and parts[1:2] == ["v2"]:
            # An empty OpenAPI v2 document (protobuf: zero bytes is an empty message). Clients that
            # validate against it find no schema for any kind and skip client-side validation, which
            # is what they do for kinds a real server does not describe.
            if "protobuf" in request.headers.get("Accept", ""):
                return web.Response(
                    body=b"", content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
                )
            return _json(
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
                return _json(
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
                return _json(discovery.group_list(self._types))
            if len(parts) == 2:
                group_doc = discovery.group(self._types, parts[1])
                if group_doc is None:
                    return _page_not_found()
                return _json(group_doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return _page_not_found()
        if discovery.resource_list(self._types, group, version) is None:
            return _page_not_found()
        if not rest:
            if request.method != "GET":
                raise errors.method_not_allowed()
            resources = discovery.resource_list(self._types, group, version)
            if resources is None:
                raise _no_route()
            return _json(resources)
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
        if watch or _truthy(request.query.get("watch")):
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
            raise _no_route()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if rt.namespaced and name is not None and namespace is None:
            raise _no_route()
        if not rt.namespaced and namespace is not None:
            raise _no_route()
        if sub is not None and sub not in rt.subresources():
            raise _no_route()
        return Target(rt, version, namespace, name, sub)

    async def _dispatch(self, request: web.Request, t: Target, ctx: Ctx) -> web.StreamResponse:
        method = request.method
        if t.name is None:
            if method == "GET":
                return _json(self._list(t, ctx, tables.wants_table(request.headers.get("Accept", ""))))
            if method == "POST":
                obj = await self._create(t, ctx, await _read_body(request))
                return _json(obj, 201, ctx.warnings)
            if method == "DELETE":
                if t.rt.builtin and t.rt.plural == "namespaces":  # no DeleteCollection for namespaces
                    raise errors.method_not_allowed()
                result = await self._delete_collection(t, ctx, await _read_optional_body(request))
                return _json(result, 200, ctx.warnings)
            raise errors.method_not_allowed()
        if t.subresource == "log":
            if method != "GET":
                raise errors.method_not_allowed()
            return await self._pod_log(request, t)
        if t.subresource == "eviction":
            if method != "POST":
                raise errors.method_not_allowed()
            result = await self._evict(t, ctx, await _read_body(request))
            return _json(result, 201, ctx.warnings)
        if t.subresource == "binding":
            if method != "POST":
                raise errors.method_not_allowed()
            return _json(self._bind(t, await _read_body(request)), 201, ctx.warnings)
        if method == "GET":
            obj = self._get(t)
            if tables.wants_table(request.headers.get("Accept", "")):
                return _json(self._table(t, ctx, [obj], obj["metadata"]["resourceVersion"]))
            return _json(obj)
        if method == "PUT":
            obj = await self._update(t, ctx, await _read_body(request))
            return _json(obj, 200, ctx.warnings)
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
            return _json(obj, 200, ctx.warnings)
        if method == "DELETE" and t.subresource is None:
            obj = await self._delete(t, ctx, await _read_optional_body(request))
            return _json(obj, 200, ctx.warnings)
        raise errors.method_not_allowed()

    # Discovery --------------------------------------------------------------------------------

    def _openapi(self, parts: list[str]) -> web.Response:
        if len(parts) < 2 or parts[1] != "v3":
            raise _no_route()
        if len(parts) == 2:
            return _json(discovery.openapi_v3_index(self._types, self.store.rv))
        doc = discovery.openapi_v3_document(self._types, "/".join(parts[2:]), KUBE_VERSION["gitVersion"])
        if doc is None:
            raise _no_route()
        return _json(doc)

    # Reads ------------------------------------------------------------------------------------

    def _get(self, t: Target) -> dict[str, Any]:
        assert t.name is not None
        obj = self.store.get(t.rt.key, t.namespace, t.name)
        if obj is None:
            raise errors.not_found(t.rt.plural, t.rt.group, t.name)
        return _as_version(obj, t.api_version)

    def _selectors(
        self, t: Target, query: MultiMapping[str]
    ) -> tuple[selectors.LabelSelector, selectors.FieldSelector]:
        labels = selectors.parse_label_selector(query.get("labelSelector"))
        fields = selectors.parse_field_selector(query.get("fieldSelector"), t.rt.kind, builtin=t.rt.builtin)
        return labels, fields

    def _matching(
        self, t: Target, labels: selectors.LabelSelector, fields: selectors.FieldSelector
    ) -> list[dict[str, Any]]:
        name = fields.exact_name()
        if name is not None:
            if t.namespace is None and t.rt.namespaced:
                candidates = [o for o in self.store.items(t.rt.key) if o["metadata"]["name"] == name]
            else:
                one = self.store.get(t.rt.key, t.namespace, name)
                candidates = [one] if one is not None else []
        else:
            candidates = list(self.store.items(t.rt.key, t.namespace if t.rt.namespaced else None))
        return [
            o
            for o in candidates
            if (labels.empty or labels.matches(o["metadata"].get("labels"))) and fields.matches(o)
        ]

    def _list(self, t: Target, ctx: Ctx, as_table: bool = False) -> dict[str, Any]:
        labels, fields = self._selectors(t, ctx.query)
        items = self._matching(t, labels, fields)
        rv = self.store.rv
        meta: dict[str, Any] = {}
        token = ctx.query.get("continue")
        if token:
            try:
                state = orjson.loads(base64.urlsafe_b64decode(token.encode()))
                start = (str(state["start"][0]), str(state["start"][1]))
                rv = int(state["rv"])
            except (ValueError, KeyError, TypeError, IndexError):
                raise errors.bad_request(
                    f"invalid continue token: continue key is not valid: {token}"
                ) from None
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        limit_text = ctx.query.get("limit")
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError:
                raise errors.bad_request(f"limit: invalid value {limit_text!r}") from None
            if 0 < limit < len(items):
                last = items[limit - 1]["metadata"]
                meta["continue"] = base64.urlsafe_b64encode(
                    orjson.dumps({"rv": rv, "start": [last.get("namespace", ""), last["name"]]})
                ).decode()
                if labels.empty and not fields.requirements:  # not known cheaply under a selector: left out
                    meta["remainingItemCount"] = len(items) - limit
                items = items[:limit]
        meta["resourceVersion"] = str(rv)
        if not t.rt.builtin:
            # Unstructured lists keep an empty continue token (typed lists' omitempty drops it).
            meta.setdefault("continue", "")
        api_version = t.api_version
        if as_table:
            rv_text = meta.pop("resourceVersion")
            return self._table(t, ctx, [_as_version(o, api_version) for o in items], rv_text, meta)
        if t.rt.builtin:
            # Typed lists on a real server omit kind/apiVersion on items; clients must not rely on them.
            out_items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        else:
            out_items = [_as_version(o, api_version) for o in items]
        return {"kind": f"{t.rt.kind}List", "apiVersion": api_version, "metadata": meta, "items": out_items}

    def _table(
        self, t: Target, ctx: Ctx, items: list[dict[str, Any]], rv: str, meta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        cols = tables.columns(t.rt, t.rt.printer_columns.get(t.version))
        return tables.table(cols, items, ctx.query.get("includeObject", "Metadata"), rv, meta)

    # Watch ------------------------------------------------------------------------------------

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
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        send_initial = _truthy(q.get("sendInitialEvents"))
        api_version = t.api_version
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        resource_log = self.store.log(rt.key)

        def line_for(kind: str, obj: dict[str, Any]) -> bytes:
            if as_table:
                shown = self._table(
                    t, ctx, [_as_version(obj, api_version)], obj["metadata"]["resourceVersion"]
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
            for obj in initial:
                await response.write(line_for("ADDED", obj))
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
                if item is CUT:
                    if watcher.abrupt and request.transport is not None:
                        request.transport.abort()
                        return response
                    break
                assert isinstance(item, WatchEvent)
                kind = _transition(item, matches)
                if kind is not None:
                    cache_key = (kind, api_version + (f";table;{q.get('includeObject')}" if as_table else ""))
                    line = item.cache.get(cache_key)
                    if line is None:
                        shown = item.obj
                        if kind == DELETED and item.type == MODIFIED and item.old is not None:
                            # Leaving the selector: the last state that matched, at the event's version.
                            old_meta = {**item.old["metadata"], "resourceVersion": str(item.rv)}
                            shown = {**item.old, "metadata": old_meta}
                        line = item.cache[cache_key] = line_for(kind, shown)
                    await response.write(line)
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

    # Create -----------------------------------------------------------------------------------

    def _decode(self, body: Any, t: Target) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        api_version = t.api_version
        if body.get("apiVersion") and body["apiVersion"] != api_version:
            raise errors.bad_request(
                f"the API version in the data ({body['apiVersion']}) does not match the expected API "
                f"version ({api_version})"
            )
        if body.get("kind") and body["kind"] != t.rt.kind:
            if t.rt.builtin and not t.rt.group:
                # The core group's decoder tries to convert the object it was given, and cannot.
                raise errors.bad_request(
                    f'{body["kind"]} in version "{t.version}" cannot be handled as a {t.rt.kind}: '
                    f"converting ({t.version}.{body['kind']}) to (core.{t.rt.kind}): unknown conversion"
                )
            raise errors.bad_request(
                f"the kind in the data ({body['kind']}) does not match the expected kind ({t.rt.kind})"
            )
        obj = {"apiVersion": api_version, "kind": t.rt.kind, **body}
        obj["apiVersion"], obj["kind"] = api_version, t.rt.kind
        meta = obj.get("metadata")
        obj["metadata"] = dict(meta) if isinstance(meta, dict) else {}
        return obj

    async def _create(self, t: Target, ctx: Ctx, body: Any) -> dict[str, Any]:
        rt = t.rt
        obj = self._decode(body, t)
        meta = obj["metadata"]
        if rt.namespaced:
            if meta.get("namespace") and t.namespace and meta["namespace"] != t.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if not t.namespace:
                raise errors.method_not_allowed()
            meta["namespace"] = t.namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = str(meta["generateName"]) + "".join(
                    secrets.choice(_GENERATE_ALPHABET) for _ in range(5)
                )
            else:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    "",
                    [
                        {
                            "reason": "FieldValueRequired",
                            "field": "metadata.name",
                            "message": "Required value: name or generateName is required",
                        }
                    ],
                )
        name = str(meta["name"])
        self._validate_name(rt, name)
        if meta.get("resourceVersion") not in (None, "", "0"):
            # etcd's store refuses it with a plain error: a 500 without reason or details.
            raise errors.storage("resourceVersion should not be set on objects to be created")
        for key in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = timestamp()
        if rt.tracks_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if rt.builtin and rt.initial_status is not None:
            obj["status"] = dict(rt.initial_status)
        elif not rt.builtin and rt.status_subresource:
            obj.pop("status", None)
        obj = self._defaults_and_validation(t, ctx, obj, None)
        if rt.namespaced:
            assert t.namespace is not None
            self._check_namespace_open(rt, t.namespace, name)
        await self._admit(ctx, t, "CREATE", obj, None, name, _options("CreateOptions", ctx))
        if self.store.get(rt.key, t.namespace, name) is not None:
            raise errors.already_exists(rt.plural, rt.group, name)
        if rt.namespaced:
            assert t.namespace is not None
            self._check_namespace_open(rt, t.namespace, name)
        if ctx.dry_run:
            return obj
        stored = self.store.commit(rt.key, obj, ADDED, None)
        if rt.kind == "CustomResourceDefinition" and rt.builtin:
            established = {**stored, "status": self._crd_established_status(stored, None)}
            self._register_crd(self.store.commit(rt.key, established, MODIFIED, stored))
        self._collect_if_dangling(rt, stored)
        return _as_version(stored, t.api_version)

    def _validate_name(self, rt: ResourceType, name: str) -> None:
        if rt.builtin and rt.group == "rbac.authorization.k8s.io":
            # RBAC names are path segment names ("system:controller:x" is fine).
            if name in (".", "..") or "/" in name or "%" in name:
                _invalid_name(rt, name, "may not be '.' or '..' and may not contain '/' or '%'")
            return
        if rt.builtin and rt.kind == "Service" and not (_DNS1035.match(name) and len(name) <= 63):
            _invalid_name(
                rt,
                name,
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
                "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            )
        # The wording and examples of apimachinery's validation messages (its RegexError).
        if rt.kind == "Namespace":
            ok = bool(_LABEL.match(name)) and len(name) <= 63
            message = (
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
                "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            )
        else:
            ok = bool(_SUBDOMAIN.match(name)) and len(name) <= 253
            message = (
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                r"for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            )
        if not ok:
            _invalid_name(rt, name, message)

    def _check_namespace_open(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self.store.get(("", "namespaces"), None, namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            refused = errors.forbidden(
                f'{errors.qualified(rt.plural, rt.group)} "{name}" is forbidden: '
                f"unable to create new content "
                f"in namespace {namespace} because it is being terminated",
                rt.plural,
                rt.group,
                name,
            )
            assert refused.details is not None
            refused.details["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise refused

    def _defaults_and_validation(
        self, t: Target, ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        rt = t.rt
        name = obj["metadata"]["name"]
        obj, dropped = validation.prune_unknown(rt.kind, obj, rt.builtin)
        self._unknown_fields(ctx, t, dropped)
        meta_causes = validation.metadata_causes(obj["metadata"])
        if meta_causes:
            raise errors.invalid(rt.kind, rt.group, name, meta_causes)
        if not rt.builtin:
            schema_doc = rt.schemas.get(t.version)
            if schema_doc:
                obj, dropped = schema.prune_and_default(obj, schema_doc)
                self._unknown_fields(ctx, t, dropped)
                causes = schema.validate(obj, schema_doc)
                if causes and schema.has_cel_rules(schema_doc):
                    # The real server skips CEL rules once the schema fails, and says so. (The emulator
                    # never evaluates them: see the known differences.)
                    causes.append(
                        {
                            "reason": "FieldValueInvalid",
                            "field": "<nil>",
                            "message": "Invalid value: null: some validation rules were not checked because "
                            "the object was invalid; correct the existing errors to complete validation",
                        }
                    )
                if causes:
                    raise errors.invalid(rt.kind, rt.group, name, causes)
            return obj
        obj = validation.omit_empty(rt.kind, obj)
        if rt.kind == "ValidatingWebhookConfiguration":  # defaulted before it is validated
            obj = validation.webhook_configuration_defaults(obj)
        bad_time = validation.undecodable_time(rt.kind, obj)
        if bad_time is not None:
            raise errors.bad_request(
                f'{rt.kind} in version "{t.version}" cannot be handled as a {rt.kind}: {bad_time}'
            )
        if rt.kind == "Secret":
            bad_base64 = validation.undecodable_secret_data(obj)
            if bad_base64 is not None:
                raise errors.bad_request(
                    f'Secret in version "v1" cannot be handled as a Secret: {bad_base64}'
                )
            obj, causes = validation.normalise_secret(obj)
            if causes:
                raise errors.invalid(rt.kind, rt.group, name, causes)
        elif rt.kind in _BUILTIN_CAUSES:
            causes = _BUILTIN_CAUSES[rt.kind](obj)
            if causes:
                raise errors.invalid(rt.kind, rt.group, name, causes)
        if rt.kind == "Pod":
            obj = validation.pod_defaults(obj)
            causes = validation.pod_causes(obj, old)
            if causes:
                raise errors.invalid(rt.kind, rt.group, name, causes)
        elif rt.kind == "CustomResourceDefinition":
            obj = self._crd_prepare(obj, old)
        elif rt.kind == "Namespace":
            obj = validation.namespace_defaults(obj)
        elif rt.kind == "Node":
            obj = validation.node_defaults(obj, created=old is None)
        elif rt.kind in ("Deployment", "DaemonSet") and rt.group == "apps":
            obj = validation.workload_defaults(rt.kind, obj, old)

        elif rt.kind == "PodDisruptionBudget":
            spec = obj.get("spec") or {}
            if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    name,
                    [
                        {
                            "reason": "FieldValueInvalid",
                            "field": "spec",
                            "message": "Invalid value: {}: "
                            "minAvailable and maxUnavailable cannot be both set",
                        }
                    ],
                )
        return obj

    def _unknown_fields(self, ctx: Ctx, t: Target, dropped: list[str]) -> None:
        """Pruned fields: a warning each (fieldValidation=Warn, the default) or a 400 when Strict."""
        if not dropped:
            return
        mode = ctx.query.get("fieldValidation", "Warn")
        if mode == "Strict":
            kind = t.rt.kind
            raise errors.bad_request(
                f'{kind} in version "{t.version}" cannot be handled as a {kind}: strict decoding error: '
                + ", ".join(f'unknown field "{p}"' for p in dropped)
            )
        if mode == "Warn":
            ctx.warnings.extend(f'unknown field "{p}"' for p in dropped)

    def _crd_prepare(self, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        name = obj["metadata"]["name"]
        causes = []
        expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
        if name != expected:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "metadata.name",
                    "message": f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                }
            )
        versions = spec.get("versions") or []
        if not versions:
            causes.append(
                {"reason": "FieldValueRequired", "field": "spec.versions", "message": "Required value"}
            )
        elif sum(1 for v in versions if v.get("storage")) != 1:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec.versions",
                    "message": "Invalid value: must have exactly one version marked as storage version",
                }
            )
        if not names.get("kind"):
            causes.append(
                {"reason": "FieldValueRequired", "field": "spec.names.kind", "message": "Required value"}
            )
        if causes:
            raise errors.invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes)
        storage = next(str(v["name"]) for v in versions if v.get("storage"))
        obj["spec"] = {**spec, "conversion": spec.get("conversion") or {"strategy": "None"}}
        if old is None:
            # As written by the create; the names and Established conditions come a moment later from
            # the apiextensions controllers (here: the write right after, see _create).
            obj["status"] = {
                "conditions": None,
                "acceptedNames": {"kind": "", "plural": ""},
                "storedVersions": [storage],
            }
        elif obj.get("status") in (None, {}):
            obj["status"] = self._crd_established_status(obj, old)
        return obj

    def _crd_established_status(self, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """The status of a CRD whose names are accepted and which is Established."""
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        storage = next(str(v["name"]) for v in spec.get("versions") or [] if v.get("storage"))
        accepted = {k: v for k, v in names.items()}
        accepted.setdefault("singular", str(names.get("kind", "")).lower())
        accepted.setdefault("listKind", f"{names.get('kind')}List")
        now = timestamp()
        stored_versions = sorted({*((old or {}).get("status") or {}).get("storedVersions", []), storage})
        return {
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": now,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": now,
                },
            ],
            "acceptedNames": accepted,
            "storedVersions": stored_versions,
        }

    # Update and patch -------------------------------------------------------------------------

    def _prepare_update(self, t: Target, old: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
        rt = t.rt
        old_meta = old["metadata"]
        if t.subresource == "status":
            new = {k: v for k, v in old.items() if k != "status"}
            if incoming.get("status") is not None:
                new["status"] = incoming["status"]
            meta = dict(old_meta)
        else:
            new = {k: v for k, v in incoming.items() if k != "status"}
            source = old if rt.status_subresource else incoming
            if source.get("status") is not None:
                new["status"] = source["status"]
            meta = dict(incoming.get("metadata") or {})
            for key in SERVER_META:
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            for key in ("selfLink", "managedFields", "generateName"):
                meta.pop(key, None)
            if "generateName" in old_meta:
                meta["generateName"] = old_meta["generateName"]
            meta["name"] = old_meta["name"]
            if rt.namespaced:
                meta["namespace"] = old_meta["namespace"]
            else:
                meta.pop("namespace", None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    cause = {
                        "reason": "FieldValueForbidden",
                        "field": "metadata.finalizers",
                        "message": "Forbidden: no new finalizers can be added "
                        "if the object is being deleted, "
                        f"found new finalizers {_go_strings(sorted(added))}",
                    }
                    # The real store checks object metadata twice (its own BeforeUpdate and the kind's
                    # strategy), so the cause comes twice; the message says it once.
                    raise errors.invalid(rt.kind, rt.group, old_meta["name"], [cause, dict(cause)])
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new["metadata"] = meta
        new["apiVersion"] = t.api_version
        new["kind"] = rt.kind
        if rt.tracks_generation and _spec_view(new, rt.status_subresource) != _spec_view(
            old, rt.status_subresource
        ):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        return new

    async def _update(self, t: Target, ctx: Ctx, body: Any) -> dict[str, Any]:
        assert t.name is not None
        incoming = self._decode(body, t)
        meta = incoming["metadata"]
        if meta.get("name") and meta["name"] != t.name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({t.name})"
            )
        if t.rt.namespaced and meta.get("namespace") and meta["namespace"] != t.namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        wanted_rv = str(meta.get("resourceVersion") or "")
        return await self._write_loop(t, ctx, wanted_rv, lambda old: incoming)

    async def _patch(self, t: Target, ctx: Ctx, patch_type: str, patch: Any) -> dict[str, Any]:
        assert t.name is not None

        def apply(old: dict[str, Any]) -> dict[str, Any]:
            current = _as_version(old, t.api_version)
            try:
                if patch_type == "merge":
                    if not isinstance(patch, dict):
                        raise patching.PatchError(
                            f"error decoding patch: json: cannot unmarshal {patching.go_json_type(patch)} "
                            "into Go value of type map[string]interface {}",
                            code=400,
                        )
                    result = patching.merge_patch(current, patch)
                elif patch_type == "json":
                    result = patching.json_patch(current, patch)
                else:
                    result = patching.strategic_merge_patch(current, patch, t.rt.kind)
            except patching.PatchError as exc:
                if exc.code == 400:
                    raise errors.bad_request(str(exc)) from None
                # The real server keeps why a patch does not apply to itself: a generic 422.
                log.debug("emulator: patch of %s does not apply: %s", t.name, exc)
                raise errors.ApiStatusError(
                    422, "Invalid", "the server rejected our request due to an error in our request", {}
                ) from None
            if not isinstance(result, dict):
                raise errors.bad_request("the patch did not produce an object")
            if result.get("apiVersion") != t.api_version or result.get("kind") != t.rt.kind:
                raise errors.bad_request("the patch must not change apiVersion or kind")
            if not isinstance(result.get("metadata"), dict):
                raise errors.bad_request("the patch removed metadata")
            if result["metadata"].get("name") != old["metadata"]["name"]:
                raise errors.bad_request(
                    f"the name of the object ({result['metadata'].get('name')}) does not match the name "
                    f"on the URL ({old['metadata']['name']})"
                )
            return result

        return await self._write_loop(t, ctx, None, apply)

    async def _write_loop(
        self,
        t: Target,
        ctx: Ctx,
        wanted_rv: str | None,
        make: Any,
    ) -> dict[str, Any]:
        """Build the new object from the current one, admit it, and commit it if nothing raced.

        `wanted_rv` None means "read it from the built object" (patches may carry one). An unconditional
        write that races with another while its webhooks run is rebuilt, as GuaranteedUpdate does.
        """
        assert t.name is not None
        rt = t.rt
        for _ in range(10):
            old = self.store.get(rt.key, t.namespace, t.name)
            if old is None:
                raise errors.not_found(rt.plural, rt.group, t.name)
            incoming = make(old)
            rv = (
                wanted_rv if wanted_rv is not None else str(incoming["metadata"].get("resourceVersion") or "")
            )
            current_rv = old["metadata"]["resourceVersion"]
            if rv and rv != current_rv:
                raise errors.conflict(rt.plural, rt.group, t.name)
            uid = incoming["metadata"].get("uid")
            if uid and uid != old["metadata"].get("uid"):
                raise errors.conflict(
                    rt.plural,
                    rt.group,
                    t.name,
                    f"Precondition failed: UID in precondition: {uid}, "
                    f"UID in object meta: {old['metadata'].get('uid')}",
                )
            new = self._prepare_update(t, old, incoming)
            new = self._defaults_and_validation(t, ctx, new, old)
            if _same(new, old):
                return _as_version(old, t.api_version)
            await self._admit(ctx, t, "UPDATE", new, old, t.name, _options("UpdateOptions", ctx))
            latest = self.store.get(rt.key, t.namespace, t.name)
            if latest is None:
                raise errors.not_found(rt.plural, rt.group, t.name)
            if latest["metadata"]["resourceVersion"] != current_rv:
                if rv:
                    raise errors.conflict(rt.plural, rt.group, t.name)
                continue
            if ctx.dry_run:
                return new
            stored = self._commit_update(rt, new, old)
            return _as_version(stored, t.api_version)
        raise errors.conflict(rt.plural, rt.group, t.name, "too many concurrent updates; try again")

    def _commit_update(self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        """Commit an update; one that empties the finalizers of an object being deleted deletes it.

        As in the apiserver's store, that is a single DELETED event carrying the last stored state
        (the one still listing the finalizers); a pod still in its grace period stays for the kubelet.
        """
        meta = new["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
        ):
            # The writer is answered with the object as it wrote it (no finalizers left).
            removed = self._remove(rt, old)
            rv = removed["metadata"]["resourceVersion"]
            return {**new, "metadata": {**meta, "resourceVersion": rv}}
        stored = self.store.commit(rt.key, new, MODIFIED, old)
        if rt.kind == "CustomResourceDefinition" and rt.builtin:
            self._register_crd(stored)
        if meta.get("ownerReferences") != old["metadata"].get("ownerReferences"):
            self._collect_if_dangling(rt, stored)
        return stored

    def _owner_is_dangling(self, ref: Mapping[str, Any], dependent: dict[str, Any]) -> bool:
        """The garbage collector's test: the owner named by (apiVersion, kind, name) in the dependent's
        namespace (or cluster-wide) is gone or has another uid. Unknown kinds are left alone."""
        try:
            owner_rt, _ = self._type_for_object(ref)
        except errors.ApiStatusError:
            return False
        namespace = dependent["metadata"].get("namespace") if owner_rt.namespaced else None
        if owner_rt.namespaced and not namespace:
            return True
        owner = self.store.get(owner_rt.key, namespace, str(ref.get("name", "")))
        return owner is None or owner["metadata"].get("uid") != ref.get("uid")

    def _collect_if_dangling(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """What the garbage collector does soon after a write naming owners that do not exist: drop
        the dangling references, or delete the object when no owner is left."""
        refs = obj["metadata"].get("ownerReferences") or []
        if not refs or not self.collect_dangling_dependents or obj["metadata"].get("deletionTimestamp"):
            return
        solid = [r for r in refs if not self._owner_is_dangling(r, obj)]
        if len(solid) == len(refs):
            return
        if solid:
            meta = {**obj["metadata"], "ownerReferences": solid}
            self.store.commit(rt.key, {**obj, "metadata": meta}, MODIFIED, obj)
        else:
            self._delete_now(rt, obj, {"propagationPolicy": "Background"})

    # Delete -----------------------------------------------------------------------------------

    async def _delete(self, t: Target, ctx: Ctx, body: Any) -> dict[str, Any]:
        assert t.name is not None
        rt = t.rt
        options = _delete_options(body, ctx.query)
        old = self.store.get(rt.key, t.namespace, t.name)
        if old is None:
            raise errors.not_found(rt.plural, rt.group, t.name)
        pre = options.get("preconditions") or {}
        meta = old["metadata"]
        # The storage layer checks preconditions and names the object by its kind.
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(
                rt.kind,
                rt.group,
                t.name,
                f"the UID in the precondition ({pre['uid']}) does not match the UID in record "
                f"({meta.get('uid')}). The object might have been deleted and then recreated",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise errors.conflict(
                rt.kind,
                rt.group,
                t.name,
                f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does not match the "
                f"ResourceVersion in record ({meta.get('resourceVersion')}). The object might have been "
                "modified",
            )
        await self._admit(
            ctx,
            t,
            "DELETE",
            None,
            old,
            t.name,
            {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", **options},
        )
        if ctx.dry_run:
            waits = rt.builtin and (
                rt.kind == "Namespace" or (rt.kind == "Pod" and self._pod_waits_for_kubelet(old, None))
            )
            would_remove = not meta.get("finalizers") and not waits
            return self._deleted_answer(t, old, removed=would_remove)
        current = self.store.get(rt.key, t.namespace, t.name)
        if current is None:
            raise errors.not_found(rt.plural, rt.group, t.name)
        result = self._delete_now(rt, current, options)
        # Removed by this call itself, not by a finalizer's owner a moment later.
        removed = not result["metadata"].get("deletionTimestamp")
        return self._deleted_answer(t, result, removed=removed)

    def _deleted_answer(self, t: Target, obj: dict[str, Any], *, removed: bool) -> dict[str, Any]:
        """What a DELETE answers: the object, unless it is gone and its kind answers with a Status.

        The real registry returns the last state of the object while deletion waits (finalizers, a
        graceful Pod) and for the kinds whose store sets ``ReturnDeletedObject``; every other kind gets
        a ``Status`` of Success naming what was deleted.
        """
        if not removed or t.rt.returns_deleted_object:
            return _as_version(obj, t.api_version)
        details: dict[str, Any] = {"name": obj["metadata"]["name"]}
        if t.rt.group:
            details["group"] = t.rt.group
        details["kind"] = t.rt.plural
        details["uid"] = obj["metadata"].get("uid", "")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    async def _delete_collection(self, t: Target, ctx: Ctx, body: Any) -> dict[str, Any]:
        labels, fields = self._selectors(t, ctx.query)
        deleted = []
        for obj in self._matching(t, labels, fields):
            name = obj["metadata"]["name"]
            sub = Target(t.rt, t.version, obj["metadata"].get("namespace"), name, None)
            with contextlib.suppress(errors.ApiStatusError):
                answer = await self._delete(sub, ctx, body)
                # The list holds the objects, also for kinds whose single delete answers a Status.
                last = obj if answer.get("kind") == "Status" else answer
                if t.rt.builtin:
                    last = {k: v for k, v in last.items() if k not in ("kind", "apiVersion")}
                deleted.append(last)
        return {
            "kind": f"{t.rt.kind}List",
            "apiVersion": t.api_version,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": deleted,
        }

    def _pod_waits_for_kubelet(self, pod: dict[str, Any], grace: int | None) -> bool:
        if not self.graceful_pod_deletion:
            return False
        if not (pod.get("spec") or {}).get("nodeName"):
            return False
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return False
        if grace is None:
            grace = int(pod["metadata"].get("deletionGracePeriodSeconds", 30) or 0)
        return grace > 0

    def _delete_now(
        self, rt: ResourceType, obj: dict[str, Any], options: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Delete (or start deleting) a stored object; no admission. Returns the last state."""
        meta = obj["metadata"]
        propagation = options.get("propagationPolicy")
        if propagation is None and options.get("orphanDependents") is not None:
            propagation = "Orphan" if options["orphanDependents"] else "Background"
        propagation = propagation or "Background"
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise errors.invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                [
                    {
                        "reason": "FieldValueNotSupported",
                        "field": "propagationPolicy",
                        "message": f'Unsupported value: "{propagation}": supported values: '
                        '"Foreground", "Background", "Orphan", "nil"',
                    }
                ],
            )
        uid = str(meta.get("uid", ""))
        finalizers = list(meta.get("finalizers") or [])
        if rt.kind == "Namespace" and rt.builtin:
            return self._delete_namespace(obj)
        # As the real store does, whether or not there are dependents: the policy becomes a finalizer
        # on the owner, which the garbage collector (here: at once, below) acts on and removes.
        gc_finalizer = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(propagation)
        is_pod = rt.kind == "Pod" and rt.builtin
        if is_pod and propagation == "Orphan":
            self._orphan_dependents(uid)
        elif is_pod and propagation == "Foreground" and self.store.dependents.get(uid):
            finalizers.append("foregroundDeletion")
        elif gc_finalizer and not is_pod and gc_finalizer not in finalizers:
            finalizers.append(gc_finalizer)
        if is_pod:
            grace = options.get("gracePeriodSeconds")
            if grace is None:
                grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            grace = int(grace)
            waits = self._pod_waits_for_kubelet(obj, grace)
            if meta.get("deletionTimestamp"):
                if not waits and meta.get("deletionGracePeriodSeconds") != 0:
                    if not finalizers:
                        return self._remove(rt, obj)
                    new_meta = {**meta, "deletionGracePeriodSeconds": 0}
                    return self.store.commit(rt.key, {**obj, "metadata": new_meta}, MODIFIED, obj)
                return obj
            if not waits and not finalizers:
                return self._remove(rt, obj)
            new_meta = {
                **meta,
                "deletionTimestamp": timestamp(grace if waits else 0),
                "deletionGracePeriodSeconds": grace if waits else 0,
                "finalizers": finalizers,
            }
            if not finalizers:
                new_meta.pop("finalizers")
            _bump_generation(new_meta)
            return self.store.commit(rt.key, {**obj, "metadata": new_meta}, MODIFIED, obj)
        if finalizers:
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
                return obj
            new_meta = {**meta, "finalizers": finalizers}
            if not meta.get("deletionTimestamp"):
                _bump_generation(new_meta)
            new_meta.setdefault("deletionTimestamp", timestamp())
            new_meta.setdefault("deletionGracePeriodSeconds", 0)
            new = {**obj, "metadata": new_meta}
            stored = self.store.commit(rt.key, new, MODIFIED, obj)
            if "orphan" in finalizers:
                self._orphan_dependents(uid)
                rest = [f for f in finalizers if f != "orphan"]
                done_meta = {**new_meta, "finalizers": rest}
                if not rest:
                    done_meta.pop("finalizers")
                self._commit_update(rt, {**stored, "metadata": done_meta}, stored)
            if "foregroundDeletion" in finalizers:
                self._delete_dependents(uid, "Foreground")
                self._maybe_finish_foreground(uid)
            # The caller is answered with the object as the delete left it, finalizers and all.
            return stored
        return self._remove(rt, obj)

    def _remove(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Remove an object for good, then collect its dependents and unblock its owners."""
        meta = obj["metadata"]
        final = {**obj, "metadata": dict(meta)}
        stored = self.store.commit(rt.key, final, DELETED, obj)
        uid = str(meta.get("uid", ""))
        if rt.builtin and rt.kind == "Pod":
            for key in [k for k in self._pod_logs if k[0] == meta.get("namespace") and k[1] == meta["name"]]:
                del self._pod_logs[key]
        if rt.builtin and rt.kind == "CustomResourceDefinition":
            self._unregister_crd(obj)
        self._delete_dependents(uid, "Background")
        for ref in meta.get("ownerReferences") or []:
            self._maybe_finish_foreground(str(ref.get("uid", "")))
        namespace = meta.get("namespace")
        if namespace:
            self._maybe_finish_namespace(namespace)
        return stored

    def _delete_dependents(self, owner_uid: str, propagation: str) -> None:
        for rt_key, key in sorted(self.store.dependents.get(owner_uid, set())):
            dependent = self.store.objects.get(rt_key, {}).get(key)
            if dependent is None:
                continue
            rt = self._rt_for_key(rt_key)
            if rt is None:
                continue
            refs = dependent["metadata"].get("ownerReferences") or []
            others_alive = [
                r for r in refs if r.get("uid") != owner_uid and self._owner_alive(str(r.get("uid", "")))
            ]
            if others_alive and propagation == "Background":
                remaining = [r for r in refs if r.get("uid") != owner_uid]
                new = {**dependent, "metadata": {**dependent["metadata"], "ownerReferences": remaining}}
                self.store.commit(rt_key, new, MODIFIED, dependent)
                continue
            if dependent["metadata"].get("deletionTimestamp") and propagation == "Background":
                continue
            self._delete_now(rt, dependent, {"propagationPolicy": propagation})

    def _owner_alive(self, uid: str) -> bool:
        found = self.store.by_uid_get(uid)
        return found is not None and not found[1]["metadata"].get("deletionTimestamp")

    def _orphan_dependents(self, owner_uid: str) -> None:
        for rt_key, key in sorted(self.store.dependents.get(owner_uid, set())):
            dependent = self.store.objects.get(rt_key, {}).get(key)
            if dependent is None:
                continue
            refs = [
                r for r in dependent["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid
            ]
            meta = {**dependent["metadata"], "ownerReferences": refs}
            if not refs:
                meta.pop("ownerReferences")
            self.store.commit(rt_key, {**dependent, "metadata": meta}, MODIFIED, dependent)

    def _maybe_finish_foreground(self, owner_uid: str) -> None:
        found = self.store.by_uid_get(owner_uid)
        if found is None:
            return
        rt_key, owner = found
        meta = owner["metadata"]
        if "foregroundDeletion" not in (meta.get("finalizers") or []) or not meta.get("deletionTimestamp"):
            return
        if self.store.dependents.get(owner_uid):
            return
        rt = self._rt_for_key(rt_key)
        if rt is None:
            return
        finalizers = [f for f in meta["finalizers"] if f != "foregroundDeletion"]
        new_meta = {**meta, "finalizers": finalizers}
        if not finalizers:
            new_meta.pop("finalizers")
        self._commit_update(rt, {**owner, "metadata": new_meta}, owner)

    def _delete_namespace(self, ns: dict[str, Any]) -> dict[str, Any]:
        meta = ns["metadata"]
        name = meta["name"]
        if not meta.get("deletionTimestamp"):
            new = {
                **ns,
                "metadata": {**meta, "deletionTimestamp": timestamp()},
                "status": {**(ns.get("status") or {}), "phase": "Terminating"},
            }
            ns = self.store.commit(("", "namespaces"), new, MODIFIED, ns)
            for rt_key, bucket in list(self.store.objects.items()):
                rt = self._rt_for_key(rt_key)
                if rt is None or not rt.namespaced:
                    continue
                for key in sorted(k for k in bucket if k[0] == name):
                    obj = bucket.get(key)
                    if obj is not None and not obj["metadata"].get("deletionTimestamp"):
                        # Default grace, as the namespace controller: pods on nodes wait for their kubelet.
                        self._delete_now(rt, obj, {"propagationPolicy": "Background"})
        self._maybe_finish_namespace(name)
        latest = self.store.get(("", "namespaces"), None, name)
        return latest if latest is not None else ns

    def _maybe_finish_namespace(self, name: str) -> None:
        ns = self.store.get(("", "namespaces"), None, name)
        if ns is None or not ns["metadata"].get("deletionTimestamp") or ns["metadata"].get("finalizers"):
            return
        if self.store.count_in_namespace(name):
            return
        self.store.commit(("", "namespaces"), {**ns, "metadata": dict(ns["metadata"])}, DELETED, ns)

    def _rt_for_key(self, rt_key: tuple[str, str]) -> ResourceType | None:
        for (group, _, plural), rt in self._types.items():
            if (group, plural) == rt_key:
                return rt
        return None

    # CRDs -------------------------------------------------------------------------------------

    def _register_crd(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        for rt in self._crd_types.pop(name, []):
            self._types.pop((rt.group, rt.version, rt.plural), None)
        types = from_crd(crd)
        self._crd_types[name] = types
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def _unregister_crd(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        types = self._crd_types.pop(name, [])
        if not types:
            return
        rt = types[0]
        for obj in list(self.store.items(rt.key)):
            self.store.commit(rt.key, {**obj, "metadata": dict(obj["metadata"])}, DELETED, obj)
        for watcher in list(self.store.log(rt.key).watchers):
            watcher.cut(False)
        for t in types:
            self._types.pop((t.group, t.version, t.plural), None)

    # Pods: log and eviction -------------------------------------------------------------------

    async def _pod_log(self, request: web.Request, t: Target) -> web.StreamResponse:
        pod = self._get(t)
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {t.name}, choose one of: "
                    f"[{' '.join(str(c) for c in containers)}]"
                )
            container = str(containers[0])
        elif container not in containers and container not in [
            c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []
        ]:
            raise errors.bad_request(f"container {container} is not valid for pod {t.name}")
        assert t.namespace is not None and t.name is not None
        key = (t.namespace, t.name, container)
        text = self._pod_logs.get(key, "")
        tail = request.query.get("tailLines")
        if tail and tail.isdigit():
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail) :]) if int(tail) else ""
        if not _truthy(request.query.get("follow")):
            return web.Response(text=text, content_type="text/plain")
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = len(self._pod_logs.get(key, ""))
        with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionResetError):
            await response.write(text.encode())
            while True:
                changed = self._log_changed
                current = self.store.get(t.rt.key, t.namespace, t.name)
                full = self._pod_logs.get(key, "")
                if len(full) > sent:
                    await response.write(full[sent:].encode())
                    sent = len(full)
                if current is None or (current.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    break
                if self._runner is None:
                    break
                try:
                    await asyncio.wait_for(changed.wait(), timeout=1.0)
                except TimeoutError:
                    continue
            await response.write_eof()
        return response

    async def _evict(self, t: Target, ctx: Ctx, body: Any) -> dict[str, Any]:
        assert t.name is not None and t.namespace is not None
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be an Eviction object")
        if body.get("kind") not in (None, "Eviction"):
            raise errors.bad_request(f"the kind in the data ({body.get('kind')}) does not match Eviction")
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != t.name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        pod = self.store.get(t.rt.key, t.namespace, t.name)
        if pod is None:
            raise errors.not_found("pods", "", t.name)
        options = dict(body.get("deleteOptions") or {})
        if "All" in (options.get("dryRun") or []):
            ctx.dry_run = True
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", **body}
        eviction["metadata"] = {**(body.get("metadata") or {}), "name": t.name, "namespace": t.namespace}
        await self._admit(
            ctx,
            t,
            "CREATE",
            eviction,
            None,
            t.name,
            _options("CreateOptions", ctx),
            kind={"group": "policy", "version": "v1", "kind": "Eviction"},
        )
        pod = self.store.get(t.rt.key, t.namespace, t.name)
        if pod is None:
            raise errors.not_found("pods", "", t.name)
        phase = (pod.get("status") or {}).get("phase")
        skip_pdb = phase in ("Succeeded", "Failed", "Pending") or bool(
            pod["metadata"].get("deletionTimestamp")
        )
        if not skip_pdb:
            self._check_budgets(pod, ctx)
        if not ctx.dry_run:
            self._delete_now(t.rt, pod, options)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _bind(self, t: Target, body: Any) -> dict[str, Any]:
        """``POST pods/<name>/binding``: what a scheduler does — set ``spec.nodeName`` once, mark the Pod
        scheduled; 409 for a Pod already assigned or being deleted, or whose uid the binding does not
        name (as kube-apiserver's binding storage answers)."""
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a Binding object")
        meta = body.get("metadata") or {}
        node = (body.get("target") or {}).get("name")
        target_name = t.name or ""
        if not node:
            cause = {"field": "target.name", "reason": "FieldValueRequired", "message": "Required value"}
            raise errors.invalid("Binding", "", target_name, [cause])
        pod = self.store.get(t.rt.key, t.namespace, target_name)
        if pod is None:
            raise errors.not_found("pods", "", target_name)
        name, uid = pod["metadata"]["name"], pod["metadata"].get("uid")
        why = None
        if meta.get("uid") and meta["uid"] != uid:
            why = f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: {uid}"
        elif pod["metadata"].get("deletionTimestamp"):
            why = f"pod {name} is being deleted, cannot be assigned to a host"
        elif (pod.get("spec") or {}).get("nodeName"):
            why = f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"'
        if why is not None:
            raise errors.conflict("pods/binding", "", name, why)
        new = orjson.loads(orjson.dumps(pod))
        new["spec"]["nodeName"] = node
        status = new.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": timestamp()}
        status["conditions"] = [*conditions, scheduled]
        self._commit_update(t.rt, new, pod)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _check_budgets(self, pod: dict[str, Any], ctx: Ctx) -> None:
        namespace = pod["metadata"]["namespace"]
        labels = pod["metadata"].get("labels") or {}
        pdb_key = ("policy", "poddisruptionbudgets")
        pdbs = [
            p
            for p in self.store.items(pdb_key, namespace)
            if selectors.label_selector_from_dict(
                (p.get("spec") or {}).get("selector"), none_matches_nothing=True
            ).matches(labels)
        ]
        if not pdbs:
            return
        if len(pdbs) > 1:
            raise errors.ApiStatusError(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, "
                "which the eviction subresource does not support.",
            )
        pdb = pdbs[0]
        selector = selectors.label_selector_from_dict(
            (pdb.get("spec") or {}).get("selector"), none_matches_nothing=True
        )
        pods = [
            p
            for p in self.store.items(("", "pods"), namespace)
            if selector.matches(p["metadata"].get("labels"))
        ]
        always = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow"
        if always and not disruption.is_healthy(pod):
            return
        try:
            budget = disruption.budget(pdb, pods, lambda: self._expected_scale(pods))
        except disruption.BudgetError as exc:
            # The disruption controller fails safe: no disruption allowed, and it says why.
            failed = {
                **(pdb.get("status") or {}),
                "disruptionsAllowed": 0,
                "conditions": [
                    {
                        "type": "DisruptionAllowed",
                        "status": "False",
                        "reason": "SyncFailed",
                        "message": str(exc),
                        "lastTransitionTime": timestamp(),
                    }
                ],
            }
            if not ctx.dry_run:
                self._write_pdb_status(pdb, failed)
            raise errors.too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
                [
                    {
                        "reason": "DisruptionBudget",
                        "message": f"The disruption budget {pdb['metadata']['name']} needs "
                        f"{failed.get('desiredHealthy', 0)} healthy pods "
                        f"and has {failed.get('currentHealthy', 0)} currently",
                    }
                ],
            ) from None
        healthy = disruption.is_healthy(pod)
        status = budget.status(int(pdb["metadata"].get("generation") or 1))
        # An unready pod may go while the budget is met (IfHealthyBudget, the default; AlwaysAllow let it
        # go above), a ready one only while disruptions are allowed, as the eviction handler rules.
        budget_met = budget.current_healthy >= budget.desired_healthy and budget.desired_healthy > 0
        allowed = budget.disruptions_allowed > 0 or (not healthy and budget_met)
        if not allowed:
            if not ctx.dry_run:
                self._write_pdb_status(pdb, status)
            pdb_name = pdb["metadata"]["name"]
            raise errors.too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
                [
                    {
                        "reason": "DisruptionBudget",
                        "message": f"The disruption budget {pdb_name} needs "
                        f"{budget.desired_healthy} healthy pods "
                        f"and has {budget.current_healthy} currently",
                    }
                ],
            )
        if not ctx.dry_run and healthy:
            status["disruptionsAllowed"] = budget.disruptions_allowed - 1
            status["disruptedPods"] = {
                **((pdb.get("status") or {}).get("disruptedPods") or {}),
                pod["metadata"]["name"]: timestamp(),
            }
            self._write_pdb_status(pdb, status)

    def _expected_scale(self, pods: list[dict[str, Any]]) -> int:
        """The replicas of the selected pods' controllers, as the disruption controller reads them."""
        scales: dict[str, int] = {}
        for pod in pods:
            ref = disruption.controller_ref(pod)
            name = pod["metadata"]["name"]
            if ref is None:
                raise disruption.BudgetError(f'found no controller ref for pod "{name}"')
            found = self.store.by_uid_get(str(ref.get("uid", "")))
            owner_spec = (found[1].get("spec") or {}) if found is not None else None
            scalable = ref.get("kind") in ("Deployment", "ReplicaSet", "StatefulSet", "ReplicationController")
            if owner_spec is None or not (scalable or "replicas" in owner_spec):
                raise disruption.BudgetError(f'found no controllers for pod "{name}"')
            scales[str(ref["uid"])] = int(owner_spec.get("replicas", 1))
        return sum(scales.values())

    def _write_pdb_status(self, pdb: dict[str, Any], status: dict[str, Any]) -> None:
        merged = {**(pdb.get("status") or {}), **status}
        if merged == pdb.get("status"):
            return
        new = {**pdb, "metadata": dict(pdb["metadata"]), "status": merged}
        self.store.commit(("policy", "poddisruptionbudgets"), new, MODIFIED, pdb)

    # Admission --------------------------------------------------------------------------------

    async def _admit(
        self,
        ctx: Ctx,
        t: Target,
        operation: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        name: str,
        options: dict[str, Any],
        kind: dict[str, str] | None = None,
    ) -> None:
        rt = t.rt
        if rt.builtin and rt.kind in ("ValidatingWebhookConfiguration",):
            return  # the apiserver never calls webhooks about webhook configurations
        configs = list(self.store.items(("admissionregistration.k8s.io", "validatingwebhookconfigurations")))
        if not configs:
            return
        namespace = t.namespace or ""
        ns_obj = self.store.get(("", "namespaces"), None, namespace) if namespace else None
        ns_labels = (ns_obj or {}).get("metadata", {}).get("labels") or {}
        attrs = Attributes(
            operation=operation,
            group=rt.group,
            version=t.version,
            resource=rt.plural,
            subresource=t.subresource or "",
            kind=kind or {"group": rt.group, "version": t.version, "kind": rt.kind},
            name=name,
            namespace=namespace,
            obj=obj,
            old=old,
            dry_run=ctx.dry_run,
            options=options,
            user=ctx.user,
        )
        ctx.warnings.extend(await admission.call_webhooks(self._caller, configs, attrs, ns_labels))


# Helpers ------------------------------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    """A boolean query parameter, parsed as Go's strconv.ParseBool does for the apiserver."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _page_not_found() -> web.Response:
    """A path no API group serves: the real server's mux answers in plain text, not with a Status."""
    return web.Response(status=404, text="404 page not found\n", content_type="text/plain", charset="utf-8")


def _no_route() -> errors.ApiStatusError:
    return errors.ApiStatusError(404, "NotFound", "the server could not find the requested resource", {})


def _warning_header(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def _json(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    for warning in warnings or []:
        headers.add("Warning", _warning_header(warning))
    return web.Response(
        status=status, body=orjson.dumps(obj), content_type="application/json", headers=headers
    )


def _event_line(kind: str, obj: dict[str, Any], api_version: str) -> bytes:
    return orjson.dumps({"type": kind, "object": _as_version(obj, api_version)}) + b"\n"


def _as_version(obj: dict[str, Any], api_version: str) -> dict[str, Any]:
    if obj.get("apiVersion") == api_version:
        return obj
    return {**obj, "apiVersion": api_version}


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


def _spec_view(obj: Mapping[str, Any], status_subresource: bool) -> dict[str, Any]:
    skip = {"metadata", "kind", "apiVersion"} | ({"status"} if status_subresource else set())
    return {k: v for k, v in obj.items() if k not in skip}


def _same(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """A no-op write: the apiserver keeps the resourceVersion and sends no watch event."""

    def strip(o: Mapping[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in o["metadata"].items() if k not in ("resourceVersion", "managedFields")}
        return {**o, "metadata": meta}

    return strip(new) == strip(old)


def _options(kind: str, ctx: Ctx) -> dict[str, Any]:
    options: dict[str, Any] = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if ctx.dry_run:
        options["dryRun"] = ["All"]
    manager = ctx.query.get("fieldManager")
    if manager:
        options["fieldManager"] = manager
    return options


def _delete_options(body: Any, query: MultiMapping[str]) -> dict[str, Any]:
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
        options["orphanDependents"] = _truthy(query["orphanDependents"])
    if query.getall("dryRun", []):
        options["dryRun"] = ["All"]
    return options


async def _read_body(request: web.Request) -> Any:
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


async def _read_optional_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.bad_request(f"error decoding DeleteOptions: {exc}") from None


def _invalid_name(rt: ResourceType, name: str, why: str) -> NoReturn:
    """422 for an object name the real API server refuses, in its words."""
    cause = {
        "reason": "FieldValueInvalid",
        "field": "metadata.name",
        "message": f'Invalid value: "{name}": {why}',
    }
    raise errors.invalid(rt.kind, rt.group, name, [cause])
