"""How close the node controller gets to the ideal rollout time, at several pool sizes.

For each pool size N (200, 1,000 and 2,000 nodes by default): N simulated nodes in the emulator, fake
daemons that take a fixed T seconds per update, one pool with ``maxUnavailable: k`` (10% of the pool
by default). The ideal is ceil(N/k)·T: k nodes always busy, no time lost between one node finishing
and the next starting. Prints measured ÷ ideal (target ≤ 1.05), where the time beyond the ideal went,
and checks the cap held at every instant (every node version the watch delivers).

The emulator and the fake daemons each run in a process of their own by default, as an API server and
nodes do, so this one holds the controller alone; each one's CPU time during the rollout is reported
(``--emulator inline`` puts all three in one event loop; ``--emulator real`` runs the real control
plane instead of the emulator, and reports kube-apiserver's and etcd's CPU as the API server's).
It also prints the cores the ideal pace needs: all three processes' CPU for the whole rollout (its
Events included) divided by the ideal time. All three share this machine, so where that nears the
machine's core count, every write and watch event waits in a busy process and no controller can
reach the ideal here.

    .venv/bin/python bench/rollout_efficiency.py [--nodes 200,1000,2000] [--k 10%] [--seconds 1.0]

With ``--pull-seconds P`` the pool is layered and each update first downloads the new image (P
seconds) unless the node downloaded it ahead of its turn (contract 12.1): the rollout runs twice, with
staging off and on, and prints the mean time a node is unavailable in each and the rollout times.
With staging a node's turn waits until it has the image, so no turn downloads (goal: 0 turns) and
the mean does not include P (goal: below T + P/2); the first wave starts after one download instead,
so the ideal with staging is P + ceil(N/k)·T (the 4·k nodes staging ahead keep up while P ≤ 4·T).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import _summary
import orjson

from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.cache import Informer
from mcosup.kube.resources import CRDS, MACHINECONFIGPOOLS, NAMESPACES, NODES, PODS
from mcosup.model import names
from mcosup.model.node import NodeView
from mcosup.runtime.settings import KubeSettings, RolloutSettings
from mcosup.sim.apiserver import Emulator
from mcosup.sim.controlplane import ControlPlane
from mcosup.supervisor.rollout import NodeRollout

NS = names.DEFAULT_NAMESPACE
R0 = "rendered-worker-" + "0" * 32
R1 = "rendered-worker-" + "1" * 32
IMAGES = {
    R0: "registry.local/os/worker@sha256:" + "0" * 64,
    R1: "registry.local/os/worker@sha256:" + "1" * 64,
}
ROLE = "node-role.kubernetes.io/worker"
BENCH = "rollout_efficiency"
GOAL = 1.05
CRD_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "mco" / "crds"


async def install_crds(kube: kclient.Kube) -> None:
    import yaml

    for path in sorted(CRD_DIR.glob("*.yaml")):
        with contextlib.suppress(errors.AlreadyExists):
            await kube.create(CRDS, yaml.safe_load(path.read_text()))
    # Wait until the API serves pools.
    for _ in range(200):
        try:
            await kube.list(MACHINECONFIGPOOLS)
            return
        except errors.ApiError:
            await asyncio.sleep(0.05)


class Daemons:
    """Every node's daemon: reports Working, then current* = desired* and Done T seconds after it saw
    its target (its own Working report is part of its T, as a real daemon's reports are part of its
    update: the ideal counts the daemons' time, not the API server's latency on their writes)."""

    def __init__(self, kube: kclient.Kube, seconds: float, pull_seconds: float = 0.0):
        self.kube, self.seconds, self.pull_seconds = kube, seconds, pull_seconds
        self.nodes = Informer(kube, NODES)
        self.busy: set[str] = set()
        self.staging: set[str] = set()
        #: Seconds each update kept its node busy, from seeing the target to the Done report answered.
        self.spans: list[float] = []
        #: (seen, done) monotonic times of every update.
        self.times: list[tuple[float, float]] = []
        #: Updates that downloaded the image during their turn (not staged when it came).
        self.pulls = 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:

            def on_node(_t: str, node: dict[str, Any]) -> None:
                name = node["metadata"]["name"]
                if name not in self.busy and _behind(node):
                    self.busy.add(name)
                    tg.create_task(self.update(name))
                elif name not in self.staging and _to_stage(node):
                    self.staging.add(name)
                    tg.create_task(self.stage(name, _to_stage(node)))

            self.nodes.subscribe(on_node)
            await self.nodes.run()

    async def stage(self, name: str, image: str | None) -> None:
        """Download ahead of the node's turn: P seconds, the node staying Done."""
        try:
            await asyncio.sleep(self.pull_seconds)
            await self.kube.patch(NODES, name, {"metadata": {"annotations": {names.STAGED_IMAGE: image}}})
        finally:
            self.staging.discard(name)

    async def update(self, name: str) -> None:
        seen = time.monotonic()
        try:
            node = self.nodes.get(name) or {}
            a = node.get("metadata", {}).get("annotations") or {}
            pull = self.pull_seconds if a.get(names.STAGED_IMAGE) != a.get(names.DESIRED_IMAGE) else 0.0
            self.pulls += pull > 0
            await self.kube.patch(
                NODES, name, {"metadata": {"annotations": {names.STATE: names.STATE_WORKING}}}
            )
            await asyncio.sleep(max(0.0, pull + self.seconds - (time.monotonic() - seen)))
            node = self.nodes.get(name)
            if node is None:
                return
            a = node["metadata"]["annotations"]
            done = {
                names.CURRENT_CONFIG: a.get(names.DESIRED_CONFIG),
                names.CURRENT_IMAGE: a.get(names.DESIRED_IMAGE),
                names.STATE: names.STATE_DONE,
            }
            await self.kube.patch(NODES, name, {"metadata": {"annotations": done}})
            self.spans.append(time.monotonic() - seen)
            self.times.append((seen, time.monotonic()))
        finally:
            self.busy.discard(name)


def _to_stage(node: dict[str, Any]) -> str | None:
    a = node["metadata"].get("annotations") or {}
    image = a.get(names.STAGING_IMAGE)
    if image and image not in (
        a.get(names.STAGED_IMAGE),
        a.get(names.CURRENT_IMAGE),
        a.get(names.DESIRED_IMAGE),
    ):
        return str(image)
    return None


def _behind(node: dict[str, Any]) -> bool:
    a = node["metadata"].get("annotations") or {}
    return a.get(names.DESIRED_CONFIG) != a.get(names.CURRENT_CONFIG) or a.get(names.DESIRED_IMAGE) != a.get(
        names.CURRENT_IMAGE
    )


class CapWatch:
    """Counts unavailable nodes after every node event a watch delivers (every version, in order).

    An event changes one node, so only that node's standing is recomputed: O(1) per event, where a
    recount of the whole pool would make the check itself the bottleneck at thousands of nodes.
    """

    def __init__(self) -> None:
        self.unavailable: set[str] = set()
        self.armed = False
        self.worst = 0
        #: When each node became unavailable (armed only), and how long each stretch lasted.
        self.since: dict[str, float] = {}
        self.stretches: list[float] = []

    def __call__(self, kind: str, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        if kind != "DELETED" and NodeView.of(node).unavailable:
            self.unavailable.add(name)
            if self.armed:
                self.since.setdefault(name, time.monotonic())
        else:
            self.unavailable.discard(name)
            if (began := self.since.pop(name, None)) is not None:
                self.stretches.append(time.monotonic() - began)
        if self.armed:
            self.worst = max(self.worst, len(self.unavailable))


def breakdown(times: list[tuple[float, float]], start: float, end: float, k: int, seconds: float) -> str:
    """Where the time beyond the ideal went: the first wave's start, the daemons' own overhead, the
    hand-over from a node's Done to the next node's start (the controller's part), the tail."""
    seen = sorted(t for t, _ in times)
    done = sorted(t for _, t in times)
    handover = [seen[i] - done[i - k] for i in range(k, len(seen))]
    daemon = sum(d - s for s, d in times) / len(times) - seconds
    return (
        f"first start after {1000 * (seen[0] - start):.0f}ms; daemon overhead beyond T "
        f"{1000 * daemon:.0f}ms per update; Done -> next start {1000 * sum(handover) / len(handover):.0f}ms "
        f"mean, {1000 * max(handover):.0f}ms max; last Done -> pool Updated {1000 * (end - done[-1]):.0f}ms"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def emulator(where: str, tmp: Path) -> AsyncIterator[tuple[Path, list[int]]]:
    """An API server: the emulator in this process or (like a real API server) in its own, or the real
    control plane; yields an admin kubeconfig and the pids of the processes serving the API."""
    if where == "inline":
        async with Emulator(history_window=100_000) as emu:
            yield emu.write_kubeconfig(tmp / "kubeconfig"), [os.getpid()]
        return
    if where == "real":
        # kube-apiserver and etcd serve the API; kube-controller-manager runs beside them, not counted.
        async with ControlPlane(tmp / "controlplane") as cp:
            yield cp.write_kubeconfig(tmp / "kubeconfig"), cp.pids("kube-apiserver", "etcd")
        return
    kubeconfig = tmp / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcosup",
        "sim",
        "serve",
        "--kubeconfig",
        str(kubeconfig),
        "--history-window",
        "100000",
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            if kubeconfig.exists() and kubeconfig.stat().st_size:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the emulator did not write its kubeconfig within 30s")
        yield kubeconfig, [proc.pid]
    finally:
        proc.terminate()
        await proc.wait()


@dataclasses.dataclass
class Outcome:
    measured: float
    ideal: float
    worst: int
    #: CPU seconds during the rollout: the controller's process, the emulator's, the daemons'.
    cpu_here: float
    cpu_emulator: float
    cpu_daemons: float
    #: CPU seconds of all three from the start until the controller's last Event of the rollout was
    #: sent (Events queue behind node writes and may go out after the pool is Updated): the work
    #: the rollout cost, where the figures above are what it cost while it ran.
    cpu_total: float = 0.0
    #: Cores that work needs at the ideal's pace: all of it within the ideal time.
    load: float = 0.0
    #: Mean seconds a node was unavailable (cordon to back in service).
    mean_unavailable: float = 0.0
    #: Turns that downloaded the image while the node was unavailable.
    pulls: int = 0


async def daemons_alone(kubeconfig: str, seconds: float, pull_seconds: float) -> None:
    """The fake daemons and the cap check in a process of their own (``--daemons-of``), as daemons
    run on their own nodes: this process answers on stdout, ``ready`` once listed, then one JSON line
    of results when stdin says ``stop``; ``arm`` on stdin starts the cap check."""
    async with kclient.connect(KubeSettings(kubeconfig=kubeconfig)) as kube:
        daemons = Daemons(kube, seconds, pull_seconds)
        cap = CapWatch()
        daemons.nodes.subscribe(cap)
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(daemons.run())
            await daemons.nodes.listed.wait()
            print("ready", flush=True)
            while (line := await loop.run_in_executor(None, sys.stdin.readline)).strip() != "stop":
                cap.armed = cap.armed or line.strip() == "arm"
            task.cancel()
        result = {
            "times": daemons.times,
            "worst": cap.worst,
            "stretches": cap.stretches,
            "pulls": daemons.pulls,
        }
        print(orjson.dumps(result).decode(), flush=True)


class DaemonsProcess:
    """The parent's handle on :func:`daemons_alone`."""

    def __init__(self, kubeconfig: Path, seconds: float, pull_seconds: float):
        self.args = (
            *(sys.executable, __file__, "--daemons-of", str(kubeconfig)),
            *("--seconds", str(seconds), "--pull-seconds", str(pull_seconds)),
        )
        self.times: list[tuple[float, float]] = []
        self.worst = 0
        self.stretches: list[float] = []
        self.pulls = 0

    async def __aenter__(self) -> DaemonsProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**26
        )
        assert self.proc.stdout is not None
        if (await self.proc.stdout.readline()).strip() != b"ready":
            raise RuntimeError("the daemons' process did not start")
        return self

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    async def stop(self) -> None:
        assert self.proc.stdout is not None
        self.send("stop")
        result = orjson.loads(await self.proc.stdout.readline())
        self.times, self.worst = [tuple(t) for t in result["times"]], result["worst"]
        self.stretches, self.pulls = result["stretches"], result["pulls"]

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


def built_image(pool: Mapping[str, Any]) -> str | None:
    """The hand-off in this bench: every config of :data:`IMAGES` counts as built (the builder's
    MachineOSBuilds are not what is measured)."""
    return IMAGES.get(str(pool["spec"]["configuration"]["name"]))


async def set_layered_config(kube: kclient.Kube, config: str) -> None:
    """A layered pool's new config, its image already built (:func:`built_image`)."""
    await kube.patch(MACHINECONFIGPOOLS, "worker", {"spec": {"configuration": {"name": config}}})


async def rollout(
    nodes: int, k: int, seconds: float, where: str, pull_seconds: float = 0.0, staging: bool = False
) -> Outcome:
    layered = pull_seconds > 0
    with tempfile.TemporaryDirectory() as tmp:
        async with emulator(where, Path(tmp)) as (kubeconfig, server_pids):
            async with kclient.connect(KubeSettings(kubeconfig=str(kubeconfig))) as kube:
                await install_crds(kube)
                await kube.create(NAMESPACES, {"metadata": {"name": NS}})
                pool = {
                    "apiVersion": names.API_VERSION,
                    "kind": "MachineConfigPool",
                    "metadata": {"name": "worker", "labels": {names.LAYERING_ENABLED: ""} if layered else {}},
                    "spec": {
                        "machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: "worker"}},
                        "nodeSelector": {"matchLabels": {ROLE: ""}},
                        "configuration": {"name": R0, "source": []},
                        "maxUnavailable": k,
                    },
                }
                await kube.create(MACHINECONFIGPOOLS, pool)
                if layered:
                    await set_layered_config(kube, R0)
                mode = names.MODE_LAYERED if layered else names.MODE_LEGACY
                for i in range(nodes):
                    name = f"n{i:04d}"
                    a = {names.DESIRED_CONFIG: R0, names.CURRENT_CONFIG: R0, names.STATE: names.STATE_DONE}
                    if layered:
                        a |= {names.DESIRED_IMAGE: IMAGES[R0], names.CURRENT_IMAGE: IMAGES[R0]}
                    body = {
                        "metadata": {
                            "name": name,
                            "labels": {ROLE: "", names.DAEMON_MODE: mode},
                            "annotations": a,
                        }
                    }
                    await kube.create(NODES, body)
                    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
                    await kube.patch_status(NODES, name, {"status": {"conditions": [ready]}})

                pools, node_cache, pods = (
                    Informer(kube, MACHINECONFIGPOOLS),
                    Informer(kube, NODES),
                    Informer(kube, PODS),
                )
                controller = NodeRollout(
                    kube,
                    pools=pools,
                    nodes=node_cache,
                    pods=pods,
                    settings=RolloutSettings(),
                    image_for=built_image if layered else None,
                    stage_ahead=staging,
                )
                async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as tg:
                    loops = [tg.create_task(x.run()) for x in (pools, node_cache, pods, controller)]
                    if where != "inline":
                        daemons_proc = await stack.enter_async_context(
                            DaemonsProcess(kubeconfig, seconds, pull_seconds)
                        )
                    else:
                        daemons, cap = Daemons(kube, seconds, pull_seconds), CapWatch()
                        daemons.nodes.subscribe(cap)
                        loops.append(tg.create_task(daemons.run()))
                    await pools.listed.wait()
                    await node_cache.listed.wait()

                    async def pool_updated(config: str) -> None:
                        while True:
                            p = pools.get("worker") or {}
                            st = p.get("status") or {}
                            if (
                                (st.get("configuration") or {}).get("name") == config
                                and st.get("updatedMachineCount") == nodes
                                and st.get("unavailableMachineCount") == 0
                            ):
                                return
                            await asyncio.sleep(0.01)

                    await pool_updated(R0)
                    if where != "inline":
                        daemons_proc.send("arm")
                        daemons_pid = daemons_proc.proc.pid
                    else:
                        cap.armed = True
                        daemons_pid = os.getpid()

                    def cpu_now() -> tuple[float, float, float]:
                        here, daemons_cpu = time.process_time(), cpu_seconds(daemons_pid)
                        return here, sum(map(cpu_seconds, server_pids)), daemons_cpu

                    cpu_start = cpu_now()
                    start = time.monotonic()
                    if layered:
                        await set_layered_config(kube, R1)
                    else:
                        await kube.patch(
                            MACHINECONFIGPOOLS, "worker", {"spec": {"configuration": {"name": R1}}}
                        )
                    await pool_updated(R1)
                    measured = time.monotonic() - start
                    cpu_here, cpu_emulator, cpu_daemons = (
                        b - a for a, b in zip(cpu_start, cpu_now(), strict=True)
                    )
                    await controller.events_sent()
                    cpu_total = sum(cpu_now()) - sum(cpu_start)
                    events_late = time.monotonic() - start - measured
                    if where != "inline":
                        await daemons_proc.stop()
                        times, worst, stretches, pulls = (
                            daemons_proc.times,
                            daemons_proc.worst,
                            daemons_proc.stretches,
                            daemons_proc.pulls,
                        )
                    else:
                        times, worst, stretches = daemons.times, cap.worst, cap.stretches
                        pulls = daemons.pulls
                    for t in loops:
                        t.cancel()
                waves = math.ceil(nodes / k)
                ideal = pull_seconds + waves * seconds if staging else waves * (seconds + pull_seconds)
                mean = sum(stretches) / len(stretches) if stretches else 0.0
                outcome = Outcome(
                    measured,
                    ideal,
                    worst,
                    cpu_here,
                    cpu_emulator,
                    cpu_daemons,
                    mean_unavailable=mean,
                    pulls=pulls,
                    cpu_total=cpu_total,
                    load=cpu_total / ideal,
                )
                server = "API server" if where == "real" else "emulator"
                how_pulled = f" P={pull_seconds}s staging={'on' if staging else 'off'}" if layered else ""
                print(f"nodes={nodes} maxUnavailable={k} T={seconds}s{how_pulled} emulator={where}")
                print(f"mean time a node is unavailable={mean:.2f}s over {len(stretches)} stretches")
                if layered:
                    print(f"turns that downloaded the image while unavailable={pulls} of {len(times)}")
                how = f"{pull_seconds}+" if staging else ""
                per = f"({seconds}+{pull_seconds})" if layered and not staging else f"{seconds}"
                print(f"measured={measured:.2f}s ideal={how}ceil({nodes}/{k})*{per}={outcome.ideal:.2f}s")
                print(f"ratio={measured / outcome.ideal:.3f} (target <= {GOAL})")
                print(f"max unavailable at any watched instant={worst} (cap {k})")
                print(breakdown(times, start, start + measured, k, seconds))
                if where != "inline":
                    per_node = {
                        who: 1000 * cpu / nodes
                        for who, cpu in (("controller", cpu_here), (server, cpu_emulator))
                    }
                    # The k nodes of a wave finish together, and each hand-over (Done seen, uncordon,
                    # cordon, target) passes through the controller and the API server one after
                    # another: the wave's last node waits about k hand-overs, the mean node half that.
                    slowest = max(per_node.values()) / 1000
                    wave = k * slowest / 2
                    print(
                        "CPU per node updated: "
                        + ", ".join(f"{who} {ms:.1f}ms" for who, ms in per_node.items())
                        + f"; a wave of {k} hand-overs at the slower of the two alone costs the mean "
                        f"node {1000 * wave:.0f}ms, a ratio of about {1 + wave / seconds:.2f}"
                    )
                    # What the whole rollout cost all three processes, spent within the ideal time: the
                    # cores the machine must give it at the ideal's pace. Near the machine's count, work
                    # queues in every process and the hand-overs stretch.
                    print(
                        f"CPU per node updated, all three processes, through the last Event sent: "
                        f"{1000 * cpu_total / nodes:.1f}ms; at the ideal's {nodes / ideal:.0f} updates/s "
                        f"that is {outcome.load:.2f} of this machine's {os.cpu_count()} cores (the last "
                        f"Event went out {events_late:.1f}s after the pool was Updated)"
                    )
                    print(
                        "CPU during the rollout, seconds (share of one core): "
                        + ", ".join(
                            f"{who} {cpu:.1f} ({100 * cpu / measured:.0f}%)"
                            for who, cpu in (
                                ("controller", cpu_here),
                                (server, cpu_emulator),
                                ("fake daemons", cpu_daemons),
                            )
                        )
                    )
                return outcome


def max_unavailable(spec: str, nodes: int) -> int:
    """``--k``: a number of nodes, or a percent of the pool rounded down (at least 1), as the MCO does."""
    if spec.endswith("%"):
        return max(1, nodes * int(spec[:-1]) // 100)
    return int(spec)


async def staging_saving(sizes: list[int], k_spec: str, seconds: float, where: str, pull: float) -> int:
    """``--pull-seconds``: the same layered rollout with staging off, then on; 1 when with staging a
    turn downloaded or the mean time a node is unavailable includes P."""
    status = 0
    for nodes in sizes:
        k = max_unavailable(k_spec, nodes)
        without = await rollout(nodes, k, seconds, where, pull, staging=False)
        print()
        with_ = await rollout(nodes, k, seconds, where, pull, staging=True)
        what = f"{nodes:,} nodes, maxUnavailable {k}, T = {seconds:g} s, P = {pull:g} s"
        print(
            f"mean time a node is unavailable: {without.mean_unavailable:.2f}s without staging, "
            f"{with_.mean_unavailable:.2f}s with staging (T={seconds:g}s, P={pull:g}s); rollout "
            f"{without.measured:.2f}s without staging, {with_.measured:.2f}s with\n"
        )
        _summary.record(BENCH, f"mean s a node is unavailable, no staging, {what}", without.mean_unavailable)
        bound = seconds + pull / 2
        _summary.record(
            BENCH,
            f"mean s a node is unavailable, staging, {what}",
            with_.mean_unavailable,
            f"< T + P/2 = {bound:g} (P not included)",
            with_.mean_unavailable < bound,
        )
        _summary.record(
            BENCH, f"turns downloading while unavailable, staging, {what}", with_.pulls, "0", with_.pulls == 0
        )
        _summary.record(BENCH, f"rollout s, no staging, {what}", without.measured)
        _summary.record(BENCH, f"rollout s, staging, {what}", with_.measured)
        status |= with_.mean_unavailable >= bound or with_.pulls > 0
    return status


async def main(sizes: list[int], k_spec: str, seconds: float, where: str) -> int:
    status = 0
    for nodes in sizes:
        k = max_unavailable(k_spec, nodes)
        outcome = await rollout(nodes, k, seconds, where)
        ratio = outcome.measured / outcome.ideal
        what = f"{nodes:,} nodes, maxUnavailable {k}, T = {seconds:g} s"
        _summary.record(BENCH, f"rollout time ÷ ideal, {what}", ratio, f"<= {GOAL}", ratio <= GOAL)
        _summary.record(
            BENCH,
            f"most nodes unavailable at once (watch history), {what}",
            outcome.worst,
            f"<= {k}",
            outcome.worst <= k,
        )
        if where == "process":
            share = outcome.cpu_emulator / (outcome.cpu_emulator + outcome.cpu_here + outcome.cpu_daemons)
            _summary.record(
                BENCH, f"emulator's share of the CPU used, {nodes:,} nodes", 100 * share, unit="%"
            )
            _summary.record(
                BENCH,
                f"controller CPU per node updated, {nodes:,} nodes",
                1000 * outcome.cpu_here / nodes,
                unit="ms",
            )
            _summary.record(
                BENCH,
                f"cores the ideal pace needs (all processes' CPU / ideal time), {nodes:,} nodes",
                outcome.load,
                f"report ({os.cpu_count()} here)",
            )
        status |= outcome.worst > k
        print()
    return status


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--nodes", default="200,1000,2000", help="pool sizes, comma-separated; one rollout each"
    )
    parser.add_argument("--k", default="10%", help="maxUnavailable: nodes, or a percent of the pool")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument(
        "--pull-seconds",
        type=float,
        default=0.0,
        help="layered pool: seconds an update spends downloading the image unless staged ahead; "
        "compares the mean time a node is unavailable without and with staging",
    )
    parser.add_argument(
        "--emulator",
        choices=("process", "inline", "real"),
        default="process",
        help="run the API emulator and the fake daemons each in a process of their own, as an API "
        "server and nodes are (default), or everything in this one; real: the real control plane "
        "(kube-apiserver, etcd, kube-controller-manager; built on first use) instead of the emulator",
    )
    parser.add_argument("--daemons-of", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.daemons_of:
        sys.exit(asyncio.run(daemons_alone(args.daemons_of, args.seconds, args.pull_seconds)))
    sizes = [int(n) for n in args.nodes.split(",")]
    if args.pull_seconds > 0:
        sys.exit(asyncio.run(staging_saving(sizes, args.k, args.seconds, args.emulator, args.pull_seconds)))
    sys.exit(asyncio.run(main(sizes, args.k, args.seconds, args.emulator)))
