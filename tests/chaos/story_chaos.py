"""Chaos for the whole story (issue 17): the layering story told on a local cluster while a seeded fault
schedule kills processes and makes the API server misbehave, judged over the whole watch history.

    python tests/chaos/story_chaos.py --seeds 200        # seeds 1..200, each after the fault-free run
                                                         # of its story (once per distinct story)
    python tests/chaos/story_chaos.py --seed 17          # replay one seed exactly

Each seed starts a fresh :class:`~mcosup.sim.cluster.LocalCluster` (emulator, two supervisor replicas,
the kubelet stand-in running the builder and real buildah, a real registry, a real daemon per fake host)
and tells the story twice, once opting in by label and once by a MachineOSConfig: opt in, build, roll,
a MachineConfig change built and rolled, a rebuild for a changed custom Containerfile, opt out. Drawn
from the seed: the pool's ``maxUnavailable``, the admin's interleaved actions (pause and unpause mid-
rollout, a MachineConfig edited mid-rollout, an opt-out mid-build), and the fault schedule: SIGKILL of
the leading supervisor (restarted as its Deployment would; the standby takes over through the Lease),
of the builder pod's and a build pod's containers, of a daemon now or at a step of its plan; cut
watches, ``410 Gone`` on resume, ``429`` with ``Retry-After``, ``500``/``503``, answers slower than the
processes' request timeout, connection resets, and an API-server restart with its store kept.

A separate recorder (an informer per kind, riding over the same faults) keeps every version of Nodes,
pools, Pods and MachineConfigs; :mod:`story_invariants` judges that history and the end state; every
process's exit codes and logs are checked for a crash the runner did not cause. A failing seed prints
the command that replays it. The summary: seeds, faults by kind, violations, and the story's time
against the fault-free run of the same story (median, worst). ``make chaos SEEDS=200`` runs many;
``tests/chaos/test_story_chaos.py`` a few in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import story_invariants

from mcosup.kube import errors
from mcosup.kube.resources import (
    CONFIGMAPS,
    LEASES,
    MACHINECONFIGPOOLS,
    MACHINECONFIGS,
    MACHINEOSCONFIGS,
    NODES,
    PODS,
)
from mcosup.model import names
from mcosup.sim.cluster import ClusterConfig, LocalCluster, missing_tools
from mcosup.sim.invariants import ClusterError, wait_until
from mcosup.sim.objects import machineconfig, machineosconfig
from mcosup.sim.recorder import Recorder
from mcosup.sim.registry import read_image

#: The processes' request timeout in a chaos run: a "slow" fault answers later than this.
REQUEST_TIMEOUT = 4
FAULT_KINDS = (
    "kill leader",
    "kill builder",
    "kill build",
    "kill daemon",
    "kill daemon at step",
    "cut watches",
    "410 on resume",
    "429",
    "500",
    "503",
    "slow answer",
    "connection reset",
    "apiserver restart",
    # Armed now, fired by what the recorder sees next: the joins between two writes of one step.
    "kill leader at cordon",
    "kill leader at new image",
    "kill builder at build start",
)
#: Where the API faults land (a regex searched in the request path; "" is every request).
PATHS = ("/nodes", "/machineconfigpools", "/pods", "/machineconfigs", "/machineosconfigs", "/leases", "")
#: Commands of the daemon's plan it can be killed before or after.
DAEMON_STEPS = ("rpm-ostree rebase", "systemctl reboot", "systemctl daemon-reload", "rpm-ostree kargs")
ADMIN_ACTIONS = ("pause mid-rollout", "edit mid-rollout", "opt out mid-build")
WORKERS = 3
_BUILDER_SELECTOR = f"{names.BUILDER_APP_LABEL}={names.BUILDER_APP_VALUE}"
#: Seconds each step of the story may take under chaos before the run counts as not converging.
STEP_SECONDS = 300.0


@dataclasses.dataclass(frozen=True)
class Fault:
    after: float  # seconds after the previous fault
    kind: str
    pick: int  # a seeded number the kind uses to choose (which node, which path, how many times)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a seed decides, drawn before the run: replaying the seed replays the plan."""

    seed: int
    max_unavailable: int
    admin: tuple[str, ...]
    faults: tuple[Fault, ...]

    @classmethod
    def draw(cls, seed: int, *, faults: bool = True) -> Plan:
        rng = random.Random(seed)
        admin = tuple(a for a in ADMIN_ACTIONS if rng.random() < 0.5)
        schedule = tuple(
            Fault(rng.uniform(2.0, 12.0), rng.choice(FAULT_KINDS), rng.randrange(1 << 30)) for _ in range(200)
        )
        return cls(seed, rng.choice((1, 2)), admin, schedule if faults else ())

    def story(self) -> tuple[int, tuple[str, ...]]:
        """What the story told depends on (faults aside): seeds that share it share a fault-free run."""
        return self.max_unavailable, self.admin


@dataclasses.dataclass
class Result:
    seed: int
    faults: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    violations: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    workdir: str = ""
    #: Seconds of the fault-free run of the same story (same maxUnavailable and admin actions).
    fault_free: float | None = None
    #: This is the fault-free run of the seed's story.
    baseline: bool = False

    def replay(self) -> str:
        path = os.environ.get("PYTHONPATH", ".")
        script = "tests/chaos/story_chaos.py"
        how = "--fault-free" if self.baseline else "--no-baseline"
        return f"PYTHONPATH={path} .venv/bin/python {script} --seed {self.seed} {how}"


class Journal:
    """What the runner did and when (``story.log`` in the seed's work directory): steps and faults."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        with self.path.open("a") as out:
            out.write(f"{time.monotonic() - self.start:7.1f}s {text}\n")


async def tolerant(check: Callable[[], Awaitable[str | None]]) -> str | None:
    """A check that reads the API: an answer lost to a fault is a "not yet", not a failure."""
    try:
        return await check()
    except errors.ApiError as exc:
        return f"API error: {exc}"


async def as_admin(action: Callable[[], Awaitable[Any]], what: str, within: float = 120.0) -> Any:
    """Do an admin's action, sent again after a failure as a person re-runs kubectl (the webhook may be
    down while the supervisor restarts; the API server may be failing on purpose)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await action()
        except (errors.ApiError, ClusterError) as exc:
            if isinstance(exc, errors.Invalid | errors.Forbidden) or time.monotonic() > deadline:
                raise ClusterError(f"{what}: {exc}") from exc
            await asyncio.sleep(0.5)


class Chaos:
    """One seed's run on one cluster: the fault loop, the kills and the checks of crashes."""

    def __init__(self, cluster: LocalCluster, plan: Plan, result: Result, journal: Journal) -> None:
        self.cluster = cluster
        self.journal = journal
        self.plan = plan
        self.result = result
        #: Container processes the runner killed: their exit codes are not crashes.
        self.killed_pids: set[int] = set()
        #: Restarts of killed supervisors and armed kills that fired, awaited by :meth:`settle`.
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Armed kills (kind → its pick), fired from :meth:`seen`.
        self.armed: dict[str, int] = {}
        #: Daemon kills armed at a step of its plan and not seen fired yet, by node: the host's fake
        #: commands fire them (or never, when the daemon runs no such step).
        self.step_kills: collections.Counter[str] = collections.Counter()
        self._last: dict[tuple[str, str], str | None] = {}

    def seen(self, event: str, obj: dict[str, Any]) -> None:
        """Every version the recorder sees: fire an armed kill at the moment it waits for."""
        meta = obj.get("metadata") or {}
        ann, labels = meta.get("annotations") or {}, meta.get("labels") or {}
        key = (str(obj.get("kind")), str(meta.get("name")))
        value = ann.get(names.CORDONED_BY) or ann.get(names.NEWEST_IMAGE_ANNOTATION)
        changed, self._last[key] = bool(value) and value != self._last.get(key), value
        fire = None
        if key[0] == "Node" and changed:
            fire = "kill leader at cordon"
        elif key[0] == "MachineConfigPool" and changed:
            fire = "kill leader at new image"
        elif key[0] == "Pod" and event == "ADDED" and names.BUILD_OBJECT_LABEL in labels:
            fire = "kill builder at build start"
        if fire is None or fire not in self.armed:
            return
        pick = self.armed.pop(fire)
        kill = self.kill_leader(pick) if "leader" in fire else self.kill_pods(_BUILDER_SELECTOR)
        self._spawn(self._fired(fire, kill))

    async def _fired(self, kind: str, kill: Awaitable[bool]) -> None:
        with contextlib.suppress(errors.ApiError, ClusterError):
            if await kill:
                self.result.faults[kind] += 1
                self.journal(f"fault: {kind} (fired)")

    def _spawn(self, work: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def count_step_kills(self, *, forget: bool = False) -> None:
        """Count the daemon kills at a step that fired since the last look (the host took them);
        ``forget`` drops those still armed (in the same look, so none fires uncounted)."""
        for name, armed in self.step_kills.items():
            host = self.cluster.nodes[name].host
            fired = armed - (host.forget_kills() if forget else host.kills_pending())
            if fired > 0:
                self.result.faults["kill daemon at step"] += fired
                self.journal(f"fault: kill daemon at step on {name} (fired {fired})")
            self.step_kills[name] = armed - fired
        if forget:
            self.step_kills.clear()

    async def run_faults(self) -> None:
        for fault in self.plan.faults:
            await asyncio.sleep(fault.after)
            self.count_step_kills()
            try:
                if await self.inject(fault):
                    self.result.faults[fault.kind] += 1
                    self.journal(f"fault: {fault.kind} ({fault.pick})")
            except (errors.ApiError, ClusterError, OSError) as exc:
                logging.getLogger(__name__).info("fault %s not injected: %s", fault.kind, exc)

    async def inject(self, fault: Fault) -> bool:
        emu, pick = self.cluster.emulator, fault.pick
        path = PATHS[pick % len(PATHS)]
        times = 1 + pick % 4
        match fault.kind:
            case "kill leader":
                return await self.kill_leader(pick)
            case "kill leader at cordon" | "kill leader at new image" | "kill builder at build start":
                self.armed[fault.kind] = pick
                return False  # counted when it fires
            case "kill builder":
                return await self.kill_pods(_BUILDER_SELECTOR)
            case "kill build":
                return await self.kill_pods(names.BUILD_OBJECT_LABEL)
            case "kill daemon":
                node = self.cluster.nodes[f"worker-{pick % WORKERS}"]
                if node.daemon.process is None or node.daemon.process.returncode is not None:
                    return False
                node.daemon.kill()
                return True
            case "kill daemon at step":
                name = f"worker-{pick % WORKERS}"
                step = DAEMON_STEPS[(pick >> 4) % len(DAEMON_STEPS)]
                self.cluster.nodes[name].host.kill_daemon_at(step, "before" if pick & 8 else "after")
                self.step_kills[name] += 1
                self.journal(f"armed: kill daemon on {name} {'before' if pick & 8 else 'after'} {step}")
                return False  # counted when it fires (count_step_kills)
            case "cut watches":
                return emu.faults.cut_watches(abrupt=bool(pick & 1)) > 0
            case "410 on resume":
                emu.faults.compact()
                emu.faults.cut_watches(abrupt=bool(pick & 1))
                return True
            case "429":
                emu.faults.fail(429, path=path, times=times * 3, retry_after=1)
            case "500" | "503":
                emu.faults.fail(int(fault.kind), path=path, times=times)
            case "slow answer":
                emu.faults.delay(REQUEST_TIMEOUT + 1, path=path, times=times)
            case "connection reset":
                emu.faults.reset(path=path, times=times)
            case "apiserver restart":
                await emu.restart(downtime=0.2 + (pick % 30) / 10)
            case _:
                raise AssertionError(fault.kind)
        return True

    async def kill_leader(self, pick: int) -> bool:
        lease = await self.cluster.kube.get(LEASES, "mcosup-supervisor", namespace=self.cluster.ns)
        holder = (lease.get("spec") or {}).get("holderIdentity")
        for sup in self.cluster.supervisors:
            if sup.identity == holder and sup.process is not None:
                await sup.kill()
                # Its Deployment's kubelet starts it again a little later; meanwhile the standby leads.
                self._spawn(self._restart(sup, 1.0 + pick % 10))
                return True
        return False

    async def _restart(self, sup: Any, after: float) -> None:
        await asyncio.sleep(after)
        await as_admin(lambda: sup.start(self.cluster.kube, install_webhook=False), f"restart {sup.identity}")

    async def kill_pods(self, selector: str) -> bool:
        """SIGKILL the container processes of the running pods ``selector`` picks (kubelet stand-in)."""
        pods, _ = await self.cluster.kube.list(PODS, namespace=self.cluster.ns, label_selector=selector)
        killed = False
        for pod in pods:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                cid = str(status.get("containerID") or "")
                if "running" in (status.get("state") or {}) and cid.startswith("local://"):
                    pid = int(cid.removeprefix("local://"))
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                        self.killed_pids.add(pid)
                        killed = True
        return killed

    async def settle(self) -> None:
        """The schedule is over: no fault left pending, every supervisor replica running again."""
        emu = self.cluster.emulator
        emu.faults.clear()
        self.armed.clear()
        self.count_step_kills(forget=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sup in self.cluster.supervisors:
            if sup.process is None:
                await as_admin(lambda s=sup: s.start(self.cluster.kube, install_webhook=False), "restart")

    def crashes(self, pods: list[tuple[int, str, dict[str, Any]]]) -> list[str]:
        """Every process that ended in a way the runner did not cause."""
        out = []
        for sup in self.cluster.supervisors:
            bad = [c for c in sup.exit_codes if c != -signal.SIGKILL]
            if bad or sup.process is None or sup.process.returncode is not None:
                out.append(f"supervisor {sup.identity} exited {bad or 'and is not running'}")
        for name, node in self.cluster.nodes.items():
            bad = [c for c in node.daemon.exit_codes if c not in (75, -signal.SIGKILL)]
            if bad:
                out.append(f"daemon on {name} exited {bad}")
        seen: set[tuple[str, int]] = set()
        for _, _, pod in pods:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                ended = (status.get("state") or {}).get("terminated")
                pid = int(str(status.get("containerID") or "local://0").removeprefix("local://"))
                if not ended or (pod["metadata"]["name"], pid) in seen:
                    continue
                seen.add((pod["metadata"]["name"], pid))
                code = ended.get("exitCode")
                if code not in (0, 137, 143) or (code == 137 and pid not in self.killed_pids):
                    out.append(f"pod {pod['metadata']['name']} container {status['name']} exited {code}")
        for name, text in self.cluster.process_logs().items():
            if why := story_invariants.crash_in_log(text):
                out.append(f"{name}: {why}")
        return out


class Story:
    """The story, told once by label and once by MachineOSConfig, with the admin's actions."""

    def __init__(self, cluster: LocalCluster, plan: Plan, journal: Journal) -> None:
        self.cluster = cluster
        self.plan = plan
        self.journal = journal
        self.round = 0

    async def wait(self, check: Callable[[], Awaitable[str | None]], what: str) -> None:
        self.journal(f"story: waiting for {what}")
        await wait_until(lambda: tolerant(check), within=STEP_SECONDS, what=what, every=0.5)

    async def converged(self, *, layered: bool) -> None:
        mode = "layered" if layered else "legacy"
        await self.wait(
            lambda: self.cluster.converged("worker", layered=layered), f"every worker {mode}, converged"
        )

    async def tell(self, by: str) -> None:
        c = self.cluster
        self.journal(f"story: opting in by {by}; admin actions {self.plan.admin}")
        await self.converged(layered=False)
        await self.opt(by, on=True)
        if "opt out mid-build" in self.plan.admin:
            await self.wait(self.building, "a build started")
            await self.opt(by, on=False)
            await self.converged(layered=False)
            await self.opt(by, on=True)
        await self.converged(layered=True)
        before = await as_admin(lambda: c.image("worker"), "read the image")

        # A MachineConfig change, built and rolled; the admin may pause the pool or edit it again
        # while it rolls.
        await self.change_machineconfig()
        if {"pause mid-rollout", "edit mid-rollout"} & set(self.plan.admin):
            await self.wait(self.rolling, "the rollout of the change started")
            if "pause mid-rollout" in self.plan.admin:
                await self.pause(True)
                await asyncio.sleep(2)  # an admin's pause, not a synchronisation
                await self.pause(False)
            if "edit mid-rollout" in self.plan.admin:
                await self.change_machineconfig()
        await self.wait(lambda: self.new_image(before), "an image for the changed config")
        await self.converged(layered=True)

        # A rebuild: the custom Containerfile changes, the rendered config does not.
        before = await as_admin(lambda: c.image("worker"), "read the image")
        await self.change_containerfile(by)
        await self.wait(lambda: self.new_image(before), "an image for the changed Containerfile")
        await self.converged(layered=True)

        await self.opt(by, on=False)
        await self.converged(layered=False)

    async def opt(self, by: str, *, on: bool) -> None:
        c = self.cluster
        if by == "label":
            await as_admin(lambda: c.opt_in("worker", on=on), f"label the pool (on={on})")
        elif on:
            body = machineosconfig("worker", c.pullspec, self.containerfile())

            async def create() -> None:
                with contextlib.suppress(errors.AlreadyExists):
                    await c.kube.create(MACHINEOSCONFIGS, body)

            await as_admin(create, "create the MachineOSConfig")
        else:

            async def delete() -> None:
                with contextlib.suppress(errors.NotFound):
                    await c.kube.delete(MACHINEOSCONFIGS, "worker")

            await as_admin(delete, "delete the MachineOSConfig")

    def containerfile(self) -> str:
        return f'LABEL org.mcosup.chaos.round="{self.round}"\n'

    async def change_containerfile(self, by: str) -> None:
        self.round += 1
        c = self.cluster
        if by == "label":
            data = {"worker": self.containerfile()}

            async def write() -> None:
                try:
                    await c.kube.patch(CONFIGMAPS, names.CUSTOM_DOCKERFILE_CM, {"data": data}, namespace=c.ns)
                except errors.NotFound:
                    body = {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": names.CUSTOM_DOCKERFILE_CM, "namespace": c.ns},
                        "data": data,
                    }
                    await c.kube.create(CONFIGMAPS, body, namespace=c.ns)

            await as_admin(write, "change the custom Containerfile")
        else:
            spec = {"containerFile": [{"containerfileArch": "NoArch", "content": self.containerfile()}]}
            await as_admin(
                lambda: c.kube.patch(MACHINEOSCONFIGS, "worker", {"spec": spec}), "change the containerFile"
            )

    async def change_machineconfig(self) -> None:
        self.round += 1
        mc = machineconfig("50-chaos", "worker", {"/etc/mcosup-chaos/round": (f"{self.round}\n", 0o644)})
        await as_admin(lambda: self.cluster.apply_machineconfig(mc), "apply a MachineConfig")

    async def pause(self, paused: bool) -> None:
        await as_admin(
            lambda: self.cluster.kube.patch(MACHINECONFIGPOOLS, "worker", {"spec": {"paused": paused}}),
            f"pause the pool ({paused})",
        )

    async def building(self) -> str | None:
        # A build quicker than the poll is already over: the opt-out then comes right after it.
        return None if await self.cluster.build_state("worker") else "no build yet"

    async def rolling(self) -> str | None:
        for n in await self.cluster.pool_nodes("worker"):
            ann = n["metadata"].get("annotations") or {}
            if ann.get(names.DESIRED_IMAGE) != ann.get(names.CURRENT_IMAGE):
                return None
        return "no node rolling yet"

    async def new_image(self, before: str | None) -> str | None:
        image = await self.cluster.image("worker")
        return None if image and image != before else f"image still {image}"


class ImageConfigs:
    """The config each image a pool records was built for, read from the image's label in the registry
    as soon as the recorder sees it: pruning deletes an image once no node names it, so by the time the
    story is judged the images of its first builds are gone."""

    def __init__(self, cluster: LocalCluster):
        self.cluster = cluster
        self._reads: dict[str, asyncio.Task[str | None]] = {}

    def seen(self, event: str, obj: dict[str, Any]) -> None:
        if obj.get("kind") != "MachineConfigPool":
            return
        image = ((obj.get("metadata") or {}).get("annotations") or {}).get(names.NEWEST_IMAGE_ANNOTATION)
        if image and image not in self._reads:
            self._reads[image] = asyncio.create_task(asyncio.to_thread(self._read, str(image)))

    def _read(self, image: str) -> str | None:
        repo, _, digest = image.split("/", 1)[1].partition("@")
        labels, _ = read_image(self.cluster.registry, repo, digest)
        return labels.get(names.RENDERED_CONFIG_LABEL)

    async def read(self) -> dict[str, str | None]:
        """Image → the config it was built for (None: its label could not be read while it existed)."""
        done = await asyncio.gather(*self._reads.values(), return_exceptions=True)
        return {i: c if isinstance(c, str) else None for i, c in zip(self._reads, done, strict=True)}


async def run_seed(plan: Plan, workdir: Path) -> Result:
    result = Result(plan.seed, workdir=str(workdir), baseline=not plan.faults)
    config = ClusterConfig(
        masters=1,
        workers=WORKERS,
        max_unavailable=plan.max_unavailable,
        supervisors=2,
        supervisor_env={"MCOSUP_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT)},
    )
    async with request_timeout(), LocalCluster(config, workdir) as cluster:
        kinds = (NODES, MACHINECONFIGPOOLS, PODS, MACHINECONFIGS)
        recorders = {r.kind: Recorder(cluster.kube, r) for r in kinds}
        tasks = [asyncio.create_task(r.run(), name=f"record {k}") for k, r in recorders.items()]
        try:
            for r in recorders.values():
                await r.listed.wait()
            journal = Journal(workdir / "story.log")
            chaos = Chaos(cluster, plan, result, journal)
            images = ImageConfigs(cluster)
            for r in recorders.values():
                r.subscribe(chaos.seen)
            recorders["MachineConfigPool"].subscribe(images.seen)
            story = Story(cluster, plan, journal)
            faults = asyncio.create_task(chaos.run_faults(), name="faults")
            started = time.monotonic()
            since = 0
            try:
                await story.converged(layered=False)
                since = recorders["Node"].mark()
                await story.tell("label")
                await story.tell("machineosconfig")
            except ClusterError as exc:
                result.violations.append(f"the story did not go on: {exc}")
            finally:
                faults.cancel()
                await asyncio.gather(faults, return_exceptions=True)
                await chaos.settle()
            result.seconds = time.monotonic() - started
            result.violations += await judge(cluster, plan, recorders, chaos, since, images)
            if result.violations:
                dump_histories(
                    workdir,
                    {"Node (cluster)": cluster.node_history} | {k: r.history for k, r in recorders.items()},
                )
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return result


def dump_histories(workdir: Path, histories: dict[str, list[tuple[int, str, dict[str, Any]]]]) -> None:
    """A failing seed leaves every recorded version in its workdir (``history-<kind>.jsonl``: sequence,
    event, object), so a violation at "version N" can be read without running the seed again."""
    for kind, history in histories.items():
        path = workdir / f"history-{kind.split()[0].lower()}{'-cluster' if '(' in kind else ''}.jsonl"
        path.write_bytes(b"".join(orjson.dumps([seq, event, obj]) + b"\n" for seq, event, obj in history))


@contextlib.asynccontextmanager
async def request_timeout() -> AsyncIterator[None]:
    """The processes' request timeout, for the daemons and pods too (they inherit the environment)."""
    old = os.environ.get("MCOSUP_REQUEST_TIMEOUT")
    os.environ["MCOSUP_REQUEST_TIMEOUT"] = str(REQUEST_TIMEOUT)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MCOSUP_REQUEST_TIMEOUT"]
        else:
            os.environ["MCOSUP_REQUEST_TIMEOUT"] = old


async def judge(
    cluster: LocalCluster,
    plan: Plan,
    recorders: dict[str, Recorder],
    chaos: Chaos,
    since: int,
    images: ImageConfigs,
) -> list[str]:
    c = cluster
    out: list[str] = []
    # The end: after the schedule, with no fault left, everything settles where the admin left it.
    with contextlib.suppress(ClusterError):
        await wait_until(
            lambda: tolerant(lambda: c.converged("worker", layered=False)),
            within=STEP_SECONDS,
            what="the end",
        )

    async def leftovers() -> list[str]:
        left = await c.build_objects()
        if await c.builder_pod() is not None:
            left.append(f"Pod/{names.BUILDER_POD}")
        return left

    with contextlib.suppress(ClusterError):
        await wait_until(
            lambda: tolerant(lambda: _why(leftovers())), within=60, what="no build object left", every=0.5
        )
    pool = await c.pool("worker")
    mcs, _ = await c.kube.list(MACHINECONFIGS)
    out += story_invariants.end_state(pool, await c.pool_nodes("worker"), mcs, await leftovers())

    workers = [f"worker-{i}" for i in range(WORKERS)]
    out += story_invariants.max_unavailable(c.node_history, workers, plan.max_unavailable, since=since)
    pods = recorders["Pod"].history
    out += story_invariants.builder_pods(pods)
    out += story_invariants.builds_in_flight(pods)
    configs = await images.read()
    out += story_invariants.images_recorded(recorders["MachineConfigPool"].history, configs.get)
    out += chaos.crashes(pods)
    return out


async def _why(left: Awaitable[list[str]]) -> str | None:
    items = await left
    return f"left: {items}" if items else None


def render(results: list[Result], baselines: Sequence[Result] = ()) -> str:
    faults: collections.Counter[str] = collections.Counter()
    for r in results:
        faults.update(r.faults)
    lines = [f"seeds run: {len(results)} ({', '.join(str(r.seed) for r in results)})"]
    lines.append("faults injected by kind:")
    lines += [f"  {kind:<28} {faults[kind]}" for kind in FAULT_KINDS]
    violations = sum(len(r.violations) for r in results)
    lines.append(f"invariant violations: {violations}")
    lines.append("story time (both opt-ins), each seed against the fault-free run of its own story:")
    for r in results:
        base = f"{r.fault_free:.0f}s" if r.fault_free is not None else "not run"
        lines.append(f"  seed {r.seed:<4} {r.seconds:5.0f}s  fault-free {base}")
    times = sorted(r.seconds for r in results)
    if times:
        lines.append(f"  under chaos: median {statistics.median(times):.0f}s, worst {times[-1]:.0f}s")
    ratios = sorted(r.seconds / r.fault_free for r in results if r.fault_free)
    if ratios:
        lines.append(
            f"  against fault-free: median x{statistics.median(ratios):.2f}, worst x{ratios[-1]:.2f}"
        )
    for r in [*baselines, *results]:
        if r.violations:
            what = "fault-free run of the story of seed" if r.baseline else "seed"
            lines.append(f"{what} {r.seed} ({r.workdir}):")
            lines += [f"  - {v}" for v in r.violations]
            lines.append(f"  replay: {r.replay()}")
    return "\n".join(lines)


async def run(
    seeds: list[int], *, baseline: bool = True, faults: bool = True
) -> tuple[list[Result], list[Result]]:
    """Each seed on a fresh cluster, after (``baseline``) the fault-free run of its story unless a
    seed before it told the same one; ``faults=False`` runs only those. The work directories (logs of
    every process) are removed when every run passed, kept and named in the summary otherwise."""
    if missing := missing_tools():
        raise SystemExit(f"the story needs: apt-get install -y {' '.join(missing)}")
    baselines: dict[tuple[int, tuple[str, ...]], Result] = {}
    results: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="mcosup-chaos-"))
    for seed in seeds:
        plan = Plan.draw(seed)
        if baseline and plan.story() not in baselines:
            base = await run_seed(Plan.draw(seed, faults=False), tmp / f"fault-free-{seed}")
            baselines[plan.story()] = base
            print(f"fault-free story of seed {seed}: {len(base.violations)} violations, {base.seconds:.0f}s")
        if not faults:
            continue
        result = await run_seed(plan, tmp / f"seed-{seed}")
        if plan.story() in baselines:
            result.fault_free = baselines[plan.story()].seconds
        results.append(result)
        # A line per seed, complete, so that a long run stopped early still has its figures.
        faulted = ", ".join(f"{k} {n}" for k, n in sorted(result.faults.items()))
        print(
            f"seed {seed}: {len(result.violations)} violations, {result.seconds:.0f}s "
            f"(fault-free {f'{result.fault_free:.0f}s' if result.fault_free else 'not run'}); "
            f"faults: {faulted}",
            *(f"  - {v}" for v in result.violations),
            sep="\n",
            flush=True,
        )
    if not any(r.violations for r in [*results, *baselines.values()]):
        shutil.rmtree(tmp, ignore_errors=True)
    return results, list(baselines.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seeds", type=int, default=3, help="run seeds 1..N (default: %(default)s)")
    group.add_argument("--seed", type=int, action="append", help="run this seed (repeatable): a replay")
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument(
        "--no-baseline", action="store_true", help="skip the fault-free run of each seed's story"
    )
    runs.add_argument(
        "--fault-free", action="store_true", help="only the fault-free run of each seed's story"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    seeds = args.seed or list(range(1, args.seeds + 1))
    results, baselines = asyncio.run(run(seeds, baseline=not args.no_baseline, faults=not args.fault_free))
    print(render(results, baselines))
    return 1 if any(r.violations for r in [*results, *baselines]) else 0


if __name__ == "__main__":
    sys.exit(main())
