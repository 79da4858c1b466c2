"""Test harness for the node controller against the emulator: a pool, nodes, fake daemons and kubelet,
a supervisor that can be killed and restarted, and invariant checks over the emulator's history."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from mcosup.control.clock import Clock
from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.cache import Informer
from mcosup.kube.resources import (
    MACHINECONFIGPOOLS,
    MACHINEOSBUILDS,
    MACHINEOSCONFIGS,
    NAMESPACES,
    NODES,
    PODS,
)
from mcosup.model import health, machineosbuild, names
from mcosup.model.node import ZONE_LABEL, NodeView
from mcosup.runtime.settings import DrainSettings, KubeSettings, RolloutSettings
from mcosup.supervisor.rollout import NodeRollout

NS = "openshift-machine-config-operator"
R0 = "rendered-worker-" + "0" * 32
R1 = "rendered-worker-" + "1" * 32
IMG = "registry.local/os@sha256:" + "a" * 64
ROLE = "node-role.kubernetes.io/worker"

FAST = RolloutSettings(
    drain=DrainSettings(timeout=3600, retry_base=0.05, retry_cap=0.2),
    resync=5.0,
    conflict_retry=0.05,
)


@contextlib.asynccontextmanager
async def connect(kubeconfig: Path) -> AsyncIterator[kclient.Kube]:
    fast = errors.RetryPolicy(attempts=5, base=0.01, cap=0.5)
    async with kclient.connect(KubeSettings(kubeconfig=str(kubeconfig), watch_timeout=30), retry=fast) as k:
        yield k


async def ensure_namespace(kube: kclient.Kube, name: str = NS) -> None:
    with contextlib.suppress(errors.AlreadyExists):
        await kube.create(NAMESPACES, {"metadata": {"name": name}})


def pool_body(
    *,
    rendered: str = R0,
    max_unavailable: Any = None,
    layered: bool = False,
    paused: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: "worker"}},
        "nodeSelector": {"matchLabels": {ROLE: ""}},
        "configuration": {"name": rendered, "source": []},
        "paused": paused,
    }
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    labels = {names.LAYERING_ENABLED: ""} if layered else {}
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfigPool",
        "metadata": {"name": "worker", "labels": labels},
        "spec": spec,
    }


async def create_nodes(
    kube: kclient.Kube,
    count: int,
    *,
    config: str = R0,
    image: str | None = None,
    unschedulable: Iterable[str] = (),
) -> list[str]:
    cordoned = set(unschedulable)
    made = []
    for i in range(count):
        name = f"w{i:02d}"
        ann = {names.DESIRED_CONFIG: config, names.CURRENT_CONFIG: config, names.STATE: names.STATE_DONE}
        if image:
            ann[names.DESIRED_IMAGE] = image
            ann[names.CURRENT_IMAGE] = image
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    ROLE: "",
                    names.DAEMON_MODE: names.MODE_LAYERED if image else names.MODE_LEGACY,
                    ZONE_LABEL: f"zone-{i % 3}",
                },
                "annotations": ann,
            },
            "spec": {"unschedulable": True} if name in cordoned else {},
        }
        await kube.create(NODES, body)
        await set_ready(kube, name, True)
        made.append(name)
    return made


async def pool_condition(kube: kclient.Kube, type_: str) -> dict[str, Any]:
    """The worker pool's condition of ``type_`` as the API server has it ({} when it has none)."""
    pool = await kube.get(MACHINECONFIGPOOLS, "worker")
    return next((c for c in (pool.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


async def set_ready(kube: kclient.Kube, name: str, ready: bool) -> None:
    cond = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "KubeletReady" if ready else "Test",
    }
    await kube.patch_status(NODES, name, {"status": {"conditions": [cond]}})


class FakeDaemons:
    """Plays every node's daemon: sees desired* differ from current*, reports Working, takes
    ``seconds``, then reports current* = desired* and Done — by patching the Node, as the daemon does.
    An image in ``rolls_back`` does not boot healthily: the node reports it rolled back from it (and
    stays so until given something else, as the daemon does).

    Staging (contract 12.1), as the daemon does it: a Done node asked to stage an image it neither runs
    nor is given downloads it (``pull_seconds``) and reports ``stagedImage``; the report goes once the
    request does. Nodes in ``never_stage`` play an older daemon that ignores the request."""

    def __init__(
        self,
        kube: kclient.Kube,
        seconds: float,
        *,
        rolls_back: Iterable[str] = (),
        pull_seconds: float = 0.0,
        never_stage: Iterable[str] = (),
    ):
        self.kube = kube
        self.seconds = seconds
        self.rolls_back = set(rolls_back)
        self.pull_seconds = pull_seconds
        self.never_stage = set(never_stage)
        self.nodes = Informer(kube, NODES)
        self._busy: set[str] = set()
        self._staging: set[str] = set()
        self.updates = 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self.nodes.subscribe(lambda _t, node: self._maybe_start(tg, node))
            await self.nodes.run()

    def _maybe_start(self, tg: asyncio.TaskGroup, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        view = NodeView.of(node)
        failed = health.rolled_back_from(view)
        if name in self._busy or (failed is not None and failed == view.desired_image):
            return
        if _behind(node) or failed is not None:  # behind, or given something else after a rollback
            self._busy.add(name)
            tg.create_task(self._update(name))
        elif name not in self._staging and name not in self.never_stage and _stage_change(view):
            self._staging.add(name)
            tg.create_task(self._stage(name))

    async def _stage(self, name: str) -> None:
        try:
            view = NodeView.of(self.nodes.get(name) or {})
            if (report := _stage_change(view)) is None:
                return
            if report[names.STAGED_IMAGE] is not None:
                await asyncio.sleep(self.pull_seconds)  # the download, the node staying Done
            await self.kube.patch(NODES, name, {"metadata": {"annotations": report}})
        except errors.NotFound:
            pass
        finally:
            self._staging.discard(name)

    async def _update(self, name: str) -> None:
        try:
            latest = self.nodes.get(name)
            while latest is not None and (_behind(latest) or health.rolled_back_from(NodeView.of(latest))):
                await self.kube.patch(
                    NODES, name, {"metadata": {"annotations": {names.STATE: names.STATE_WORKING}}}
                )
                await asyncio.sleep(self.seconds)  # the work an update takes on the host
                node = self.nodes.get(name)
                if node is None:
                    return
                ann = node["metadata"].get("annotations") or {}
                if ann.get(names.DESIRED_IMAGE) in self.rolls_back:
                    why = "the fake host was told this image does not boot healthily"
                    report = health.rolled_back(ann[names.DESIRED_IMAGE], why)
                    await self.kube.patch(NODES, name, {"metadata": {"annotations": report}})
                    return
                done = {
                    names.CURRENT_CONFIG: ann.get(names.DESIRED_CONFIG),
                    names.CURRENT_IMAGE: ann.get(names.DESIRED_IMAGE),
                    names.STATE: names.STATE_DONE,
                    names.REASON: None,
                }
                written = await self.kube.patch(NODES, name, {"metadata": {"annotations": done}})
                self.updates += 1
                # A target changed meanwhile shows in whichever copy is newer.
                cached = self.nodes.get(name)
                newer = cached is not None and int(cached["metadata"]["resourceVersion"]) > int(
                    written["metadata"]["resourceVersion"]
                )
                latest = cached if newer else written
        except errors.NotFound:
            pass
        finally:
            self._busy.discard(name)


def _stage_change(view: NodeView) -> dict[str, str | None] | None:
    """The stagedImage report a Done node's daemon owes, or None when it owes none."""
    image = view.staging_image
    if view.state != names.STATE_DONE or view.mid_update:
        return None
    if image is None or image in (view.current_image, view.desired_image):
        return {names.STAGED_IMAGE: None} if view.staged_image is not None else None
    return {names.STAGED_IMAGE: image} if view.staged_image != image else None


def _behind(node: dict[str, Any]) -> bool:
    ann = node["metadata"].get("annotations") or {}
    return ann.get(names.DESIRED_CONFIG) != ann.get(names.CURRENT_CONFIG) or ann.get(
        names.DESIRED_IMAGE
    ) != ann.get(names.CURRENT_IMAGE)


class FakeKubelet:
    """Finishes terminating pods on nodes (no real kubelet runs here): deletes them with grace 0."""

    def __init__(self, kube: kclient.Kube):
        self.kube = kube
        self.pods = Informer(kube, PODS)
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def run(self) -> None:
        def on_pod(_t: str, pod: dict[str, Any]) -> None:
            if pod["metadata"].get("deletionTimestamp"):
                self._queue.put_nowait((pod["metadata"]["namespace"], pod["metadata"]["name"]))

        self.pods.subscribe(on_pod)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.pods.run())
            while True:
                ns, name = await self._queue.get()
                with contextlib.suppress(errors.NotFound):
                    await self.kube.delete(PODS, name, namespace=ns, grace_period=0)


class Supervisor:
    """The node controller with its own connection and caches, as one supervisor process has."""

    def __init__(self, kubeconfig: Path, settings: RolloutSettings = FAST, *, clock: Clock | None = None):
        self.kubeconfig = kubeconfig
        self.settings = settings
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self.rollout: NodeRollout | None = None

    async def _run(self) -> None:
        async with connect(self.kubeconfig) as kube:
            pools, nodes, pods, moscs, mosbs = (
                Informer(kube, MACHINECONFIGPOOLS),
                Informer(kube, NODES),
                Informer(kube, PODS),
                Informer(kube, MACHINEOSCONFIGS),
                Informer(kube, MACHINEOSBUILDS),
            )
            self.rollout = NodeRollout(
                kube,
                pools=pools,
                nodes=nodes,
                pods=pods,
                machineosconfigs=moscs,
                machineosbuilds=mosbs,
                settings=self.settings,
                clock=self.clock,
            )
            async with asyncio.TaskGroup() as tg:
                for informer in (pools, nodes, pods, moscs, mosbs):
                    tg.create_task(informer.run())
                tg.create_task(self.rollout.run())

    def start(self) -> Supervisor:
        self._task = asyncio.create_task(self._run(), name="supervisor")
        return self

    async def restart(self) -> None:
        """Kill it and start a fresh process: new connection, empty caches and memory."""
        await self.stop()
        self.start()

    async def __aenter__(self) -> Supervisor:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Kill it: cancel everything at once, wherever it is."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


@contextlib.asynccontextmanager
async def running(*coroutines: Callable[[], Any]) -> AsyncIterator[None]:
    """Run helper loops (fake daemons, kubelet) for the block's duration."""
    tasks = [asyncio.create_task(c()) for c in coroutines]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# History checks.


def node_versions(
    history: Iterable[tuple[int, str, dict[str, Any]]],
) -> list[tuple[int, str, dict[str, Any]]]:
    return [(rv, kind, obj) for rv, kind, obj in history if obj.get("kind") == "Node"]


def unavailable_over_time(
    history: Iterable[tuple[int, str, dict[str, Any]]],
) -> list[tuple[int, int, str, bool, list[str]]]:
    """(resourceVersion, unavailable count, node changed, whether that node became NotReady, the
    unavailable nodes) for every recorded node version, in order."""
    state: dict[str, dict[str, Any]] = {}
    out = []
    for rv, kind, obj in node_versions(history):
        name = obj["metadata"]["name"]
        before = state.get(name)
        was_ready = before is not None and NodeView.of(before).ready
        if kind == "DELETED":
            state.pop(name, None)
        else:
            state[name] = obj
        down = sorted(_why(o) for o in state.values() if NodeView.of(o).unavailable)
        went_not_ready = was_ready and kind != "DELETED" and not NodeView.of(obj).ready
        out.append((rv, len(down), name, went_not_ready, down))
    return out


def cap_violations(
    history: Iterable[tuple[int, str, dict[str, Any]]], cap: int, *, since: int = 0
) -> list[str]:
    """Instants where a node became unavailable by anything but losing Ready on its own while the
    count went above ``cap``. (A node failing by itself can push the count over; what the controller
    must never do is add to it then.) Only versions after ``since`` are judged (setup comes before)."""
    bad = []
    previous = None
    for rv, count, name, went_not_ready, down in unavailable_over_time(history):
        if rv > since and previous is not None and count > previous and count > cap and not went_not_ready:
            bad.append(f"rv {rv}: node {name} made {count} unavailable (cap {cap}): {down}")
        previous = count
    return bad


def _why(node: dict[str, Any]) -> str:
    v = NodeView.of(node)
    reasons = [
        "notready" if not v.ready else "",
        "cordoned" + ("(ours)" if v.cordoned_by_us else "") if v.unschedulable else "",
        f"state={v.state}" if v.state != names.STATE_DONE else "",
        "behind" if v.desired_config != v.current_config else "",
    ]
    return f"{v.name}[{' '.join(r for r in reasons if r)}]"


def most_unavailable(history: Iterable[tuple[int, str, dict[str, Any]]], *, since: int = 0) -> int:
    """The most nodes unavailable at once at any recorded instant after ``since``."""
    return max((count for rv, count, *_ in unavailable_over_time(history) if rv > since), default=0)


async def record_build(kube: kclient.Kube, pool: str, rendered: str, image: str) -> None:
    """What the builder writes when a build of ``rendered`` succeeds: a MachineOSBuild Succeeded with
    ``image``, named as the current build of the pool's MachineOSConfig (made here when missing)."""
    try:
        mosc = await kube.get(MACHINEOSCONFIGS, pool)
    except errors.NotFound:
        mosc = await kube.create(
            MACHINEOSCONFIGS,
            {
                "metadata": {"name": pool},
                "spec": {
                    "machineConfigPool": {"name": pool},
                    "imageBuilder": {"imageBuilderType": names.JOB_IMAGE_BUILDER},
                    "renderedImagePushSecret": {"name": "push-secret"},
                    "renderedImagePushSpec": "registry.local/os:latest",
                },
            },
        )
    identity = rendered.rsplit("-", 1)[1]
    name = machineosbuild.name_for(pool, identity)
    body = machineosbuild.new(mosc, name, rendered, f"registry.local/os:{pool}-{identity[:16]}", {})
    mosb = await kube.create(MACHINEOSBUILDS, body)
    conditions = [
        {**vars(c), "lastTransitionTime": "2026-01-01T00:00:00Z"}
        for c in machineosbuild.conditions_for(names.MOSB_SUCCEEDED)
    ]
    await kube.patch_status(
        MACHINEOSBUILDS,
        mosb["metadata"]["name"],
        {"status": {"conditions": conditions, "digestedImagePushSpec": image}},
    )
    await kube.patch_status(
        MACHINEOSCONFIGS,
        pool,
        {"status": {"machineOSBuild": machineosbuild.reference(mosb["metadata"]["name"])}},
    )
