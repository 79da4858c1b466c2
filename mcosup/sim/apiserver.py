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
  specs); of CRD `format`s only `date-time` is checked (CEL rules are: :mod:`mcosup.sim.cel`);
- no RBAC enforcement (Roles and bindings are stored); no Service cluster IPs;
- list `continue` tokens page through the current state rather than a snapshot;
- of kube-controller-manager's controllers only garbage collection (below) and the Job controller
  (:mod:`mcosup.sim.jobs`); Deployments, DaemonSets and PDB status are stored as written (PDB status
  is computed when an eviction asks); no scheduler (pods run where `spec.nodeName` says);
- garbage collection runs synchronously after the owner is removed and does not call admission;
- mutating admission webhooks are not called; validating webhooks' `matchConditions` (CEL) are not
  evaluated; the ServiceAccount and DefaultTolerationSeconds admission plugins do not run;
- HTTP/1.1 only (a real server negotiates HTTP/2).

Measured against a real kube-apiserver: `tests/sim/test_emu_conformance.py` runs the same probes on
both; `mcosup/sim/README.md` gives the figures and the one table of known differences, each pinned
by a test.

Test hooks: `emu.faults` (fault injection), `await emu.restart(downtime)` (the server process
restarting with its store kept), `emu.requests` (request log), `emu.history` (every
object version written), `emu.set_pod_log(...)` / `emu.append_pod_log(...)` (what `pods/log` serves),
`emu.add_token(...)` (a user for raw HTTP), `await emu.create_object(obj)` (seed as admin, in-process),
`emu.get_object(...)` / `emu.list_objects(...)` (read the store without HTTP).

The server is one class, :class:`Emulator`, assembled from a module per concern: :mod:`~mcosup.sim.routing`
(the HTTP front), :mod:`~mcosup.sim.reads`, :mod:`~mcosup.sim.watch`, :mod:`~mcosup.sim.writes`,
:mod:`~mcosup.sim.strategy` (names, defaults, validation), :mod:`~mcosup.sim.deletion` (and garbage
collection), :mod:`~mcosup.sim.pods` (log, eviction, binding), :mod:`~mcosup.sim.admitting` (webhook
calls), :mod:`~mcosup.sim.crds` (the type table and CRDs), over :mod:`~mcosup.sim.state` and
:mod:`~mcosup.sim.wire`. This module holds its construction, lifecycle, users and test hooks.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import shutil
import ssl
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web
from multidict import CIMultiDict

from mcosup.http import certs
from mcosup.sim import admission, defaults
from mcosup.sim.admission import UserInfo
from mcosup.sim.faults import Faults
from mcosup.sim.jobs import JobControl
from mcosup.sim.resources import BUILTINS
from mcosup.sim.routing import Routing
from mcosup.sim.store import ADDED, Store
from mcosup.sim.wire import ADMIN, Ctx, Target, timestamp

log = logging.getLogger(__name__)

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"


class Emulator(Routing, JobControl):
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
        job_controller: bool = True,
        job_backoff: float = 10.0,
    ) -> None:
        """`history_window`: events kept per resource type for watch resume (older: 410 Expired).
        `service_map[(namespace, name, port)] = "127.0.0.1:PORT"`: where webhook Services live.
        `bookmark_interval`: seconds between BOOKMARK events on watches that allow them.
        `graceful_pod_deletion`: pods bound to a node stay (with a deletionTimestamp) until a delete
        with gracePeriodSeconds=0 (the kubelet's), as on a real cluster; False deletes at once.
        `collect_dangling_dependents`: an object whose ownerReferences all name owners that do not
        exist (wrong uid, other namespace) is garbage-collected right after the write, as the real
        garbage collector does moments later; False keeps such objects (for fixtures that fake owners).
        `job_controller`: run batch/v1 Jobs (:mod:`mcosup.sim.jobs`) while started, as
        kube-controller-manager does; `job_backoff`: seconds before a failed Job Pod is replaced (the
        real controller's 10 s, doubling per further failure up to 10 min).
        """
        self.store = Store(history_window)
        self.service_map = dict(service_map or {})
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.graceful_pod_deletion = graceful_pod_deletion
        self.collect_dangling_dependents = collect_dangling_dependents
        self.requests = []
        self.faults = Faults(self.store.cut_watches, self.store.compact)
        self._tokens = {}
        self._streaming = set()
        self._types = {}
        self._crd_types = {}
        self._pod_logs = {}
        self._log_changed = asyncio.Event()
        self._runner = None
        self._tmp = None
        self._caller = admission.Caller(self.service_map)
        self.job_controller = job_controller
        self._jobs_init(job_backoff)
        self._ca_pem = b""
        self.url = ""
        self.ca_path = Path()
        for rt in BUILTINS:
            self._types[(rt.group, rt.version, rt.plural)] = rt
        for ns in INITIAL_NAMESPACES:
            self._seed(
                defaults.namespace_defaults(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                )
            )

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
        await self._serve()
        self.url = f"https://{self.host}:{self.port}"
        self._caller.session = aiohttp.ClientSession()
        if self.job_controller:
            self._jobs_start()
        log.info("emulator serving on %s", self.url)

    async def _serve(self) -> None:
        assert self._tmp is not None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self._tmp / "server.pem", self._tmp / "server-key.pem")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ctx, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def restart(self, downtime: float = 1.0) -> None:
        """The API server process restarting with its store kept, as kube-apiserver does with etcd intact:
        every connection drops, nothing listens for ``downtime`` seconds, then it serves again on the
        same address with the same certificate. (The Job controller, a process of its own on a real
        cluster, keeps running.)"""
        if self._runner is None:
            raise RuntimeError("the emulator is not started")
        self.store.cut_watches(abrupt=True)
        await self._runner.cleanup()
        self._runner = None
        await asyncio.sleep(downtime)
        await self._serve()

    async def stop(self) -> None:
        await self._jobs_stop()
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
        # JSON: what Pods read at start (the kubelet stand-in's stand-in for a mounted token and CA) is
        # read without a YAML parser, as a real Pod's in-cluster config is.
        return self._write_kubeconfig(Path(path), user, token, as_json=True)

    def _write_kubeconfig(self, path: Path, user: str, token: str, *, as_json: bool = False) -> Path:
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
        if as_json:
            path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
        else:
            path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

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

    def _seed(self, obj: dict[str, Any]) -> None:
        rt, _ = self._type_for_object(obj)
        meta = dict(obj["metadata"])
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=timestamp())
        new = {**obj, "metadata": meta}
        if rt.initial_status is not None:
            new["status"] = dict(rt.initial_status)
        self.store.commit(rt.key, new, ADDED, None)
