"""``mcosup demo``: the whole layering story on this machine, narrated (contract section 10).

It starts a local cluster (:mod:`mcosup.sim.cluster`: the API emulator, the supervisor, the kubelet
stand-in, a local registry and a real daemon on a fake host per node), then tells the story: the
worker pool opts in → the builder pod starts → the image is built and pushed → nodes are rebased onto
it one by one (never more than ``maxUnavailable`` at a time) → a MachineConfig change is rebuilt and
rolled → the pool opts out → every node returns to the stock OS with its files re-applied. It ends
with a summary and the kubeconfig, which ``--keep`` keeps serving until Ctrl-C.

This is the only product command that imports :mod:`mcosup.sim`; it does so lazily.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcosup.model import names

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from mcosup.sim.cluster import LocalCluster

HELP = "run the whole layering story on this machine against the bundled emulator (or a real control plane)"
INSTALL_HINT = "apt-get install -y buildah docker-registry"
POOL = "worker"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=3, help="worker nodes (default: %(default)s)")
    parser.add_argument(
        "--max-unavailable",
        type=int,
        default=1,
        help="the worker pool's spec.maxUnavailable (default: %(default)s)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the cluster running after the story, for kubectl, until Ctrl-C",
    )
    parser.add_argument(
        "--workdir", type=Path, help="where everything lives (default: a temporary directory, removed)"
    )
    parser.add_argument(
        "--control-plane",
        choices=("emulator", "real"),
        default="emulator",
        help="the API server: the bundled emulator (default, fast) or a real kube-apiserver, etcd and "
        "kube-controller-manager built from the Kubernetes Go modules (scripts/controlplane.sh; the first "
        "run builds them)",
    )
    parser.add_argument(
        "--host",
        choices=("fake", "ostree"),
        default="fake",
        help="each node's OS: a plain fake (default, no root needed) or a real ostree sysroot that boots "
        "the images built (needs root and Debian's ostree)",
    )


def main(args: argparse.Namespace) -> int:
    missing = [tool for tool in ("buildah", "docker-registry") if not _installed(tool)]
    if missing:
        print(f"mcosup demo needs {' and '.join(missing)}; install them with:", file=sys.stderr)
        print(INSTALL_HINT)
        return 1
    if args.host == "ostree":
        from mcosup.sim.ostreehost import missing_ostree

        if why := missing_ostree():
            print(f"mcosup demo --host ostree: {why}", file=sys.stderr)
            return 1
    if args.workers < 1 or args.max_unavailable < 1:
        print("mcosup demo: --workers and --max-unavailable must be at least 1", file=sys.stderr)
        return 2
    from rich.console import Console

    console = Console()
    try:
        return asyncio.run(Demo(console, args).run())
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; the cluster is stopped[/]")
        return 130


def _installed(tool: str) -> bool:
    return shutil.which(tool) is not None


class Demo:
    def __init__(self, console: Console, args: argparse.Namespace):
        self.console = console
        self.args = args
        self.t0 = time.monotonic()
        self.stages: list[tuple[str, float, str]] = []
        #: The Node history's length once every node first ran its config: the rollouts start there.
        self.legacy_since = 0

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.t0:6.1f}s[/] {text}")

    async def stage(self, title: str, work: Callable[[], Awaitable[str]]) -> None:
        """Run one stage of the story under a spinner; record its duration and result."""
        self.console.rule(f"[bold]{title}")
        start = time.monotonic()
        with self.console.status(title):
            result = await work()
        took = time.monotonic() - start
        self.stages.append((title, took, result))
        self.note(f"[green]✓[/] {title}: {result} [dim]({took:.1f}s)[/]")

    async def run(self) -> int:
        from mcosup.sim.cluster import ClusterConfig, LocalCluster

        config = ClusterConfig(
            masters=1,
            workers=self.args.workers,
            max_unavailable=self.args.max_unavailable,
            control_plane=self.args.control_plane,
            host=self.args.host,
        )
        cluster = LocalCluster(
            config, self.args.workdir, say=lambda text: self.note(f"[cyan]cluster[/] {text}")
        )
        self.console.rule("[bold]mcosup demo: the layering opt-in, end to end")
        try:
            start = time.monotonic()
            with self.console.status("starting the local cluster"):
                await cluster.start()
            self.stages.append(("cluster up", time.monotonic() - start, f"work dir {cluster.workdir}"))
            await self.story(cluster)
            self.summary(cluster)
            if self.args.keep:
                await self.keep(cluster)
            return 0
        except Exception as exc:
            self.console.print(f"[bold red]demo failed:[/] {exc}")
            self.console.print(f"[dim]supervisor log (last lines):[/]\n{cluster.supervisor.tail()}")
            self.console.print(f"[dim]everything is under {cluster.workdir}[/]")
            return 1
        finally:
            with self.console.status("stopping the local cluster"):
                await cluster.stop()
            if self.args.workdir is None:
                await asyncio.to_thread(cluster.remove_workdir)

    # ------------------------------------------------------------------------------------ the story

    async def story(self, cluster: LocalCluster) -> None:
        from mcosup.sim.invariants import wait_until
        from mcosup.sim.objects import machineconfig, unit

        async def legacy() -> str:
            await self.roll(cluster, "master", layered=False, title="master nodes on their config")
            await self.roll(cluster, POOL, layered=False, title="worker nodes on their config")
            self.legacy_since = cluster.history_rv()
            return (
                f"every node runs its rendered config file by file, booted from {_short(cluster.base_image)}"
            )

        await self.stage("1. nodes converge (legacy, file by file)", legacy)

        async def opt_in() -> str:
            self.note(f"kubectl label machineconfigpool {POOL} {names.LAYERING_ENABLED}=")
            await cluster.opt_in(POOL)

            async def builder() -> str | None:
                pod = await cluster.builder_pod()
                phase = ((pod or {}).get("status") or {}).get("phase")
                return None if phase == "Running" else f"builder pod phase {phase}"

            await wait_until(builder, within=120, what=f"pod {names.BUILDER_POD} running")
            return f"pod {names.BUILDER_POD} is Running"

        await self.stage("2. opt the worker pool in → builder pod", opt_in)
        image = await self.build(cluster, "3. build the worker image")
        await self.stage(
            "4. rolling rebase onto the image",
            lambda: self.roll(cluster, POOL, layered=True, title=f"nodes rebased onto {_short(image)}"),
        )

        change = machineconfig(
            "50-worker-motd",
            POOL,
            {"/etc/motd.d/50-layered": ("this node boots an image built by mcosup\n", 0o644)},
            [unit("hello.service", "hello from the image")],
        )

        async def change_config() -> str:
            old = await cluster.rendered(POOL)
            self.note("kubectl apply -f 50-worker-motd.yaml  (a file and a systemd unit)")
            await cluster.apply_machineconfig(change)

            async def re_rendered() -> str | None:
                return None if await cluster.rendered(POOL) not in (None, old) else "not re-rendered yet"

            await wait_until(re_rendered, within=60, what="the pool re-rendered")
            return f"pool {POOL} now renders {await cluster.rendered(POOL)}"

        await self.stage("5. a MachineConfig change", change_config)
        image2 = await self.build(cluster, "6. rebuild for the new config")
        await self.stage(
            "7. roll the new image",
            lambda: self.roll(cluster, POOL, layered=True, title=f"nodes rebased onto {_short(image2)}"),
        )

        async def opt_out() -> str:
            self.note(f"kubectl label machineconfigpool {POOL} {names.LAYERING_ENABLED}-")
            await cluster.opt_in(POOL, on=False)
            await self.roll(cluster, POOL, layered=False, title="nodes back on the stock OS")

            async def cleaned() -> str | None:
                left = await cluster.build_objects()
                if await cluster.builder_pod() is not None:
                    left.append(f"Pod/{names.BUILDER_POD}")
                if await cluster.image(POOL):
                    left.append(f"annotation {names.NEWEST_IMAGE_ANNOTATION}")
                return f"left: {', '.join(left)}" if left else None

            await wait_until(cleaned, within=120, what="the builder pod and build objects gone")
            rendered = await cluster.rendered_config(POOL)
            paths = [f["path"] for f in rendered["spec"]["config"]["storage"].get("files") or []]
            for sim in cluster.nodes.values():
                if sim.role != POOL:
                    continue
                missing = [p for p in paths if sim.host.read(p) is None]
                if missing or sim.host.booted_image() != cluster.base_image:
                    raise RuntimeError(
                        f"{sim.name} did not revert: missing {missing}, boots {sim.host.booted_image()}"
                    )
            return (
                f"stock OS on every worker, {len(paths)} files re-applied; no builder pod, no build objects"
            )

        await self.stage("8. opt out → back to the stock OS", opt_out)

    async def build(self, cluster: LocalCluster, title: str) -> str:
        from mcosup.sim.invariants import wait_until

        image: list[str] = []

        async def work() -> str:
            rendered = await cluster.rendered(POOL)
            seen: list[str] = []

            async def built() -> str | None:
                state = await cluster.build_state(POOL)
                if state and state[0] not in seen:
                    seen.append(state[0])
                    self.note(f"pool {POOL}: {state[0]}")
                if state and state[0] == names.BUILD_FAILED:
                    raise RuntimeError(f"build failed: {state[1]}")
                got = await cluster.handed_off_image(POOL)
                if got is not None:
                    image.append(got)
                return None if got is not None else f"build state {state}"

            await wait_until(built, within=300, what=f"the image of {rendered}")
            got = image[-1]
            return f"{rendered} → {got}"

        await self.stage(title, work)
        return image[0]

    async def roll(self, cluster: LocalCluster, pool: str, *, layered: bool, title: str) -> str:
        """Follow a pool's rollout node by node with a progress bar until every node is on target."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from mcosup.sim.invariants import not_converged

        nodes = await cluster.pool_nodes(pool)
        cap = self.args.max_unavailable if pool == POOL else 1
        last: dict[str, tuple[Any, ...]] = {}
        most = 0
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, transient=True,
        )  # fmt: skip
        with progress:
            task = progress.add_task(title, total=len(nodes))
            while True:
                pool_obj, nodes = await cluster.pool(pool), await cluster.pool_nodes(pool)
                image = await cluster.handed_off_image(pool) if layered else None
                down = self._report(nodes, last, progress)
                most = max(most, len(down))
                done = sum(
                    1 for n in nodes if not_converged(pool_obj, [n], image=image, layered=layered) is None
                )
                progress.update(task, completed=done, description=f"{title} (unavailable {len(down)}/{cap})")
                if not_converged(pool_obj, nodes, image=image, layered=layered) is None:
                    break
                await asyncio.sleep(0.2)
        mode = "layered" if layered else "legacy"
        return f"{len(nodes)} {pool} nodes {mode}; at most {most} unavailable at once"

    def _report(
        self, nodes: list[dict[str, Any]], last: dict[str, tuple[Any, ...]], progress: Progress
    ) -> list[str]:
        """Print each node's changes (cordon, daemon state, image); return the unavailable ones."""
        from mcosup.sim.invariants import node_unavailable

        down = []
        for n in nodes:
            meta = n["metadata"]
            ann = meta.get("annotations") or {}
            name = meta["name"]
            now = (
                bool((n.get("spec") or {}).get("unschedulable")),
                ann.get(names.STATE),
                ann.get(names.CURRENT_IMAGE),
                ann.get(names.CURRENT_CONFIG),
            )
            before = last.get(name)
            if before is not None and now != before:
                if now[0] != before[0]:
                    self.note(f"{name}: {'cordoned and drained' if now[0] else 'uncordoned'}")
                if now[1] != before[1]:
                    reason = ann.get(names.REASON)
                    self.note(f"{name}: daemon {now[1]}" + (f" ({reason})" if reason else ""))
                if now[2] != before[2]:
                    self.note(f"{name}: booted {_short(now[2]) if now[2] else 'the stock OS'}")
            last[name] = now
            if node_unavailable(n):
                down.append(name)
        return down

    # ------------------------------------------------------------------------------------ the end

    def summary(self, cluster: LocalCluster) -> None:
        from rich.table import Table

        from mcosup.sim.invariants import most_unavailable

        self.console.rule("[bold]summary")
        table = Table(title="the story, stage by stage")
        table.add_column("stage")
        table.add_column("seconds", justify="right")
        table.add_column("result")
        for title, took, result in self.stages:
            table.add_row(title, f"{took:.1f}", result)
        table.add_row("[bold]total", f"[bold]{time.monotonic() - self.t0:.1f}", "")
        self.console.print(table)

        workers = [n for n, sim in cluster.nodes.items() if sim.role == POOL]
        worst, rv, down = most_unavailable(cluster.node_history, workers, since=self.legacy_since)
        hosts = Table(title="nodes")
        for column in ("node", "pool", "booted image", "reboots"):
            hosts.add_column(column)
        for name, sim in sorted(cluster.nodes.items()):
            hosts.add_row(name, sim.role, _short(sim.host.booted_image() or "?"), str(sim.host.reboots()))
        self.console.print(hosts)
        verdict = "[green]held[/]" if worst <= self.args.max_unavailable else "[red]EXCEEDED[/]"
        self.console.print(
            f"maxUnavailable={self.args.max_unavailable} {verdict}: at most {worst} worker node(s) "
            f"unavailable at once over {len(cluster.node_history)} recorded Node versions"
            + (f" ({', '.join(down)} at version {rv})" if down else "")
        )
        self.console.print(f"kubeconfig: [bold]{cluster.kubeconfig}[/]")
        if not self.args.keep:
            self.console.print("[dim](run with --keep to explore the cluster with kubectl afterwards)[/]")

    async def keep(self, cluster: LocalCluster) -> None:
        k = f"kubectl --kubeconfig {cluster.kubeconfig}"
        self.console.print(
            "The cluster keeps running until Ctrl-C. Try:\n"
            f"  {k} get machineconfigpools,nodes\n"
            f"  {k} get machineconfigs\n"
            f"  {k} describe machineconfigpool {POOL}\n"
            f"  {k} label machineconfigpool {POOL} {names.LAYERING_ENABLED}=   # and watch: get nodes -w\n"
            f"  KUBECONFIG={cluster.kubeconfig} {sys.executable} -m mcosup status"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
        self.console.print("stopping")


def _short(image: str | None) -> str:
    """``host/repo@sha256:0123456789ab…``: enough of a digest to tell images apart."""
    if not image:
        return "-"
    name, _, digest = image.partition("@")
    return f"{name.rsplit('/', 1)[-1]}@{digest[:19]}…" if digest else name
