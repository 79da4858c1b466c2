"""Build overhead: opt-in → BuildSuccess against buildah alone on the same Containerfile and context.

Runs the whole system on this machine (emulator, supervisor, kubelet stand-in, the builder process,
real buildah, Debian's docker-registry) for a pool whose config has ``--files`` files and a few units,
and times:

- system: from labelling the pool to ``BuildSuccess`` (builder pod start, planning, ConfigMaps, the
  build Pod, buildah, digest, recording), with a breakdown of when each milestone was seen through
  watches (polling would add its own delay and load);
- buildah alone: ``buildah bud`` + ``buildah push`` of the same Containerfile and context, with fresh
  vfs storage as a build Pod has, into a fresh repository of the same registry.

Each round uses a fresh emulator and registry; buildah alone runs first so the system gets no blob
cache advantage. An untimed round goes first. Prints every round and the median ratio (target <= 1.5x
for 50 files).

Why each side starts at a drawn phase: with vfs storage, ``buildah bud`` (1.28 here) ends just after a
whole wall-clock second (its COMMIT step runs on to it), so a bud lasts about 0.5 to 1.5 s depending on
the fraction of the second it starts at, and every duration here moves in whole-second steps. Left to
itself the system's opt-in follows buildah alone's end (itself just after a whole second) by a nearly
constant time, so its build Pod's bud started at a nearly constant fraction of the second and the median
ratio moved in whole-second steps with the system's own overhead (1.72 to 1.98x for the same code).
So buildah alone's bud and the system's opt-in each wait until a drawn fraction of a wall-clock second
before their clock starts (the wait is not timed). The fractions are stratified, one in each 1/rounds
of the second for either side, and paired at random, so over the rounds both sides see every phase
equally and the median is the figure averaged over phases, not one phase's luck; ``--seed`` replays a
draw. Each round's ratio still swings widely (about 0.8 to 4x) with the pair of phases it drew, so the
median needs many rounds: 25 (about 3 minutes at a load of 5 on 2 cores). The machine's load moves the
figure too: give it with ``uptime``. "outside the build pod" is the system's own time.

    .venv/bin/python bench/build_overhead.py [--files 50] [--rounds 25] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import math
import random
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "builder"))

import _summary  # noqa: E402
from cluster import NS, Cluster, machineconfig, running_cluster  # noqa: E402

from mcosup.builder import buildplan  # noqa: E402
from mcosup.kube.resources import MACHINECONFIGPOOLS, MACHINECONFIGS, PODS  # noqa: E402
from mcosup.model import names  # noqa: E402
from mcosup.sim.apiserver import Emulator  # noqa: E402
from mcosup.sim.registry import Registry, build_base_image, buildah_storage_args, run  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures" / "mco"
UNIT = (
    "[Unit]\nDescription=bench {i}\n[Service]\nExecStart=/usr/bin/true\n"
    "[Install]\nWantedBy=multi-user.target\n"
)


def config(n_files: int) -> dict[str, Any]:
    files = {f"/etc/bench/file-{i:03d}.conf": (f"key{i}=" + "v" * 200 + "\n", 0o644) for i in range(n_files)}
    units = [{"name": f"bench-{i}.service", "enabled": True, "contents": UNIT.format(i=i)} for i in range(3)]
    return machineconfig("50-bench", files, units)


async def at_phase(phase: float) -> None:
    """Sleep until the wall clock's fraction of a second is ``phase`` (0 <= phase < 1), at least 50 ms on."""
    now = time.time()
    target = math.floor(now) + phase
    while target < now + 0.05:
        target += 1
    await asyncio.sleep(target - now)


async def buildah_alone(cluster: Cluster, work: Path, phase: float) -> float:
    """Build and push the Containerfile and context the builder would, timing buildah only."""
    rendered = await cluster.kube.get(MACHINECONFIGS, await cluster.rendered())
    plan = buildplan.plan(
        buildplan.BuildInputs(
            pool="worker",
            rendered_name=rendered["metadata"]["name"],
            rendered_spec=rendered["spec"],
            base_image=cluster.base_image,
            custom_containerfile="",
            pullspec=f"{cluster.registry.host}/bench/baseline:latest",
        )
    )
    ctx = work / "ctx"
    ctx.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(buildplan.context_tar(plan.context))) as tar:
        tar.extractall(ctx, filter="tar")
    (work / "Containerfile").write_text(plan.containerfile)
    storage = buildah_storage_args(work / "buildah")
    await at_phase(phase)
    start = time.perf_counter()
    await run(
        "buildah", *storage, "bud", "--isolation", "chroot", "--tls-verify=false",
        "-f", str(work / "Containerfile"), "-t", plan.target, str(ctx),
    )  # fmt: skip
    await run("buildah", *storage, "push", "--tls-verify=false", "--digestfile", str(work / "d"), plan.target)
    return time.perf_counter() - start


async def system(cluster: Cluster, phase: float) -> tuple[float, dict[str, float]]:
    """Seconds from opt-in to BuildSuccess, and when each milestone was first seen (through watches)."""
    marks: dict[str, float] = {}
    done = asyncio.get_running_loop().create_future()
    start = 0.0

    def mark(name: str) -> None:
        marks.setdefault(name, time.perf_counter() - start)

    async def pods() -> None:
        async for event in cluster.kube.watch(PODS, namespace=NS):
            pod = event["object"]
            phase = (pod.get("status") or {}).get("phase")
            role = (
                "build pod"
                if names.BUILD_OBJECT_LABEL in pod["metadata"].get("labels", {})
                else "builder pod"
            )
            mark(f"{role} created")
            if phase in ("Running", "Succeeded"):
                mark(f"{role} running")
            if phase == "Succeeded":
                mark(f"{role} succeeded")

    async def pools() -> None:
        async for event in cluster.kube.watch(MACHINECONFIGPOOLS, field_selector="metadata.name=worker"):
            for cond in (event["object"].get("status") or {}).get("conditions") or []:
                if cond["type"] in names.BUILD_CONDITIONS and cond["status"] == "True" and not done.done():
                    if cond["type"] == names.BUILD_SUCCESS:
                        done.set_result(time.perf_counter() - start)
                    elif cond["type"] == names.BUILD_FAILED:
                        done.set_exception(RuntimeError(f"build failed: {cond.get('message')}"))

    watchers = [asyncio.create_task(pods()), asyncio.create_task(pools())]
    try:
        await asyncio.sleep(0.2)  # let both watches open
        await at_phase(phase)
        start = time.perf_counter()
        await cluster.opt_in()
        total: float = await done
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    return total, marks


async def one_round(
    n_files: int, base_mb: int, work: Path, phases: tuple[float, float]
) -> tuple[float, float, dict[str, float]]:
    async with Registry(work / "registry") as registry:
        base = await build_base_image(registry, filler_bytes=base_mb * 1024 * 1024)
        async with Emulator() as emu:
            for crd in sorted((FIXTURES / "crds").glob("*.yaml")):
                await emu.create_object(yaml.safe_load(crd.read_text()))
            admin = emu.write_kubeconfig(work / "admin.kubeconfig")
            async with running_cluster(emu, admin, registry, base, work, FIXTURES) as cluster:
                await cluster.add_machineconfig(config(n_files))
                while not await cluster.has_rendered():  # noqa: ASYNC110  (polling the API, as a user would)
                    await asyncio.sleep(0.02)
                alone = await buildah_alone(cluster, work / "alone", phases[0])
                total, marks = await system(cluster, phases[1])
                # Let the builder finish its clean-up before everything stops.
                while (await cluster.build_objects())["Pod"]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
    return total, alone, marks


def stratified(rounds: int, rng: random.Random) -> list[float]:
    """One uniformly drawn fraction of a second in each 1/rounds of it, in random order."""
    phases = [(i + rng.random()) / rounds for i in range(rounds)]
    rng.shuffle(phases)
    return phases


async def main(n_files: int, rounds: int, base_mb: int, seed: int) -> None:
    ratios = []
    rng = random.Random(seed)
    pairs = list(zip(stratified(rounds, rng), stratified(rounds, rng), strict=True))
    print(f"phases drawn with --seed {seed}")
    # The first buildah run of a process is slow (0.9-1.2 s instead of ~0.55 s here), which would flatter
    # the ratio of round 1: an untimed round first.
    with tempfile.TemporaryDirectory(prefix="mcosup-bench-") as tmp:
        await one_round(n_files, base_mb, Path(tmp), (0.0, 0.0))
    for i, phases in enumerate(pairs):
        with tempfile.TemporaryDirectory(prefix="mcosup-bench-") as tmp:
            total, alone, marks = await one_round(n_files, base_mb, Path(tmp), phases)
        ratios.append(total / alone)
        steps = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(marks.items(), key=lambda kv: kv[1]))
        if "build pod succeeded" in marks and "build pod running" in marks:
            pod_run = marks["build pod succeeded"] - marks["build pod running"]
            steps += f"; outside the build pod {total - pod_run:.2f}s"
        print(f"round {i + 1}: opt-in→BuildSuccess {total:.2f}s, buildah alone {alone:.2f}s, "
              f"ratio {total / alone:.2f}x, phases {phases[0]:.2f}/{phases[1]:.2f} ({steps})")  # fmt: skip
    median = statistics.median(ratios)
    print(
        f"{n_files} files, base +{base_mb} MiB, {rounds} rounds: median ratio {median:.2f}x (target <= 1.5x)"
    )
    _summary.record(
        "build_overhead",
        f"opt-in to BuildSuccess ÷ buildah alone, {n_files} files (median)",
        median,
        "<= 1.5",
        median <= 1.5,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--seed", type=int, help="replay the phases of an earlier run (default: drawn)")
    parser.add_argument("--base-mb", type=int, default=0, help="incompressible MiB added to the base image")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    asyncio.run(main(args.files, args.rounds, args.base_mb, seed))
