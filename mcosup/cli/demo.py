"""``mcosup demo``: the whole layering story on this machine, narrated (contract section 10).

It starts a local cluster (:mod:`mcosup.sim.cluster`: the API emulator, the supervisor, the kubelet
stand-in, a local registry and a real daemon on a fake host per node), then tells the story: the
worker pool opts in by label and the master pool by an admin's MachineOSConfig → the builder pod
starts → one MachineOSBuild per pool builds and pushes its image → nodes are rebased onto it one by
one (never more than ``maxUnavailable`` at a time, the next nodes staging the image while in service)
→ a MachineConfig change is rebuilt and rolled → ``mc/rebuild`` builds the master pool's config
again → a change the node disruption policy covers reaches every worker with no reboot → a custom
Containerfile step makes an image that does not boot healthily: the first worker rolls back from it and
the pool's rollout halts there, no other node given it → the fixed step's image rolls on → both pools
opt out → every node returns to the stock OS with its files re-applied, and every image built is
pruned from the registry. Each chapter prints what an admin would type and what they would see; the
story stops with an error when an outcome is not the one told. It ends with a summary and the
kubeconfig, which ``--keep`` keeps serving until Ctrl-C.

This is the only product command that imports :mod:`mcosup.sim`; it does so lazily.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcosup.model import names

if TYPE_CHECKING:
    from rich.console import Console

    from mcosup.sim.cluster import LocalCluster

HELP = "run the whole layering story on this machine against the bundled emulator (or a real control plane)"
INSTALL_HINT = "apt-get install -y buildah docker-registry"
#: A rollout in which no node changes (cordon, daemon state, image, config) for this long is stuck: the
#: story stops there and says why, instead of waiting for ever on, say, a Degraded node.
STUCK_SECONDS = 300.0
POOL = "worker"
#: The pool opted in by an admin's own MachineOSConfig, and the repository its images are pushed to.
MASTER = "master"
MASTER_REPO = "os/master"
#: The no-reboot chapter (contract 12.2): a registries.conf-style file whose change the node disruption
#: policy covers with a reload of CRI-O.
REGISTRIES = "/etc/containers/registries.conf"
REGISTRIES_CONF = '[[registry]]\nlocation = "quay.io"\n[[registry.mirror]]\nlocation = "mirror.local:5000"\n'
DISRUPTION_POLICY = (
    f"files:\n  - path: {REGISTRIES}\n"
    "    actions: [{type: Reload, reload: {serviceName: crio.service}}]\n"
)
#: What the policy runs on each node, as the daemon reports it and as the fake host records it.
POLICY_ACTIONS = "Reload crio.service"
RELOAD = "reload crio.service"
#: The bad-image chapter (contract 12.3): the worker pool's custom Containerfile step, first broken, then
#: fixed. The fake host's unhealthy label (:mod:`mcosup.sim.fakehost`) stands in for a step that breaks
#: the boot; the pool's health check is made short so that the rollback comes quickly.
TUNING_LABEL = "io.mcosup.demo.tuning"
HEALTH_CHECK_SECONDS = 3


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

    from mcosup.runtime.lifecycle import run_or_signalled

    console = Console()
    demo = Demo(console, args)
    # Ctrl-C, TERM or a closed terminal cancel the demo, which stops every process it started.
    result = run_or_signalled(demo.run())
    if result is not None:
        return result
    if demo.keeping:
        return 0  # --keep: the cluster was asked to run until stopped
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
        #: The story is told and, with --keep, the cluster runs until a signal stops it.
        self.keeping = False
        #: The Node history's length once every node first ran its config: the rollouts start there.
        self.legacy_since = 0
        #: Each pool's image, handed off by its current MachineOSBuild; every image built, in order.
        self.images: dict[str, str] = {}
        self.built: list[str] = []

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
        from mcosup.sim.objects import machineconfig, machineosconfig, unit

        async def legacy() -> str:
            await self.roll(cluster, (MASTER, POOL), layered=False, title="nodes on their config")
            self.legacy_since = cluster.history_rv()
            return (
                f"every node runs its rendered config file by file, booted from {_short(cluster.base_image)}"
            )

        await self.stage("1. nodes converge (legacy, file by file)", legacy)

        async def opt_in() -> str:
            self.note(f"kubectl label machineconfigpool {POOL} {names.LAYERING_ENABLED}=")
            await cluster.opt_in(POOL)
            push_spec = f"{cluster.registry.host}/{MASTER_REPO}:latest"
            self.note(
                f"kubectl apply -f machineosconfig-{MASTER}.yaml  (pool {MASTER}, images to {push_spec})"
            )
            await cluster.create_machineosconfig(machineosconfig(MASTER, push_spec))

            async def builder() -> str | None:
                pod = await cluster.builder_pod()
                phase = ((pod or {}).get("status") or {}).get("phase")
                managed = await cluster.machineosconfig(POOL)
                labels = ((managed or {}).get("metadata") or {}).get("labels") or {}
                if labels.get(names.MANAGED_BY_LABEL) != names.MANAGED_BY_LABEL_VALUE:
                    return f"no MachineOSConfig {POOL} made from the label yet"
                return None if phase == "Running" else f"builder pod phase {phase}"

            await wait_until(builder, within=120, what=f"pod {names.BUILDER_POD} running")
            self.note(
                f"kubectl get machineosconfigs: {POOL} (made from the label, "
                f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY_LABEL_VALUE}), {MASTER} (the admin's)"
            )
            return (
                f"pod {names.BUILDER_POD} is Running; MachineOSConfig {POOL} made from the label, "
                f"{MASTER} the admin's own"
            )

        await self.stage(f"2. opt in: {POOL} by label, {MASTER} by MachineOSConfig → builder pod", opt_in)
        await self.build(cluster, (POOL, MASTER), "3. build both pools' images")
        await self.stage(
            "4. rolling rebase onto the images",
            lambda: self.roll(cluster, (POOL, MASTER), layered=True, title="nodes rebased onto their image"),
        )

        change = machineconfig(
            "50-worker-motd",
            POOL,
            {"/etc/motd.d/50-layered": ("this node boots an image built by mcosup\n", 0o644)},
            [unit("hello.service", "hello from the image")],
        )

        async def change_config() -> str:
            self.note("kubectl apply -f 50-worker-motd.yaml  (a file and a systemd unit)")
            await self.apply_machineconfig(cluster, change)
            return f"pool {POOL} now renders {await cluster.rendered(POOL)}"

        await self.stage("5. a MachineConfig change", change_config)
        await self.build(cluster, (POOL,), "6. rebuild for the new config")
        await self.stage(
            "7. roll the new image",
            lambda: self.roll(
                cluster, (POOL,), layered=True, title=f"nodes rebased onto {_short(self.images[POOL])}"
            ),
        )

        await self.stage(
            f"8. rebuild on request (mc/rebuild on MachineOSConfig {MASTER})", lambda: self.rebuild(cluster)
        )
        await self.stage(
            "9. a change without a reboot (node disruption policy)", lambda: self.no_reboot(cluster)
        )
        await self.stage(
            "10. a bad image: one node rolls back, the rollout halts (health gate)",
            lambda: self.bad_image(cluster),
        )
        await self.stage("11. the fix rolls on", lambda: self.fix(cluster))
        await self.stage(
            f"12. opt out (label removed, MachineOSConfig {MASTER} deleted) → stock OS",
            lambda: self.opt_out(cluster),
        )
        await self.stage("13. the images pruned from the registry", lambda: self.pruned(cluster))

    async def rebuild(self, cluster: LocalCluster) -> str:
        """Contract 11: ``mc/rebuild`` builds the same config again as a new MachineOSBuild, rolled out."""
        from mcosup.sim.invariants import wait_until

        before = self.images[MASTER]
        self.note(f"kubectl annotate machineosconfig {MASTER} {names.REBUILD_ANNOTATION}=")
        await cluster.rebuild(MASTER)
        build = (await self.follow_builds(cluster, (MASTER,)))[MASTER]

        async def annotation_removed() -> str | None:
            mosc = await cluster.machineosconfig(MASTER) or {}
            ann = (mosc.get("metadata") or {}).get("annotations") or {}
            return "still annotated" if names.REBUILD_ANNOTATION in ann else None

        await wait_until(annotation_removed, within=60, what=f"{names.REBUILD_ANNOTATION} removed")
        after = self.images[MASTER]
        await self.roll(cluster, (MASTER,), layered=True, title=f"nodes rebased onto {_short(after)}")
        return (
            f"the same config built again as MachineOSBuild {build}: {_short(before)} → {_short(after)}; "
            f"{MASTER} nodes rolled onto it"
        )

    async def opt_out(self, cluster: LocalCluster) -> str:
        """Both opt-outs (the label removed, the MachineOSConfig deleted): every node back on the stock OS."""
        from mcosup.sim.invariants import wait_until

        self.note(f"kubectl label machineconfigpool {POOL} {names.LAYERING_ENABLED}-")
        await cluster.opt_in(POOL, on=False)
        self.note(f"kubectl delete machineosconfig {MASTER}")
        await cluster.delete_machineosconfig(MASTER)
        await self.roll(cluster, (POOL, MASTER), layered=False, title="nodes back on the stock OS")

        async def cleaned() -> str | None:
            left = await cluster.build_objects()
            if await cluster.builder_pod() is not None:
                left.append(f"Pod/{names.BUILDER_POD}")
            for pool in (POOL, MASTER):
                if await cluster.image(pool):
                    left.append(f"{pool}'s annotation {names.NEWEST_IMAGE_ANNOTATION}")
            return f"left: {', '.join(left)}" if left else None

        await wait_until(cleaned, within=120, what="the builder pod and build objects gone")
        reapplied = 0
        for pool in (POOL, MASTER):
            rendered = await cluster.rendered_config(pool)
            paths = [f["path"] for f in rendered["spec"]["config"]["storage"].get("files") or []]
            for sim in cluster.nodes.values():
                if sim.role != pool:
                    continue
                missing = [p for p in paths if sim.host.read(p) is None]
                if missing or sim.host.booted_image() != cluster.base_image:
                    raise RuntimeError(
                        f"{sim.name} did not revert: missing {missing}, boots {sim.host.booted_image()}"
                    )
                reapplied += len(paths)
        return f"stock OS on every node, {reapplied} files re-applied; no builder pod, no build objects"

    async def no_reboot(self, cluster: LocalCluster) -> str:
        """Contract 12.2 on a layered pool: a change the node disruption policy covers is applied live."""
        from mcosup.sim.objects import machineconfig

        self.note(
            f"kubectl -n {cluster.ns} create configmap {names.NODE_DISRUPTION_POLICY_CM} "
            f"--from-file={names.NODE_DISRUPTION_POLICY_KEY}"
        )
        for line in DISRUPTION_POLICY.splitlines():
            self.note(f"    {line}")
        await cluster.apply_configmap(
            names.NODE_DISRUPTION_POLICY_CM, {names.NODE_DISRUPTION_POLICY_KEY: DISRUPTION_POLICY}
        )
        workers = {n: sim.host for n, sim in cluster.nodes.items() if sim.role == POOL}
        reboots = {n: host.reboots() for n, host in workers.items()}
        actions = {n: len(host.service_actions()) for n, host in workers.items()}
        since = cluster.history_rv()
        self.note(f"kubectl apply -f 60-worker-registries.yaml  ({REGISTRIES}: a mirror)")
        await self.apply_machineconfig(
            cluster, machineconfig("60-worker-registries", POOL, {REGISTRIES: (REGISTRIES_CONF, 0o644)})
        )
        await self.follow_builds(cluster, (POOL,))
        image = self.images[POOL]
        await self.roll(cluster, (POOL,), layered=True, title=f"nodes take {_short(image)} live")
        rendered = await cluster.rendered(POOL)
        nodes = {n["metadata"]["name"]: n for n in await cluster.pool_nodes(POOL)}
        wrong = []
        for n, host in sorted(workers.items()):
            applied = (nodes[n]["metadata"].get("annotations") or {}).get(names.LAST_APPLIED_WITHOUT_REBOOT)
            ran = host.service_actions()[actions[n] :]
            self.note(f"{n}: reboots {reboots[n]} → {host.reboots()}; ran {', '.join(ran) or 'nothing'}")
            if (host.reboots(), ran, applied) != (reboots[n], [RELOAD], f"{rendered}: {POLICY_ACTIONS}"):
                wrong.append(
                    f"{n} (reboots {reboots[n]} → {host.reboots()}, ran {ran}, annotation {applied!r})"
                )
        cordoned = sorted(
            {
                obj["metadata"]["name"]
                for _, _, obj in cluster.node_history[since:]
                if obj["metadata"]["name"] in workers and (obj.get("spec") or {}).get("unschedulable")
            }
        )
        if wrong or cordoned:
            raise RuntimeError(
                f"the change covered by {names.NODE_DISRUPTION_POLICY_CM} was not applied live: "
                + "; ".join(wrong + [f"{n} was cordoned" for n in cordoned])
            )
        return (
            f"{len(workers)} {POOL} nodes current on {_short(image)} with no reboot and no cordon; "
            f"each ran {POLICY_ACTIONS} once ({names.LAST_APPLIED_WITHOUT_REBOOT})"
        )

    async def bad_image(self, cluster: LocalCluster) -> str:
        """Contract 12.3: an image that does not boot healthily reaches one node, which rolls back; the
        pool's rollout halts there, naming the node and the image, and no other node is given it."""
        from mcosup.model import health
        from mcosup.model.node import NodeView
        from mcosup.sim.fakebin import UNHEALTHY_LABEL
        from mcosup.sim.invariants import wait_until

        seconds = str(HEALTH_CHECK_SECONDS)
        self.note(f"kubectl annotate machineconfigpool {POOL} {names.HEALTH_CHECK_SECONDS}={seconds}")
        await cluster.patch_pool(POOL, {"metadata": {"annotations": {names.HEALTH_CHECK_SECONDS: seconds}}})
        await self.max_unavailable(cluster, 1)  # one node first
        workers = {n: sim.host for n, sim in cluster.nodes.items() if sim.role == POOL}
        booted = {n: host.booted_image() for n, host in workers.items()}
        since = cluster.history_rv()
        await self.custom_step(cluster, f'LABEL {TUNING_LABEL}="v1" {UNHEALTHY_LABEL}="v1 hangs the boot"')
        self.note(f"  (the demo's hosts fail boot-complete.target on an image labelled {UNHEALTHY_LABEL})")
        await self.follow_builds(cluster, (POOL,))
        bad = self.images[POOL]
        last: dict[str, tuple[Any, ...]] = {}
        failed: list[str] = []
        degraded: dict[str, Any] = {}

        async def halted() -> str | None:
            nodes = await cluster.pool_nodes(POOL)
            self._report(nodes, last)
            views = [NodeView.of(n) for n in nodes]
            failed[:] = [v.name for v in views if health.rolled_back_from(v) == bad]
            degraded.clear()
            degraded.update(await cluster.condition(POOL, names.DEGRADED) or {})
            staging = [v.name for v in views if v.staging_image == bad]
            if not failed:
                return f"no node has rolled back from {bad} yet"
            if back := [n for n in failed if workers[n].booted_image() != booted[n]]:
                return f"{', '.join(back)} not booted back into {booted[back[0]]} yet"
            if degraded.get("reason") != names.REASON_ROLLOUT_HALTED:
                return f"pool {POOL} not {names.REASON_ROLLOUT_HALTED} yet"
            return f"{', '.join(staging)} still told to download {bad}" if staging else None

        await wait_until(
            halted, within=STUCK_SECONDS, what=f"pool {POOL} halting its rollout of {bad}", every=0.5
        )
        self.note(f"kubectl describe machineconfigpool {POOL}")
        message = str(degraded.get("message")).replace(bad, _short(bad))
        self.note(f"  Degraded=True {degraded['reason']}: {message}")
        for v in map(NodeView.of, await cluster.pool_nodes(POOL)):
            self.note(
                f"{v.name}: desiredImage {_short(v.desired_image)}, currentImage {_short(v.current_image)}, "
                f"{v.state}"
            )
        given = {
            obj["metadata"]["name"]
            for _, _, obj in cluster.node_history[since:]
            if (obj["metadata"].get("annotations") or {}).get(names.DESIRED_IMAGE) == bad
        }
        if len(failed) != 1 or given != set(failed):
            raise RuntimeError(
                f"{bad} was to reach one node and halt there: {sorted(given)} were given it, "
                f"{failed} rolled back from it"
            )
        return (
            f"{failed[0]} took {_short(bad)}, was not healthy within {seconds}s and rolled back "
            f"({health.ROLLED_BACK}); pool {POOL} Degraded, {names.REASON_ROLLOUT_HALTED}; "
            f"the other {len(workers) - 1} nodes never given it"
        )

    async def fix(self, cluster: LocalCluster) -> str:
        """Contract 12.3: a new image clears the halt by itself and rolls on to every node."""
        from mcosup.sim.invariants import wait_until

        await self.custom_step(cluster, f'LABEL {TUNING_LABEL}="v2"')
        await self.follow_builds(cluster, (POOL,))
        fixed = self.images[POOL]
        rolled = await self.roll(cluster, (POOL,), layered=True, title=f"nodes rebased onto {_short(fixed)}")

        async def updated() -> str | None:
            got = {
                t: ((await cluster.condition(POOL, t)) or {}).get("status")
                for t in (names.UPDATED, names.DEGRADED)
            }
            return None if got == {names.UPDATED: "True", names.DEGRADED: "False"} else f"pool {POOL}: {got}"

        await wait_until(updated, within=60, what=f"pool {POOL} Updated and no longer Degraded")
        self.note(f"kubectl get machineconfigpool {POOL}:  UPDATED True  DEGRADED False")
        await self.max_unavailable(cluster, self.args.max_unavailable)
        return f"{rolled}, on {_short(fixed)}; the new image cleared the halt; pool {POOL} Updated"

    async def custom_step(self, cluster: LocalCluster, text: str) -> None:
        """Set the worker pool's custom Containerfile text (the MachineOSConfig made from its label
        copies it into ``containerFile``)."""
        cm = names.CUSTOM_DOCKERFILE_CM
        self.note(f"kubectl -n {cluster.ns} apply -f {cm}.yaml  ({POOL}: {text})")
        await cluster.apply_configmap(cm, {POOL: text})

    async def max_unavailable(self, cluster: LocalCluster, value: int) -> None:
        """Set the worker pool's ``spec.maxUnavailable`` unless it is that already."""
        pool = await cluster.pool(POOL)
        if (pool.get("spec") or {}).get("maxUnavailable", 1) != value:
            patch = f'{{"spec":{{"maxUnavailable":{value}}}}}'
            self.note(f"kubectl patch machineconfigpool {POOL} --type merge -p '{patch}'")
            await cluster.patch_pool(POOL, {"spec": {"maxUnavailable": value}})

    async def pruned(self, cluster: LocalCluster) -> str:
        """Contract 11: once no node names them, the opt-outs deleted every MachineOSBuild and its image."""
        from mcosup.sim.invariants import wait_until

        async def gone() -> str | None:
            left = [f"MachineOSBuild/{b['metadata']['name']}" for b in await cluster.machineosbuilds()]
            for image in self.built:
                if await asyncio.to_thread(cluster.registry_has, image):
                    left.append(f"image {image}")
                    break
            return f"left: {', '.join(left)}" if left else None

        self.note("kubectl get machineosbuilds")
        await wait_until(gone, within=120, what="every MachineOSBuild and image pruned")
        self.note("  No resources found")
        for image in self.built:
            self.note(f"skopeo inspect --tls-verify=false docker://{image}")
            self.note("  manifest unknown")
        n = len(self.built)
        return f"{n} images built, all {n} gone from the registry; no MachineOSBuild left"

    async def apply_machineconfig(self, cluster: LocalCluster, mc: dict[str, Any]) -> None:
        """Apply ``mc`` to the worker pool and wait for the pool to render it."""
        from mcosup.sim.invariants import wait_until

        old = await cluster.rendered(POOL)
        await cluster.apply_machineconfig(mc)

        async def re_rendered() -> str | None:
            return None if await cluster.rendered(POOL) not in (None, old) else "not re-rendered yet"

        await wait_until(re_rendered, within=60, what=f"pool {POOL} re-rendered")

    async def build(self, cluster: LocalCluster, pools: Sequence[str], title: str) -> None:
        async def work() -> str:
            builds = await self.follow_builds(cluster, pools)
            return "; ".join(
                f"{pool}: MachineOSBuild {build} Succeeded → {self.images[pool]}"
                for pool, build in builds.items()
            )

        await self.stage(title, work)

    async def follow_builds(self, cluster: LocalCluster, pools: Sequence[str]) -> dict[str, str]:
        """Follow the pools' MachineOSBuilds until each pool hands off a new image, printing each build's
        state as it changes. Returns each pool's MachineOSBuild's name; its image is in :attr:`images`."""
        from mcosup.model import machineosbuild
        from mcosup.sim.invariants import wait_until

        seen: dict[str, str] = {}
        images: dict[str, str] = {}
        builds: dict[str, str] = {}
        self.note("kubectl get machineosbuilds -w")

        async def built() -> str | None:
            for pool in pools:
                got = await cluster.handed_off_image(pool)
                if got is not None and got != self.images.get(pool):
                    images[pool] = got
            # Listed after the hand-off is read, so a build handed off is seen Succeeded here.
            for mosb in await cluster.machineosbuilds():
                meta, spec = mosb["metadata"], mosb.get("spec") or {}
                if (spec.get("machineOSConfig") or {}).get("name") not in pools:
                    continue
                state = machineosbuild.state(mosb) or "Pending"
                if seen.get(meta["uid"]) != state:
                    seen[meta["uid"]] = state
                    self.note(f"  {meta['name']}  {state}")
                if state == names.MOSB_FAILED:
                    raise RuntimeError(f"MachineOSBuild {meta['name']} failed; kubectl describe it for why")
                image = machineosbuild.succeeded_image(mosb)
                if image is not None:
                    builds[image] = meta["name"]
            waiting = [pool for pool in pools if pool not in images]
            return f"waiting for the image of {', '.join(waiting)}" if waiting else None

        await wait_until(built, within=300, what=f"the images of {', '.join(pools)}")
        self.images.update(images)
        self.built += [images[pool] for pool in pools]
        return {pool: builds.get(image, "?") for pool, image in images.items()}

    async def roll(self, cluster: LocalCluster, pools: Sequence[str], *, layered: bool, title: str) -> str:
        """Follow pools' rollouts node by node with a progress bar until every node is on target."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from mcosup.sim.invariants import not_converged

        caps = {pool: self.args.max_unavailable if pool == POOL else 1 for pool in pools}
        last: dict[str, tuple[Any, ...]] = {}
        most = dict.fromkeys(pools, 0)
        counts = dict.fromkeys(pools, 0)
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, transient=True,
        )  # fmt: skip
        changed_at = time.monotonic()
        with progress:
            task = progress.add_task(title, total=None)
            while True:
                done, why, down_now, before = 0, None, [], dict(last)
                for pool in pools:
                    pool_obj, nodes = await cluster.pool(pool), await cluster.pool_nodes(pool)
                    image = await cluster.handed_off_image(pool) if layered else None
                    down = self._report(nodes, last)
                    most[pool] = max(most[pool], len(down))
                    counts[pool] = len(nodes)
                    down_now.append(f"{pool} {len(down)}/{caps[pool]}")
                    done += sum(
                        1 for n in nodes if not_converged(pool_obj, [n], image=image, layered=layered) is None
                    )
                    why = why or not_converged(pool_obj, nodes, image=image, layered=layered)
                progress.update(
                    task,
                    total=sum(counts.values()),
                    completed=done,
                    description=f"{title} (unavailable {', '.join(down_now)})",
                )
                if why is None:
                    break
                if last != before:
                    changed_at = time.monotonic()
                elif time.monotonic() - changed_at > STUCK_SECONDS:
                    raise RuntimeError(
                        f"{title}: no node changed for {STUCK_SECONDS:.0f}s; {why} "
                        "(kubectl describe node; hosts/<node>/daemon.log in --workdir)"
                    )
                await asyncio.sleep(0.5)
        mode = "layered" if layered else "legacy"
        return "; ".join(
            f"{counts[pool]} {pool} node(s) {mode}, at most {most[pool]} unavailable at once"
            for pool in pools
        )

    def _report(self, nodes: list[dict[str, Any]], last: dict[str, tuple[Any, ...]]) -> list[str]:
        """Print each node's changes (cordon, daemon state, image staged and current, a change applied
        without a reboot); return the unavailable ones."""
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
                ann.get(names.STAGED_IMAGE),
                ann.get(names.LAST_APPLIED_WITHOUT_REBOOT),
            )
            before = last.get(name)
            if before is not None and now != before:
                if now[0] != before[0]:
                    self.note(f"{name}: {'cordoned and drained' if now[0] else 'uncordoned'}")
                if now[1] != before[1]:
                    reason = ann.get(names.REASON)
                    self.note(f"{name}: daemon {now[1]}" + (f" ({reason})" if reason else ""))
                if now[4] != before[4] and now[4]:
                    where = "cordoned" if now[0] else "in service"
                    self.note(f"{name}: stagedImage {_short(now[4])} (downloaded while {where})")
                if now[2] != before[2]:
                    self.note(f"{name}: currentImage {_short(now[2]) if now[2] else '- (the stock OS)'}")
                if now[5] != before[5] and now[5]:
                    self.note(f"{name}: lastAppliedWithoutReboot {now[5]}")
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
            f"  {k} get machineconfigs,machineosconfigs,machineosbuilds\n"
            f"  {k} describe machineconfigpool {POOL}\n"
            f"  {k} label machineconfigpool {POOL} {names.LAYERING_ENABLED}=   # and watch: get nodes -w\n"
            f"  KUBECONFIG={cluster.kubeconfig} {sys.executable} -m mcosup status"
        )
        self.keeping = True
        await asyncio.Event().wait()  # until a signal cancels the demo (see main)


def _short(image: str | None) -> str:
    """``host/repo@sha256:0123456789ab…``: enough of a digest to tell images apart."""
    if not image:
        return "-"
    name, _, digest = image.partition("@")
    return f"{name.rsplit('/', 1)[-1]}@{digest[:19]}…" if digest else name
