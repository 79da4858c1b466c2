"""Node disruption policy end to end (contract 12.2): the node controller and real daemons on fake hosts,
against the emulator, in a layered pool and in a legacy one.

A ``registries.conf`` change covered by ``Reload crio.service`` reaches every node with no reboot, no
cordon and the reload run once per node; a kernel-argument change in the same pool still drains and
reboots every node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rollout_harness import (
    FAST,
    NS,
    ROLE,
    connect,
    ensure_namespace,
    pool_body,
    record_build,
    running,
    set_ready,
)

from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.cache import Informer
from mcosup.kube.resources import (
    CONFIGMAPS,
    EVENTS,
    MACHINECONFIGPOOLS,
    MACHINECONFIGS,
    MACHINEOSBUILDS,
    MACHINEOSCONFIGS,
    NODES,
    PODS,
)
from mcosup.model import names
from mcosup.sim import fakehost
from mcosup.sim.fakehost import FakeHost
from mcosup.sim.objects import machineconfig
from mcosup.supervisor.nodedisruption import DrainCheck
from mcosup.supervisor.rollout import NodeRollout
from waiting import eventually

REGISTRIES = "/etc/containers/registries.conf"
R_A, R_B, R_C = (f"rendered-worker-{c * 32}" for c in "abc")
IMAGES = {r: f"registry.local/os/worker@sha256:{c * 64}" for r, c in ((R_A, "a"), (R_B, "b"), (R_C, "c"))}
POLICY = """
files:
  - path: /etc/containers/registries.conf
    actions: [{type: Reload, reload: {serviceName: crio.service}}]
"""
NODES_N = 2


def rendered(name: str, registries: str, kargs: list[str]) -> dict[str, Any]:
    return machineconfig(name, None, {REGISTRIES: (registries, 0o644)}, kernel_arguments=kargs)


async def supervisor(kube: kclient.Kube) -> None:
    """The node controller with the drain check, as the supervisor's composition root wires it."""
    pools, nodes, pods = Informer(kube, MACHINECONFIGPOOLS), Informer(kube, NODES), Informer(kube, PODS)
    moscs, mosbs = Informer(kube, MACHINEOSCONFIGS), Informer(kube, MACHINEOSBUILDS)
    mcs, cms = Informer(kube, MACHINECONFIGS), Informer(kube, CONFIGMAPS, namespace=NS)
    rollout = NodeRollout(
        kube,
        pools=pools,
        nodes=nodes,
        pods=pods,
        machineosconfigs=moscs,
        machineosbuilds=mosbs,
        settings=FAST,
    )
    check = DrainCheck(
        machineconfigs=mcs,
        configmaps=cms,
        namespace=NS,
        on_invalid=lambda cm, msg: rollout.event(cm, CONFIGMAPS, "InvalidNodeDisruptionPolicy", msg),
    )
    rollout.skip_drain = check.skip_drain
    async with asyncio.TaskGroup() as tg:
        for informer in (pools, nodes, pods, moscs, mosbs, mcs, cms):
            tg.create_task(informer.run())
        for informer in (mcs, cms):
            await informer.listed.wait()
        tg.create_task(rollout.run())


@contextlib.asynccontextmanager
async def daemons(emulator: Any, tmp_path: Path, names_: list[str]) -> AsyncIterator[dict[str, FakeHost]]:
    hosts = {n: FakeHost(tmp_path / n) for n in names_}
    async with contextlib.AsyncExitStack() as stack:
        for n, host in hosts.items():
            kubeconfig = emulator.write_kubeconfig_for_service_account(
                tmp_path / f"{n}.kubeconfig", NS, names.DAEMON_SA, node_name=n
            )
            await stack.enter_async_context(fakehost.daemon(host, n, kubeconfig=kubeconfig))
        yield hosts


async def set_config(kube: kclient.Kube, config: str, *, layered: bool) -> None:
    """What render and (layered) the builder do: the pool's rendered config, then its image."""
    await kube.patch(MACHINECONFIGPOOLS, "worker", {"spec": {"configuration": {"name": config}}})
    if layered:
        await record_build(kube, "worker", config, IMAGES[config])


async def all_current(kube: kclient.Kube, config: str, image: str | None) -> bool:
    items, _ = await kube.list(NODES)
    for node in items:
        ann = node["metadata"].get("annotations") or {}
        if (ann.get(names.CURRENT_CONFIG), ann.get(names.CURRENT_IMAGE), ann.get(names.STATE)) != (
            config,
            image,
            names.STATE_DONE,
        ) or node["spec"].get("unschedulable"):
            return False
    return len(items) == NODES_N


def cordoned_since(emulator: Any, since: int) -> set[str]:
    return {
        obj["metadata"]["name"]
        for rv, kind, obj in emulator.history
        if rv > since and obj.get("kind") == "Node" and (obj.get("spec") or {}).get("unschedulable")
    }


def last_rv(emulator: Any) -> int:
    return max((rv for rv, _, _ in emulator.history), default=0)


async def set_policy(kube: kclient.Kube, text: str) -> None:
    body = {"metadata": {"name": names.NODE_DISRUPTION_POLICY_CM}, "data": {"policy.yaml": text}}
    try:
        await kube.create(CONFIGMAPS, body, namespace=NS)
    except errors.AlreadyExists:
        await kube.replace(CONFIGMAPS, names.NODE_DISRUPTION_POLICY_CM, body, namespace=NS)


@contextlib.asynccontextmanager
async def pool_on_r_a(
    kube: kclient.Kube, emulator: Any, tmp_path: Path, *, layered: bool
) -> AsyncIterator[dict[str, FakeHost]]:
    """A pool of NODES_N nodes with real daemons and the node controller, rolled out to R_A."""
    await ensure_namespace(kube)
    for mc in (
        rendered(R_A, "[registries]\n", ["nosmt"]),
        rendered(R_B, "[registries]\nmirror = true\n", ["nosmt"]),
        rendered(R_C, "[registries]\nmirror = true\n", ["nosmt", "quiet"]),
    ):
        await kube.create(MACHINECONFIGS, mc)
    await kube.create(MACHINECONFIGPOOLS, pool_body(rendered=R_A, layered=layered))
    if layered:
        await set_config(kube, R_A, layered=True)
    node_names = [f"w{i}" for i in range(NODES_N)]
    for n in node_names:
        await kube.create(NODES, {"metadata": {"name": n, "labels": {ROLE: ""}}})
        await set_ready(kube, n, True)
    async with daemons(emulator, tmp_path, node_names) as hosts, running(lambda: supervisor(kube)):
        image = IMAGES[R_A] if layered else None
        await eventually(lambda: all_current(kube, R_A, image), within=90, what=f"every node on {R_A}")
        assert {n: h.reboots() for n, h in hosts.items()} == dict.fromkeys(node_names, 1)
        yield hosts


@pytest.mark.parametrize("layered", [True, False], ids=["layered", "legacy"])
async def test_covered_change_reloads_without_reboot_and_kargs_still_reboot(
    emulator: Any, admin_kubeconfig: Path, tmp_path: Path, layered: bool
) -> None:
    image = IMAGES.get if layered else (lambda _config: None)
    async with (
        connect(admin_kubeconfig) as kube,
        pool_on_r_a(kube, emulator, tmp_path, layered=layered) as hosts,
    ):
        await set_policy(kube, POLICY)
        since = last_rv(emulator)
        await set_config(kube, R_B, layered=layered)
        await eventually(lambda: all_current(kube, R_B, image(R_B)), within=90, what=f"every node on {R_B}")
        for n, host in hosts.items():
            assert host.reboots() == 1, n
            assert host.service_actions() == ["reload crio.service"], n
            assert host.read(REGISTRIES) == b"[registries]\nmirror = true\n", n
            # Layered: the new image waits for the next boot.
            assert host.staged_image() == image(R_B), n
            node = await kube.get(NODES, n)
            assert node["metadata"]["annotations"][names.LAST_APPLIED_WITHOUT_REBOOT] == (
                f"{R_B}: Reload crio.service"
            )
        assert cordoned_since(emulator, since) == set()
        events, _ = await kube.list(EVENTS, namespace="default")
        assert any("without cordon or drain" in e.get("message", "") for e in events)

        since = last_rv(emulator)
        await set_config(kube, R_C, layered=layered)
        await eventually(lambda: all_current(kube, R_C, image(R_C)), within=90, what=f"every node on {R_C}")
        for n, host in hosts.items():
            assert host.reboots() == 2, n
            assert host.kargs()[-1] == "quiet", n
            assert host.booted_image() == (image(R_C) or fakehost.STOCK_IMAGE), n
            assert host.service_actions() == ["reload crio.service"], n
        assert cordoned_since(emulator, since) == set(hosts)


async def test_drain_action_drains_without_reboot_and_an_invalid_policy_reboots(
    emulator: Any, admin_kubeconfig: Path, tmp_path: Path
) -> None:
    async with (
        connect(admin_kubeconfig) as kube,
        pool_on_r_a(kube, emulator, tmp_path, layered=False) as hosts,
    ):
        restart = "{type: Restart, restart: {serviceName: crio.service}}"
        await set_policy(kube, f"files: [{{path: {REGISTRIES}, actions: [{{type: Drain}}, {restart}]}}]")
        since = last_rv(emulator)
        await set_config(kube, R_B, layered=False)
        await eventually(lambda: all_current(kube, R_B, None), within=90, what=f"every node on {R_B}")
        assert cordoned_since(emulator, since) == set(hosts)
        for n, host in hosts.items():
            assert (host.reboots(), host.service_actions()) == (1, ["restart crio.service"]), n

        await set_policy(kube, f"files: [{{path: {REGISTRIES}, actions: [{{type: Reload}}]}}]")
        await set_config(kube, R_A, layered=False)
        await eventually(lambda: all_current(kube, R_A, None), within=90, what=f"every node back on {R_A}")
        for n, host in hosts.items():
            assert (host.reboots(), host.service_actions()) == (2, ["restart crio.service"]), n

        async def warned() -> bool:
            events, _ = await kube.list(EVENTS, namespace=NS)
            return any(
                e.get("reason") == "InvalidNodeDisruptionPolicy"
                and e["involvedObject"]["name"] == names.NODE_DISRUPTION_POLICY_CM
                and "files[0].actions[0].reload.serviceName is required" in e.get("message", "")
                for e in events
            )

        await eventually(warned, what="a Warning Event on the invalid policy naming the field")
