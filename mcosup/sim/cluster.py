"""A whole mcosup cluster on this machine, for ``mcosup demo`` and the end-to-end tests (contract section 10).

:class:`LocalCluster` starts, under one work directory, everything a real installation has:

- an API server (:mod:`mcosup.sim.backends`: the emulator, or with ``control_plane="real"`` a real
  kube-apiserver, etcd and kube-controller-manager), with mcosup's own CRDs (``deploy/crds/``),
  namespace and ServiceAccounts (``deploy/``; on the real one the RBAC too, which it enforces)
  installed, and ``deploy/webhook.yaml``'s ValidatingWebhookConfiguration pointing at the supervisor's
  webhook port;
- a local ``docker-registry`` asking for credentials, with a tiny stock OS image pushed to it;
- the build config (``on-cluster-build-config`` and its two Secrets), ``machine-config-osimageurl``,
  ``node-certificates``, a ``master`` and a ``worker`` pool with a few MachineConfigs each;
- Nodes (Ready, with the pool role labels), each with a :class:`~mcosup.sim.fakehost.FakeHost` and a real
  ``mcosup daemon`` process using the daemon ServiceAccount bound to its node (restarted after reboots);
- ``mcosup supervisor`` as a real subprocess with its own ServiceAccount and self-managed webhook TLS
  (:mod:`mcosup.sim.supervisorprocess`);
- the kubelet stand-in, running the builder pod and the build pods (local ``mcosup`` and ``buildah``).
  There is no scheduler: it binds them (the ``binding`` subresource) to ``infra-0``, a Ready node of no
  pool, so no rollout drains them (on a real cluster a drain of the node they landed on would evict
  them, and the supervisor or the build's retries start them again).

Start-up and shutdown are bounded; every process started here is stopped on the way out. Nothing here
knows the story the demo tells: it offers actions (opt in, add a MachineConfig, add a node) and
observations (pools, nodes, hosts, the registry). The objects it writes are built by
:mod:`mcosup.sim.objects`; what a story is judged by, and :func:`~mcosup.sim.invariants.wait_until`
for outcomes, are in :mod:`mcosup.sim.invariants`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.resources import (
    CONFIGMAPS,
    JOBS,
    MACHINECONFIGPOOLS,
    MACHINECONFIGS,
    MACHINEOSBUILDS,
    MACHINEOSCONFIGS,
    NODES,
    PODS,
    SECRETS,
    Resource,
)
from mcosup.model import machineosbuild, names
from mcosup.runtime.settings import KubeSettings
from mcosup.sim.apiserver import Emulator
from mcosup.sim.backends import DEPLOY, Kind, make_backend
from mcosup.sim.containers import gated_buildah_rule
from mcosup.sim.fakehost import DaemonHandle, FakeHost, run_daemon
from mcosup.sim.invariants import ClusterError, not_converged, wait_until
from mcosup.sim.kubelet import Kubelet, default_image_rules
from mcosup.sim.objects import (
    ROLE_NODE_LABEL,
    base_machineconfigs,
    docker_secret,
    node_object,
    pool_object,
)
from mcosup.sim.ostreehost import HostKind, create_host, remove_host
from mcosup.sim.recorder import Entry, Recorder
from mcosup.sim.registry import Registry, build_base_image, free_port
from mcosup.sim.supervisorprocess import BUILDAH_IMAGE, MCOSUP_IMAGE, WEBHOOK_SERVICE, SupervisorProcess

log = logging.getLogger(__name__)

#: The node the kubelet stand-in binds the builder and build pods to: in no pool, so never drained.
INFRA_NODE = "infra-0"
#: Files a daemon keeps for itself on the host: they name configs and steps, so they differ per history.
DAEMON_BOOKKEEPING = ("/etc/mco/mcosup-daemon-state.json",)

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    #: Nodes per pool.
    masters: int = 1
    workers: int = 3
    #: ``spec.maxUnavailable`` of the worker pool (the master pool keeps the default, 1).
    max_unavailable: int | str = 1
    namespace: str = names.DEFAULT_NAMESPACE
    #: HTTP Basic credentials of the local registry (the build config's Secrets carry them).
    registry_credentials: tuple[str, str] = ("mcosup", "local-registry-password")
    #: Repository of the built images in the local registry.
    repo: str = "os/layered"
    #: Extra environment of the supervisor (and, for ``MCOSUP_BUILD_*``, of the builder it spawns).
    supervisor_env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Replicas of the supervisor (the Deployment runs 2: controllers on the Lease holder); the webhook
    #: configuration names the first one's port.
    supervisors: int = 1
    #: Seconds allowed for each start-up step (registry, base image build, supervisor readiness).
    startup_seconds: float = 120.0
    #: What stands in for each node's OS: ``"fake"`` (:class:`~mcosup.sim.fakehost.FakeHost`: a plain
    #: directory, deployments in a JSON file; quick, no root needed) or ``"ostree"``
    #: (:class:`~mcosup.sim.ostreehost.OstreeHost`: a real libostree sysroot that pulls, deploys and
    #: boots the images built, with ostree's /etc merge; needs root and Debian's ``ostree``).
    host: HostKind = "fake"
    #: The API server: the bundled emulator, or a real kube-apiserver, etcd and kube-controller-manager
    #: built from the Kubernetes Go modules (:mod:`mcosup.sim.controlplane`).
    control_plane: Kind = "emulator"
    #: While this file exists, every ``buildah`` call of a build Pod waits: a test acts "mid-build"
    #: deterministically instead of racing a fast build. None: builds run at once.
    buildah_gate: Path | None = None


async def handed_off_image(kube: kclient.Kube, pool_name: str) -> str | None:
    """The image the rollout takes for the pool: its MachineOSConfig's current MachineOSBuild's, when that
    build Succeeded for the pool's current rendered config (read fresh from the API server)."""
    pool = await kube.get(MACHINECONFIGPOOLS, pool_name)
    try:
        mosc = await kube.get(MACHINEOSCONFIGS, pool_name)
    except errors.NotFound:
        return None
    current = machineosbuild.current_build_name(mosc)
    mosb = None
    if current:
        with contextlib.suppress(errors.NotFound):
            mosb = await kube.get(MACHINEOSBUILDS, current)
    return machineosbuild.image_for_pool(pool, mosc, lambda name: mosb if name == current else None)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def missing_tools() -> list[str]:
    """The Debian packages the local cluster needs and this machine lacks."""
    missing = []
    if shutil.which("buildah") is None:
        missing.append("buildah")
    if not (shutil.which("docker-registry") or Path("/usr/bin/docker-registry").exists()):
        missing.append("docker-registry")
    return missing


# ---------------------------------------------------------------------------------------- the cluster


@dataclasses.dataclass
class SimNode:
    name: str
    role: str
    host: FakeHost
    daemon: DaemonHandle
    task: asyncio.Task[None] | None = None


class LocalCluster:
    """``async with LocalCluster(config, workdir) as cluster:`` — see the module docstring."""

    def __init__(
        self, config: ClusterConfig = ClusterConfig(), workdir: Path | None = None, say: Say | None = None
    ):
        self.config = config
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mcosup-cluster-"))
        self.say: Say = say or (lambda text: log.info("%s", text))
        self.ns = config.namespace
        self.registry = Registry(self.workdir / "registry", credentials=config.registry_credentials)
        self.webhook_port = free_port()
        self.backend = make_backend(
            config.control_plane,
            workdir=self.workdir,
            namespace=self.ns,
            service=WEBHOOK_SERVICE,
            webhook_port=self.webhook_port,
            startup_seconds=config.startup_seconds,
        )
        self._nodes_seen: Recorder | None = None
        #: Every container's output, per (namespace, pod, container): one entry per Pod of that name.
        self.pod_logs: dict[tuple[str, str, str], list[str]] = {}
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.base_image = ""
        self.nodes: dict[str, SimNode] = {}
        #: Every replica; :attr:`supervisor` is the first.
        self.supervisors = [
            SupervisorProcess(
                self.backend,
                self.workdir,
                self.ns,
                self.webhook_port if i == 0 else free_port(),
                extra_env=config.supervisor_env,
                startup_seconds=config.startup_seconds,
                identity=f"machine-config-supervisor-{i}",
                log_name="supervisor.log" if i == 0 else f"supervisor-{i}.log",
            )
            for i in range(max(1, config.supervisors))
        ]
        self.supervisor = self.supervisors[0]
        self._kube_cm: contextlib.AbstractAsyncContextManager[kclient.Kube] | None = None
        self._kube: kclient.Kube | None = None
        self._kubelet_task: asyncio.Task[None] | None = None
        self._recorder_task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()

    @property
    def kube(self) -> kclient.Kube:
        if self._kube is None:
            raise ClusterError("the cluster is not started")
        return self._kube

    @property
    def emulator(self) -> Emulator:
        """The emulator, for tests of emulator-only hooks (fault injection, its own history)."""
        from mcosup.sim.backends import EmulatorBackend

        if not isinstance(self.backend, EmulatorBackend):
            raise ClusterError(
                f"this cluster runs on the {self.backend.kind} control plane, not the emulator"
            )
        return self.backend.emulator

    @property
    def pullspec(self) -> str:
        """``finalImagePullspec`` of the build config (its tag is replaced per build)."""
        return f"{self.registry.host}/{self.config.repo}:latest"

    # -------------------------------------------------------------------------------- life cycle

    async def __aenter__(self) -> LocalCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not DEPLOY.is_dir():
            raise ClusterError(f"install manifests not found at {DEPLOY}: run from a checkout of mcosup")
        missing = missing_tools()
        if missing:
            raise ClusterError(f"missing tools: apt-get install -y {' '.join(missing)}")
        self.say("starting the local registry (docker-registry, with credentials)")
        async with asyncio.timeout(self.config.startup_seconds):
            await self.registry.start()
        self.say("building the stock OS image and pushing it")
        async with asyncio.timeout(self.config.startup_seconds):
            self.base_image = await build_base_image(self.registry, "os/stock", "stock")
        if self.backend.kind == "real":
            self.say("starting a real control plane: etcd, kube-apiserver, kube-controller-manager")
        else:
            self.say("starting the Kubernetes API emulator")
        await self.backend.start()
        self.backend.write_kubeconfig(self.kubeconfig)
        self._kube_cm = kclient.connect(KubeSettings(kubeconfig=str(self.kubeconfig), watch_timeout=60))
        self._kube = await self._kube_cm.__aenter__()
        self._nodes_seen = Recorder(self._kube, NODES)
        self._recorder_task = asyncio.create_task(self._nodes_seen.run(), name="node-recorder")
        self.say("installing CRDs, namespace, ServiceAccounts and the build config")
        await self._install()
        self.say(f"creating nodes: {self.config.masters} master, {self.config.workers} worker")
        for i in range(self.config.masters):
            await self.add_node(f"master-{i}", "master")
        for i in range(self.config.workers):
            await self.add_node(f"worker-{i}", "worker")
        # Where the builder and build pods run: a node of no pool, so no rollout ever drains it.
        await self.backend.create_object(node_object(INFRA_NODE, "infra"))
        self.say("starting the kubelet stand-in")
        self._kubelet_task = asyncio.create_task(self._kubelet().run(), name="kubelet")
        self.say("starting the supervisor (real process, self-managed webhook TLS)")
        for i, supervisor in enumerate(self.supervisors):
            await supervisor.start(self.kube, install_webhook=i == 0)

    async def stop(self) -> None:
        """Stop everything started, newest first; bounded (each process gets SIGTERM, then SIGKILL)."""
        tasks = [n.task for n in self.nodes.values() if n.task is not None]
        if self._kubelet_task is not None:
            tasks.append(self._kubelet_task)
        if self._recorder_task is not None:
            tasks.append(self._recorder_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for n in self.nodes.values():
            n.task = None
        self._kubelet_task = self._recorder_task = None
        for supervisor in self.supervisors:
            await supervisor.stop()
        if self._kube_cm is not None:
            with contextlib.suppress(Exception):
                await self._kube_cm.__aexit__(None, None, None)
            self._kube_cm = self._kube = None
        await self.backend.stop()
        await self.registry.stop()

    def remove_workdir(self) -> None:
        """Remove the work directory the cluster made for itself (not one it was given)."""
        if self._own_workdir:
            remove_host(self.workdir)  # clears the immutable bit ostree leaves on deployments first

    # -------------------------------------------------------------------------------- set-up

    async def _install(self) -> None:
        emu, ns = self.backend, self.ns
        for path in (DEPLOY / "namespace.yaml", *sorted((DEPLOY / "crds").glob("*.yaml"))):
            for doc in _documents(path):
                await emu.create_object(doc)
        await emu.install_identities()
        host, creds = self.registry.host, self.config.registry_credentials
        await emu.create_object(docker_secret("demo-pull-secret", ns, host, creds))
        await emu.create_object(docker_secret("demo-push-secret", ns, host, creds))
        cms: dict[str, dict[str, str]] = {
            names.BUILD_CONFIG_CM: {
                names.BASE_IMAGE_PULL_SECRET_KEY: "demo-pull-secret",
                names.FINAL_IMAGE_PUSH_SECRET_KEY: "demo-push-secret",
                names.FINAL_IMAGE_PULLSPEC_KEY: self.pullspec,
            },
            names.OSIMAGEURL_CM: {names.BASE_OS_CONTAINER_IMAGE_KEY: self.base_image},
            names.NODE_CERTIFICATES_CM: {"kubelet-ca.crt": "-----BEGIN CERTIFICATE-----\nMCOSUPDEMO\n"},
        }
        for name, data in cms.items():
            await emu.create_object(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": ns},
                    "data": data,
                }
            )
        await emu.create_object(pool_object("master"))
        await emu.create_object(pool_object("worker", self.config.max_unavailable))
        for role in ("master", "worker"):
            for mc in base_machineconfigs(role):
                await emu.create_object(mc)

    def _kubelet(self) -> Kubelet:
        def credentials(ns: str, account: str, node_name: str | None, target: Path) -> Path:
            return self.backend.write_kubeconfig_for_service_account(target, ns, account, node_name)

        rules = default_image_rules(mcosup_images=(MCOSUP_IMAGE,), buildah_images=(BUILDAH_IMAGE,))
        if self.config.buildah_gate is not None:
            rules = [
                gated_buildah_rule(BUILDAH_IMAGE, self.config.buildah_gate, self.workdir / "gated-bin"),
                *default_image_rules(mcosup_images=(MCOSUP_IMAGE,), buildah_images=()),
            ]
        return Kubelet(
            self.kube,
            self.workdir / "kubelet",
            image_rules=rules,
            credentials=credentials,
            log_sink=self._pod_log,
            namespace=self.ns,
            bind_to=INFRA_NODE,
        )

    async def add_node(self, name: str, role: str) -> SimNode:
        """A Ready Node in pool ``role`` with a host (``ClusterConfig.host``) and a daemon running on it."""
        await self.backend.create_object(node_object(name, role))
        user, password = self.config.registry_credentials
        try:
            host = await create_host(
                self.config.host,
                self.workdir / "hosts" / name,
                image=self.base_image,
                registry=f"http://{user}:{password}@{self.registry.host}",
            )
        except ValueError as exc:
            raise ClusterError(f"ClusterConfig.host: {exc}") from None
        kubeconfig = await asyncio.to_thread(
            self.backend.write_kubeconfig_for_service_account,
            self.workdir / "hosts" / name / "daemon.kubeconfig",
            self.ns,
            names.DAEMON_SA,
            name,
        )
        handle = DaemonHandle(host, name)
        sim = SimNode(name, role, host, handle)
        sim.task = asyncio.create_task(
            run_daemon(handle, kubeconfig=kubeconfig, namespace=self.ns), name=f"daemon-{name}"
        )
        self.nodes[name] = sim
        return sim

    def _pod_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        """Keep each container's output (a later Pod of the same name adds an entry) and pass it on."""
        entries = self.pod_logs.setdefault((namespace, pod, container), [])
        if entries and text.startswith(entries[-1]):
            entries[-1] = text
        else:
            entries.append(text)
        if self.backend.log_sink is not None:
            self.backend.log_sink(namespace, pod, container, text)

    def process_logs(self) -> dict[str, str]:
        """The log of every mcosup process the cluster ran: supervisor, daemons, builder and build pods."""
        logs = {"supervisor": self.supervisor.text()}
        for supervisor in self.supervisors[1:]:
            logs[f"supervisor {supervisor.identity}"] = supervisor.text()
        for name, sim in self.nodes.items():
            logs[f"daemon {name}"] = sim.daemon.log()
        for (ns, pod, container), texts in self.pod_logs.items():
            for i, text in enumerate(texts):
                logs[f"pod {ns}/{pod} {container} #{i + 1}"] = text
        return logs

    def forbidden(self) -> list[str]:
        """Every line of any process's log where the API server refused it (403): RBAC too narrow."""
        return [
            f"{name}: {line}"
            for name, text in self.process_logs().items()
            for line in text.splitlines()
            if "403 Forbidden" in line or " is forbidden: " in line
        ]

    # -------------------------------------------------------------------------------- actions

    async def opt_in(self, pool_name: str, on: bool = True) -> None:
        """Add (or remove) the layering opt-in label, as ``kubectl label mcp <pool> ...`` does.

        A patch the API server gives up on (409 after its own retries: the pool's status is written
        often while it builds and rolls, and the webhook call widens the window) is sent again, as a
        person would run the command again.
        """
        patch = {"metadata": {"labels": {names.LAYERING_ENABLED: "" if on else None}}}
        await self._patch_again_on_conflict(MACHINECONFIGPOOLS, pool_name, patch)

    async def rebuild(self, machineosconfig_name: str) -> None:
        """Ask for the current config to be built again, as ``kubectl annotate machineosconfig <name>
        machineconfiguration.openshift.io/rebuild=`` does (its status is written often, as a pool's is)."""
        patch = {"metadata": {"annotations": {names.REBUILD_ANNOTATION: ""}}}
        await self._patch_again_on_conflict(MACHINEOSCONFIGS, machineosconfig_name, patch)

    async def patch_pool(self, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch a pool, as ``kubectl annotate`` or ``kubectl patch mcp <pool> --type merge`` does."""
        await self._patch_again_on_conflict(MACHINECONFIGPOOLS, name, patch)

    async def _patch_again_on_conflict(self, resource: Resource, name: str, patch: Mapping[str, Any]) -> None:
        """A patch sent again when the API server gives up on it with a 409, as a person runs it again."""
        for attempt in range(5):
            try:
                await self.kube.patch(resource, name, dict(patch))
                return
            except errors.Conflict:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))

    async def apply_machineconfig(self, mc: Mapping[str, Any]) -> None:
        try:
            await self.kube.create(MACHINECONFIGS, dict(mc))
        except errors.AlreadyExists:
            await self.kube.patch(MACHINECONFIGS, mc["metadata"]["name"], {"spec": mc["spec"]})

    async def apply_configmap(self, name: str, data: Mapping[str, str]) -> None:
        """Create ConfigMap ``name`` in the cluster's namespace, or set these keys of the one there."""
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": dict(data)}
        try:
            await self.kube.create(CONFIGMAPS, body, namespace=self.ns)
        except errors.AlreadyExists:
            await self.kube.patch(CONFIGMAPS, name, {"data": dict(data)}, namespace=self.ns)

    async def create_machineosconfig(self, mosc: Mapping[str, Any]) -> None:
        """An admin's MachineOSConfig (:func:`~mcosup.sim.objects.machineosconfig`): its pool opts in."""
        await self.kube.create(MACHINEOSCONFIGS, dict(mosc))

    async def delete_machineosconfig(self, name: str) -> None:
        """Delete a MachineOSConfig, the object form's opt-out (gone already is fine)."""
        with contextlib.suppress(errors.NotFound):
            await self.kube.delete(MACHINEOSCONFIGS, name)

    # -------------------------------------------------------------------------------- observations

    async def pool(self, name: str) -> dict[str, Any]:
        return await self.kube.get(MACHINECONFIGPOOLS, name)

    async def rendered(self, pool_name: str) -> str | None:
        p = await self.pool(pool_name)
        return ((p.get("spec") or {}).get("configuration") or {}).get("name") or None

    async def rendered_config(self, pool_name: str) -> dict[str, Any]:
        name = await self.rendered(pool_name)
        if not name:
            raise ClusterError(f"pool {pool_name} has no rendered config")
        return await self.kube.get(MACHINECONFIGS, name)

    async def image(self, pool_name: str) -> str | None:
        p = await self.pool(pool_name)
        value = ((p.get("metadata") or {}).get("annotations") or {}).get(names.NEWEST_IMAGE_ANNOTATION)
        return str(value) if value else None

    async def handed_off_image(self, pool_name: str) -> str | None:
        """The image the rollout takes for the pool (:func:`handed_off_image`)."""
        return await handed_off_image(self.kube, pool_name)

    async def build_state(self, pool_name: str) -> tuple[str, str] | None:
        """The True build condition of the pool: (type, message), or None."""
        p = await self.pool(pool_name)
        for cond in (p.get("status") or {}).get("conditions") or []:
            if cond.get("type") in names.BUILD_CONDITIONS and cond.get("status") == "True":
                return str(cond["type"]), str(cond.get("message", ""))
        return None

    async def condition(self, pool_name: str, type_: str) -> dict[str, Any] | None:
        p = await self.pool(pool_name)
        for cond in (p.get("status") or {}).get("conditions") or []:
            if cond.get("type") == type_:
                return dict(cond)
        return None

    async def pool_nodes(self, pool_name: str) -> list[dict[str, Any]]:
        items, _ = await self.kube.list(NODES, label_selector=ROLE_NODE_LABEL + pool_name)
        return sorted(items, key=lambda n: n["metadata"]["name"])

    async def builder_pod(self) -> dict[str, Any] | None:
        with contextlib.suppress(errors.NotFound):
            return await self.kube.get(PODS, names.BUILDER_POD, namespace=self.ns)
        return None

    async def machineosconfig(self, name: str) -> dict[str, Any] | None:
        with contextlib.suppress(errors.NotFound):
            return await self.kube.get(MACHINEOSCONFIGS, name)
        return None

    async def machineosbuilds(self) -> list[dict[str, Any]]:
        """Every MachineOSBuild, oldest first."""
        items, _ = await self.kube.list(MACHINEOSBUILDS)
        return sorted(
            items, key=lambda b: (b["metadata"].get("creationTimestamp", ""), b["metadata"]["name"])
        )

    async def build_objects(self) -> list[str]:
        """``Kind/name`` of every object carrying the build-object label."""
        out = []
        for resource in (JOBS, PODS, CONFIGMAPS, SECRETS):
            items, _ = await self.kube.list(
                resource, namespace=self.ns, label_selector=names.BUILD_OBJECT_LABEL
            )
            out += [f"{resource.kind}/{i['metadata']['name']}" for i in items]
        return sorted(out)

    async def left_behind(self, pool_name: str, images: Iterable[str] = ()) -> list[str]:
        """What layering left once no pool is opted in any more: every build object and MachineOSBuild, the
        builder pod, those of ``images`` the registry still serves, and on pool ``pool_name`` the
        newest-image annotation, the build conditions and LayeringReady. Empty when all is cleaned up."""
        pool = await self.pool(pool_name)
        left = await self.build_objects()
        builds, _ = await self.kube.list(MACHINEOSBUILDS)
        left += [f"MachineOSBuild/{b['metadata']['name']}" for b in builds]
        for image in images:
            if await asyncio.to_thread(self.registry_has, image):
                left.append(f"image {image}")
        if await self.builder_pod() is not None:
            left.append(f"Pod/{names.BUILDER_POD}")
        if names.NEWEST_IMAGE_ANNOTATION in (pool["metadata"].get("annotations") or {}):
            left.append(names.NEWEST_IMAGE_ANNOTATION)
        left += [
            c["type"]
            for c in (pool.get("status") or {}).get("conditions") or []
            if c["type"] in (*names.BUILD_CONDITIONS, names.LAYERING_READY)
        ]
        return left

    async def wait_cleaned_up(self, pool_name: str, images: Iterable[str] = (), within: float = 60) -> None:
        """Wait until :meth:`left_behind` is empty: the opt-out of the last opted-in pool is complete."""

        async def cleaned_up() -> str | None:
            left = await self.left_behind(pool_name, images)
            return f"left: {left}" if left else None

        await wait_until(
            cleaned_up,
            within=within,
            what=f"no build object, MachineOSBuild, image, builder pod or condition of {pool_name} left",
        )

    async def converged(self, pool_name: str, *, layered: bool) -> str | None:
        """None when every node of the pool runs the pool's current config (and image when layered)."""
        image = await self.handed_off_image(pool_name) if layered else None
        return not_converged(
            await self.pool(pool_name), await self.pool_nodes(pool_name), image=image, layered=layered
        )

    async def wait_converged(self, pool_name: str, *, layered: bool, within: float = 300) -> None:
        mode = "layered" if layered else "legacy"
        await wait_until(
            lambda: self.converged(pool_name, layered=layered),
            within=within,
            what=f"every {pool_name} node {mode} on the pool's current config",
        )

    def host_tree(self, node_name: str) -> dict[str, tuple[bytes, int]]:
        """Every file of the node's host tree (path → contents, mode), without the daemon's bookkeeping."""
        files = self.nodes[node_name].host.files()
        return {p: v for p, v in files.items() if p not in DAEMON_BOOKKEEPING}

    def registry_has(self, image: str) -> bool:
        """Blocking: does the local registry serve ``<host>/<repo>@<digest>``?"""
        rest = image.split("/", 1)[1]
        repo, _, digest = rest.partition("@")
        return self.registry.manifest_digest(repo, digest) == digest

    @property
    def node_history(self) -> list[Entry]:
        """Every version of every Node seen by a watch from the start: (sequence, event, object)."""
        return self._nodes_seen.history if self._nodes_seen is not None else []

    def history_rv(self) -> int:
        """The newest sequence number in :attr:`node_history` (a marker for :func:`most_unavailable`)."""
        return len(self.node_history)


@contextlib.asynccontextmanager
async def local_cluster(
    config: ClusterConfig = ClusterConfig(), workdir: Path | None = None, say: Say | None = None
) -> AsyncIterator[LocalCluster]:
    """A started :class:`LocalCluster`, stopped (and its temporary work dir removed) afterwards."""
    cluster = LocalCluster(config, workdir, say)
    try:
        async with cluster:
            yield cluster
    finally:
        cluster.remove_workdir()
