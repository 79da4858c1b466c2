"""Supervisor at scale against the emulator (issue 4): not a test, it prints figures.

An emulator (own process) holds N nodes, 10 pools and 300 MachineConfigs. For the supervisor and for a
bare kubernetes_asyncio list+watch of the same objects (bench/_bare_watch.py), it measures:
- time from process start to ready (supervisor: /readyz answers 200; bare: every list returned),
- resident memory after the sync,
- throughput when every node's labels change once (watch events applied per second).

It also reports the emulator's memory and how long it takes to list every node, at each size.

Usage: python bench/supervisor_scale.py [--nodes 5000,20000] [--pools 10] [--machineconfigs 300]
Targets (issue 18), supervisor ÷ bare client: node events/s >= 0.8, time to ready <= 1.0, RSS <= 0.75.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import _summary
import aiohttp
import orjson

from mcosup.kube import client as kclient
from mcosup.kube.resources import MACHINECONFIGPOOLS, MACHINECONFIGS, NAMESPACES, NODES
from mcosup.model import names
from mcosup.runtime.settings import KubeSettings

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT.parent / "shared" / "fixtures" / "mco" / "crds"
NS = names.DEFAULT_NAMESPACE
BENCH = "supervisor_scale"


def rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def emulator(workdir: Path) -> AsyncIterator[tuple[Path, int]]:
    kubeconfig = workdir / "admin.kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcosup",
        "--log-level",
        "WARNING",
        "sim",
        "serve",
        "--kubeconfig",
        str(kubeconfig),
        "--crds",
        str(CRDS),
        "--history-window",
        "50000",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 30)
        yield kubeconfig, proc.pid
    finally:
        proc.terminate()
        await proc.wait()


async def bounded(coros: list[Awaitable[Any]], limit: int = 32) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(c: Awaitable[Any]) -> None:
        async with sem:
            await c

    await asyncio.gather(*(one(c) for c in coros))


async def populate(kube: kclient.Kube, nodes: int, pools: int, machineconfigs: int) -> None:
    await kube.create(NAMESPACES, {"metadata": {"name": NS}})
    for p in range(pools):
        await kube.create(
            MACHINECONFIGPOOLS,
            {
                "apiVersion": names.API_VERSION,
                "kind": "MachineConfigPool",
                "metadata": {"name": f"pool-{p}"},
                "spec": {
                    "machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: f"pool-{p}"}},
                    "nodeSelector": {"matchLabels": {"bench/pool": f"pool-{p}"}},
                    "maxUnavailable": 1,
                },
            },
        )
    await bounded(
        [
            kube.create(
                MACHINECONFIGS,
                {
                    "apiVersion": names.API_VERSION,
                    "kind": "MachineConfig",
                    "metadata": {
                        "name": f"50-bench-{i:03d}",
                        "labels": {names.ROLE_LABEL: f"pool-{i % pools}"},
                    },
                    "spec": {
                        "config": {
                            "ignition": {"version": "3.2.0"},
                            "storage": {
                                "files": [
                                    {
                                        "path": f"/etc/bench/{i}-{j}.conf",
                                        "mode": 420,
                                        "contents": {"source": "data:,bench%20" + str(j)},
                                    }
                                    for j in range(3)
                                ]
                            },
                        }
                    },
                },
            )
            for i in range(machineconfigs)
        ]
    )
    await bounded(
        [
            kube.create(
                NODES,
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": f"node-{i:05d}",
                        "labels": {
                            "bench/pool": f"pool-{i % pools}",
                            "kubernetes.io/hostname": f"node-{i:05d}",
                        },
                    },
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                },
            )
            for i in range(nodes)
        ]
    )


async def relabel_all(kube: kclient.Kube, nodes: int, value: str) -> None:
    await bounded(
        [
            kube.patch(NODES, f"node-{i:05d}", {"metadata": {"labels": {"bench/round": value}}})
            for i in range(nodes)
        ]
    )


async def measure_supervisor(kubeconfig: Path, kube: kclient.Kube, nodes: int) -> dict[str, float]:
    port = free_port()
    env = dict(os.environ, MCOSUP_NAMESPACE=NS)
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcosup",
        "--log-level",
        "WARNING",
        "supervisor",
        "--kubeconfig",
        str(kubeconfig),
        "--http-port",
        str(port),
        "--identity",
        "bench",
        env=env,
    )
    try:
        async with aiohttp.ClientSession() as http:
            ready = await poll(http, f"http://127.0.0.1:{port}/readyz", lambda status, _: status == 200)
            ready_s = ready - start
            await asyncio.sleep(2)  # let the initial reconciles run before reading memory
            rss = rss_mib(proc.pid)
            base = await node_events(http, port)
            t0 = time.monotonic()
            await relabel_all(kube, nodes, "s")
            done = await poll(
                http,
                f"http://127.0.0.1:{port}/metrics",
                lambda _, text: metric(text, "nodes") >= base + nodes,
                every=0.05,
            )
        return {"ready_s": ready_s, "rss_mib": rss, "events_per_s": nodes / (done - t0)}
    finally:
        proc.terminate()
        await proc.wait()


async def measure_bare(kubeconfig: Path, kube: kclient.Kube, nodes: int) -> dict[str, float]:
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "_bare_watch.py"),
        str(kubeconfig),
        NS,
        str(nodes),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready = orjson.loads(await proc.stdout.readline())["ready"]
        await asyncio.sleep(2)
        rss = rss_mib(proc.pid)
        t0 = time.monotonic()
        relabel = asyncio.ensure_future(relabel_all(kube, nodes, "b"))
        at = orjson.loads(await proc.stdout.readline())["at"]
        await relabel
        return {"ready_s": ready - start, "rss_mib": rss, "events_per_s": nodes / (at - t0)}
    finally:
        proc.terminate()
        await proc.wait()


def metric(text: str, resource: str) -> float:
    match = re.search(rf'^mcosup_watch_events_total{{resource="{resource}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


async def node_events(http: aiohttp.ClientSession, port: int) -> float:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        return metric(await resp.text(), "nodes")


async def poll(
    http: aiohttp.ClientSession, url: str, ok: Any, every: float = 0.1, limit: float = 600
) -> float:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(url) as resp:
                if ok(resp.status, await resp.text()):
                    return time.monotonic()
        await asyncio.sleep(every)
    raise TimeoutError(url)


async def list_latency(kube: kclient.Kube, rounds: int = 3) -> float:
    """Seconds the emulator takes to answer a full list of the nodes (the best of a few)."""
    best = float("inf")
    for _ in range(rounds):
        t = time.monotonic()
        await kube.list(NODES)
        best = min(best, time.monotonic() - t)
    return best


# Goals (issue 18): the supervisor keeps up with the watch as well as a bare client does, starts as fast
# and holds the same objects in less memory. Ratios are supervisor ÷ bare kubernetes_asyncio client.
GOALS = {
    "events_per_s": ("node events/s ÷ bare client", ">= 0.8", lambda r: r >= 0.8),
    "ready_s": ("time to ready ÷ bare client", "<= 1.0", lambda r: r <= 1.0),
    "rss_mib": ("RSS after sync ÷ bare client", "<= 0.75", lambda r: r <= 0.75),
}


async def one_size(nodes: int, pools: int, machineconfigs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with emulator(Path(tmp)) as (kubeconfig, emulator_pid):
            async with kclient.connect(KubeSettings(kubeconfig=str(kubeconfig))) as kube:
                t = time.monotonic()
                await populate(kube, nodes, pools, machineconfigs)
                print(
                    f"populated {nodes} nodes, {pools} pools, {machineconfigs} MachineConfigs "
                    f"in {time.monotonic() - t:.1f}s"
                )
                emulator_rss, listing = rss_mib(emulator_pid), await list_latency(kube)
                print(f"emulator RSS {emulator_rss:.0f} MiB; a list of all nodes: {1000 * listing:.0f} ms")
                bare = await measure_bare(kubeconfig, kube, nodes)
                sup = await measure_supervisor(kubeconfig, kube, nodes)
    print(f"{'':24}{'supervisor':>12}{'bare client':>14}{'ratio':>8}")
    for key, label in (
        ("ready_s", "time to ready (s)"),
        ("rss_mib", "RSS after sync (MiB)"),
        ("events_per_s", "node events/s"),
    ):
        print(f"{label:24}{sup[key]:12.2f}{bare[key]:14.2f}{sup[key] / bare[key]:8.2f}")
    print("targets: " + ", ".join(f"{label} {goal}" for label, goal, _ in GOALS.values()))
    for key, (label, goal, met) in GOALS.items():
        ratio = sup[key] / bare[key]
        _summary.record(BENCH, f"supervisor {label}, {nodes:,} nodes", ratio, goal, met(ratio))
    _summary.record(BENCH, f"emulator RSS holding {nodes:,} nodes", emulator_rss, unit="MiB")
    _summary.record(BENCH, f"emulator: list of {nodes:,} nodes", 1000 * listing, unit="ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="5000,20000", help="cluster sizes, comma-separated")
    parser.add_argument("--pools", type=int, default=10)
    parser.add_argument("--machineconfigs", type=int, default=300)
    args = parser.parse_args()
    for nodes in (int(n) for n in args.nodes.split(",")):
        await one_size(nodes, args.pools, args.machineconfigs)
        print()


if __name__ == "__main__":
    asyncio.run(main())
