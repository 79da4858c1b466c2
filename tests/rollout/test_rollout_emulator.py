"""The node controller against the emulator, the test playing each node's daemon (and the kubelet).

Every test asserts on what the cluster shows: node labels/annotations/cordons, the pool's status and
events, and the emulator's history of every object version (the maxUnavailable cap is checked at
every recorded instant, not only at the end). The PodDisruptionBudget case runs on a real control plane
as well, where the disruption controller computes the budget's status and the Eviction API judges by it.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rollout_harness import (
    FAST,
    IMG,
    NS,
    R0,
    R1,
    FakeDaemons,
    FakeKubelet,
    Supervisor,
    cap_violations,
    connect,
    create_nodes,
    ensure_namespace,
    most_unavailable,
    node_versions,
    pool_body,
    record_build,
    running,
    set_ready,
    unavailable_over_time,
)

from mcosup.control.clock import RealClock
from mcosup.kube import client as kclient
from mcosup.kube.resources import DAEMONSETS, EVENTS, MACHINECONFIGPOOLS, NODES, PDBS, PODS
from mcosup.model import names
from mcosup.runtime.settings import DrainSettings, RolloutSettings
from mcosup.sim.backends import KINDS, make_backend
from mcosup.sim.recorder import Recorder
from waiting import eventually


@pytest.fixture
async def kube(admin_kubeconfig: Path) -> AsyncIterator[kclient.Kube]:
    async with connect(admin_kubeconfig) as k:
        await ensure_namespace(k)
        yield k


async def nodes_now(kube: kclient.Kube) -> dict[str, dict[str, Any]]:
    items, _ = await kube.list(NODES)
    return {n["metadata"]["name"]: n for n in items}


def ann(node: dict[str, Any]) -> dict[str, str]:
    return node["metadata"].get("annotations") or {}


async def pool_condition(kube: kclient.Kube, type_: str) -> dict[str, Any] | None:
    pool = await kube.get(MACHINECONFIGPOOLS, "worker")
    for cond in (pool.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return None


def all_at(nodes: dict[str, dict[str, Any]], config: str, image: str | None, mode: str) -> bool:
    return all(
        ann(n).get(names.CURRENT_CONFIG) == config
        and ann(n).get(names.DESIRED_CONFIG) == config
        and ann(n).get(names.CURRENT_IMAGE) == image
        and ann(n).get(names.DESIRED_IMAGE) == image
        and n["metadata"]["labels"].get(names.DAEMON_MODE) == mode
        and ann(n).get(names.STATE) == names.STATE_DONE
        for n in nodes.values()
    )


async def rolled_out(kube: kclient.Kube, config: str, image: str | None = None, mode: str = "legacy") -> bool:
    nodes = await nodes_now(kube)
    if not all_at(nodes, config, image, mode):
        return False
    if any(names.CORDONED_BY in ann(n) for n in nodes.values()):
        return False
    pool = await kube.get(MACHINECONFIGPOOLS, "worker")
    status = pool.get("status") or {}
    if status.get("readyMachineCount") != len(nodes) or status.get("unavailableMachineCount") != 0:
        return False
    updated = await pool_condition(kube, names.UPDATED)
    return updated is not None and updated["status"] == "True"


def last_rv(emulator: Any) -> int:
    return max((rv for rv, _, _ in emulator.history), default=0)


async def test_ten_nodes_max_three_across_a_restart_and_a_node_failing_on_its_own(
    kube: kclient.Kube, emulator: Any, admin_kubeconfig: Path
) -> None:
    await kube.create(MACHINECONFIGPOOLS, pool_body(max_unavailable=3))
    await create_nodes(kube, 10)
    daemons = FakeDaemons(kube, seconds=0.3)
    async with running(daemons.run):
        async with Supervisor(admin_kubeconfig) as sup:
            await eventually(lambda: rolled_out(kube, R0), what="the pool to report Updated at R0")
            since = last_rv(emulator)
            await kube.patch(MACHINECONFIGPOOLS, "worker", {"spec": {"configuration": {"name": R1}}})

            async def count_done(n: int) -> bool:
                nodes = await nodes_now(kube)
                return sum(ann(x).get(names.CURRENT_CONFIG) == R1 for x in nodes.values()) >= n

            await eventually(lambda: count_done(3), what="three nodes updated")
            await sup.restart()  # killed mid-rollout, wherever it was

            await eventually(lambda: count_done(5), what="five nodes updated")
            # Down again; meanwhile a node not yet updated fails by itself (so no decision of the
            # controller can race with the failure: what it does next must count the failed node).
            await sup.stop()
            nodes = await nodes_now(kube)
            victim = next(n for n, x in sorted(nodes.items()) if ann(x).get(names.DESIRED_CONFIG) != R1)
            await set_ready(kube, victim, False)
            sup.start()

            async def victim_targeted() -> bool:
                return ann((await nodes_now(kube))[victim]).get(names.DESIRED_CONFIG) == R1

            await eventually(victim_targeted, what=f"the failed node {victim} to be given the target")
            await set_ready(kube, victim, True)
            await eventually(lambda: rolled_out(kube, R1), within=60, what="the rollout to finish")

    assert cap_violations(emulator.history, 3, since=since) == []
    for rv, count, _node, _failed, down in unavailable_over_time(emulator.history):
        victim_down = any(d.startswith(f"{victim}[") and "notready" in d for d in down)
        assert rv <= since or count <= (4 if victim_down else 3), (rv, down)
    assert daemons.updates == 10
    pool = await kube.get(MACHINECONFIGPOOLS, "worker")
    status = pool["status"]
    assert (status["machineCount"], status["updatedMachineCount"], status["readyMachineCount"]) == (
        10,
        10,
        10,
    )
    assert status["unavailableMachineCount"] == 0 and status["degradedMachineCount"] == 0


async def test_layered_pool_holds_while_building_then_one_patch_per_node(
    kube: kclient.Kube, emulator: Any, admin_kubeconfig: Path
) -> None:
    await kube.create(MACHINECONFIGPOOLS, pool_body(rendered=R1, layered=True, max_unavailable=2))
    pending = {
        "type": names.BUILD_PENDING,
        "status": "True",
        "reason": "Pending",
        "message": f"build of {R1}",
    }
    await kube.patch_status(MACHINECONFIGPOOLS, "worker", {"status": {"conditions": [pending]}})
    await create_nodes(kube, 4)
    since = last_rv(emulator)
    daemons = FakeDaemons(kube, seconds=0.05)
    async with running(daemons.run):
        async with Supervisor(admin_kubeconfig):

            async def waiting_for_image() -> bool:
                cond = await pool_condition(kube, names.UPDATING)
                return cond is not None and cond["reason"] == "WaitingForImage"

            await eventually(waiting_for_image, what="the pool to report it waits for its image")
            assert all(ann(n)[names.DESIRED_CONFIG] == R0 for n in (await nodes_now(kube)).values())

            # The builder records success for the current config.
            await record_build(kube, "worker", R1, IMG)
            await eventually(lambda: rolled_out(kube, R1, IMG, names.MODE_LAYERED), what="every node layered")

    for _rv, kind, node in node_versions(emulator.history):
        a = node["metadata"].get("annotations") or {}
        if kind != "DELETED" and a.get(names.DESIRED_CONFIG) == R1:
            # Never the new config without the image, never the image without the layered mode.
            assert a.get(names.DESIRED_IMAGE) == IMG, node["metadata"]["name"]
            assert node["metadata"]["labels"][names.DAEMON_MODE] == names.MODE_LAYERED
    assert most_unavailable(emulator.history, since=since) <= 2


async def test_opt_out_returns_every_node_to_legacy_without_image(
    kube: kclient.Kube, emulator: Any, admin_kubeconfig: Path
) -> None:
    await kube.create(MACHINECONFIGPOOLS, pool_body(rendered=R1, max_unavailable=2))
    await create_nodes(kube, 5, config=R1, image=IMG)
    since = last_rv(emulator)
    async with running(FakeDaemons(kube, seconds=0.05).run):
        # The controller's clock runs a day behind: an Event carries the time its controller saw the
        # thing happen, not when the Event reached the API server (behind others, in a large rollout).
        async with Supervisor(admin_kubeconfig, clock=_DayBehind()):
            await eventually(
                lambda: rolled_out(kube, R1, None, names.MODE_LEGACY), what="every node legacy again"
            )
            # No pod runs on these nodes: cordon and target are one Event (Drained only follows a drain).
            wanted = {(f"w{i:02d}", r) for i in range(5) for r in ("UpdateStarted", "Updated")}
            wanted |= {("worker", "NodesUpdating"), ("worker", "AllNodesUpdated")}

            async def all_events() -> bool:
                events, _ = await kube.list(EVENTS, namespace="default")
                seen = {(e["involvedObject"]["name"], e["reason"]) for e in events}
                # A node's uncordon is the last thing its update records: once every node's is there,
                # any other Event of the update would have been recorded already.
                uncordoned = {
                    e["involvedObject"]["name"]
                    for e in events
                    if e["reason"] == "Updated" and "uncordoned" in e["message"]
                }
                return wanted <= seen and len(uncordoned) == 5

            await eventually(all_events, what="an Event for each node started and updated")
            events, _ = await kube.list(EVENTS, namespace="default")
            updated = collections.Counter(
                e["involvedObject"]["name"] for e in events if e["reason"] == "Updated"
            )
            assert updated == {f"w{i:02d}": 1 for i in range(5)}, "one Updated Event per node and update"
            yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H")
            assert {e["firstTimestamp"][:13] for e in events if e["source"]["component"] == "mcosup"} <= {
                yesterday,
                (dt.datetime.now(dt.UTC) - dt.timedelta(days=1, hours=1)).strftime("%Y-%m-%dT%H"),
            }
    for n in (await nodes_now(kube)).values():
        assert names.DESIRED_IMAGE not in ann(n) and names.CURRENT_IMAGE not in ann(n)
    assert most_unavailable(emulator.history, since=since) == 2


class _DayBehind(RealClock):
    def wall(self) -> float:
        return time.time() - 86400


@pytest.fixture(params=KINDS)
async def either(
    request: pytest.FixtureRequest, mco_fixtures: Path, tmp_path: Path
) -> AsyncIterator[tuple[kclient.Kube, Path, Recorder]]:
    """An admin client, kubeconfig and Node recorder on the emulator, then on a real control plane (where
    the disruption controller computes PDB status and the Eviction API judges by it)."""
    backend = make_backend(
        request.param, workdir=tmp_path, namespace=NS, service="unused", webhook_port=0, startup_seconds=120
    )
    await backend.start()
    try:
        for crd in sorted((mco_fixtures / "crds").glob("*.yaml")):
            await backend.create_object(yaml.safe_load(crd.read_text()))
        admin = backend.write_kubeconfig(tmp_path / "admin.kubeconfig")
        async with connect(admin) as kube:
            await ensure_namespace(kube)
            recorder = Recorder(kube, NODES)
            async with running(recorder.run):
                await recorder.listed.wait()
                yield kube, admin, recorder
    finally:
        await backend.stop()


async def test_pdb_blocks_drain_then_deleting_it_finishes_and_admin_cordon_stays(
    either: tuple[kclient.Kube, Path, Recorder],
) -> None:
    kube, admin_kubeconfig, nodes_seen = either
    # The admin's cordon counts as unavailable and keeps one slot for good (as in the MCO).
    await kube.create(MACHINECONFIGPOOLS, pool_body(max_unavailable=2))
    await create_nodes(kube, 3, unschedulable=["w02"])  # w02: cordoned by an admin beforehand
    await ensure_namespace(kube, "app")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "app", "labels": {"app": "web"}},
        "spec": {"nodeName": "w00", "containers": [{"name": "c", "image": "web"}]},
    }
    await kube.create(PODS, pod, namespace="app")
    running_ready = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    await kube.patch_status(PODS, "web-1", {"status": running_ready}, namespace="app")
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "app"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "agent"}]},
            },
        },
    }
    ds = await kube.create(DAEMONSETS, daemonset, namespace="app")
    owner = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "name": "agent",
        "uid": ds["metadata"]["uid"],
        "controller": True,
    }
    ds_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "agent-w00",
            "namespace": "app",
            "labels": {"app": "agent"},
            "ownerReferences": [owner],
        },
        "spec": {"nodeName": "w00", "containers": [{"name": "c", "image": "agent"}]},
    }
    await kube.create(PODS, ds_pod, namespace="app")
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "app"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "web"}}},
    }
    await kube.create(PDBS, budget, namespace="app")
    since = nodes_seen.mark()

    settings = RolloutSettings(drain=DrainSettings(timeout=0.5, retry_base=0.05, retry_cap=0.2), resync=5)
    async with running(FakeDaemons(kube, seconds=0.05).run, FakeKubelet(kube).run):
        async with Supervisor(admin_kubeconfig, settings):
            await kube.patch(MACHINECONFIGPOOLS, "worker", {"spec": {"configuration": {"name": R1}}})

            async def stuck() -> bool:
                cond = await pool_condition(kube, names.DEGRADED)
                return (
                    cond is not None
                    and cond["status"] == "True"
                    and cond["reason"] == names.REASON_DRAIN_STUCK
                )

            await eventually(stuck, what="the pool to report DrainStuck")
            degraded = await pool_condition(kube, names.DEGRADED)
            assert degraded is not None
            assert "app/web-1" in degraded["message"] and "PodDisruptionBudget app/web" in degraded["message"]
            nodes = await nodes_now(kube)
            blocked = next(
                n for n, x in nodes.items() if ann(x).get(names.CORDONED_BY) == names.CORDONED_BY_VALUE
            )
            assert nodes[blocked]["spec"].get("unschedulable") is True, "a stuck node stays cordoned"

            async def stuck_event() -> bool:
                events, _ = await kube.list(EVENTS, namespace="default")
                return any(
                    e["reason"] == names.REASON_DRAIN_STUCK and "app/web" in e["message"] for e in events
                )

            await eventually(stuck_event, what="a DrainStuck Event naming the budget")

            await kube.delete(PDBS, "web", namespace="app")
            await eventually(
                lambda: rolled_out_except_cordon(kube, {"w02"}), within=30, what="the rollout to finish"
            )
            degraded = await pool_condition(kube, names.DEGRADED)
            assert degraded is not None and degraded["status"] == "False"
            events, _ = await kube.list(EVENTS, namespace="default")
            drained = {e["involvedObject"]["name"] for e in events if e["reason"] == "Drained"}
            assert blocked in drained, "a node whose pods were evicted says so in a Drained Event"

    nodes = await nodes_now(kube)
    assert nodes["w02"]["spec"].get("unschedulable") is True, "the admin's cordon is left alone"
    assert names.CORDONED_BY not in ann(nodes["w02"])
    pods, _ = await kube.list(PODS, namespace="app")
    assert [p["metadata"]["name"] for p in pods] == ["agent-w00"], "DaemonSet pods are not evicted"
    assert most_unavailable(nodes_seen.history, since=since) <= 2


async def rolled_out_except_cordon(kube: kclient.Kube, admin_cordoned: set[str]) -> bool:
    nodes = await nodes_now(kube)
    if not all_at(nodes, R1, None, names.MODE_LEGACY):
        return False
    for name, n in nodes.items():
        if names.CORDONED_BY in ann(n):
            return False
        if name not in admin_cordoned and n["spec"].get("unschedulable"):
            return False
    pool = await kube.get(MACHINECONFIGPOOLS, "worker")
    return bool(pool.get("status", {}).get("updatedMachineCount") == len(nodes))


async def test_paused_pool_changes_no_target(
    kube: kclient.Kube, emulator: Any, admin_kubeconfig: Path
) -> None:
    await kube.create(MACHINECONFIGPOOLS, pool_body(rendered=R1, paused=True, max_unavailable=2))
    await create_nodes(kube, 3)
    async with running(FakeDaemons(kube, seconds=0.05).run):
        async with Supervisor(admin_kubeconfig):

            async def reports_paused() -> bool:
                cond = await pool_condition(kube, names.UPDATING)
                return (
                    cond is not None
                    and cond["reason"] == "Paused"
                    and cond["message"].startswith("pool is paused: 0/3")
                )

            await eventually(reports_paused, what="the pool to report it is paused")
            await kube.patch(MACHINECONFIGPOOLS, "worker", {"spec": {"paused": False}})
            await eventually(lambda: rolled_out(kube, R1), what="the rollout once unpaused")
    # Before the unpause, no node version ever carried the new target or our cordon.
    unpaused_at = next(
        rv
        for rv, _, obj in emulator.history
        if obj.get("kind") == "MachineConfigPool" and not obj["spec"].get("paused")
    )
    for rv, _, node in node_versions(emulator.history):
        if rv < unpaused_at:
            a = node["metadata"].get("annotations") or {}
            assert a.get(names.DESIRED_CONFIG) != R1 and names.CORDONED_BY not in a


async def test_deleting_a_node_mid_update_frees_its_slot(
    kube: kclient.Kube, emulator: Any, admin_kubeconfig: Path
) -> None:
    await kube.create(MACHINECONFIGPOOLS, pool_body(max_unavailable=1))
    await create_nodes(kube, 3)
    stuck_daemons = FakeDaemons(kube, seconds=3600)  # the first node never finishes
    async with running(stuck_daemons.run):
        async with Supervisor(admin_kubeconfig, FAST):
            await kube.patch(MACHINECONFIGPOOLS, "worker", {"spec": {"configuration": {"name": R1}}})

            async def first_targeted() -> str | None:
                for name, n in (await nodes_now(kube)).items():
                    if ann(n).get(names.DESIRED_CONFIG) == R1:
                        return name
                return None

            async def any_targeted() -> bool:
                return await first_targeted() is not None

            await eventually(any_targeted, what="a first node to get the target")
            first = await first_targeted()
            assert first is not None
            await kube.delete(NODES, first)

            async def second_started() -> bool:
                nodes = await nodes_now(kube)
                return any(ann(n).get(names.DESIRED_CONFIG) == R1 for n in nodes.values())

            await eventually(second_started, what="another node to take the freed slot")


async def test_nodes_follow_their_pool_when_a_custom_pool_selects_them_then_goes(
    kube: kclient.Kube, emulator: Any, admin_kubeconfig: Path
) -> None:
    # A custom pool takes precedence over worker for the nodes it selects; deleting it hands them
    # back to worker. Each node must then be rolled to the target of the pool it is in now.
    rendered_infra = "rendered-infra-" + "2" * 32
    await kube.create(MACHINECONFIGPOOLS, pool_body(max_unavailable=2))
    await create_nodes(kube, 4)
    for name in ("w00", "w01"):
        await kube.patch(NODES, name, {"metadata": {"labels": {"node-role.kubernetes.io/infra": ""}}})
    infra = pool_body(max_unavailable=2, rendered=rendered_infra)
    infra["metadata"]["name"] = "infra"
    infra["spec"]["nodeSelector"] = {"matchLabels": {"node-role.kubernetes.io/infra": ""}}

    async def desired() -> dict[str, str | None]:
        return {name: ann(n).get(names.DESIRED_CONFIG) for name, n in (await nodes_now(kube)).items()}

    async with running(FakeDaemons(kube, seconds=0.05).run):
        async with Supervisor(admin_kubeconfig, FAST):
            await kube.create(MACHINECONFIGPOOLS, infra)
            want = {"w00": rendered_infra, "w01": rendered_infra, "w02": R0, "w03": R0}
            await eventually(lambda: _equal(desired(), want), what="the infra nodes on the infra target")
            await kube.patch(NODES, "w02", {"metadata": {"labels": {"node-role.kubernetes.io/infra": ""}}})
            want["w02"] = rendered_infra
            await eventually(lambda: _equal(desired(), want), what="a node joining infra by its label")
            await kube.delete(MACHINECONFIGPOOLS, "infra")
            want = dict.fromkeys(want, R0) | {"w03": R0}
            await eventually(lambda: _equal(desired(), want), what="infra's nodes back on worker's target")
            await eventually(lambda: rolled_out(kube, R0), what="the worker pool to report all four")


async def _equal(got: Any, want: dict[str, str | None]) -> bool:
    return await got == want


async def test_pausing_mid_drain_releases_the_node_and_resuming_finishes(
    kube: kclient.Kube, emulator: Any, admin_kubeconfig: Path
) -> None:
    await kube.create(MACHINECONFIGPOOLS, pool_body(max_unavailable=1))
    await create_nodes(kube, 2)
    await ensure_namespace(kube, "app")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": "app", "labels": {"app": "db"}},
        "spec": {"nodeName": "w00", "containers": [{"name": "c", "image": "db"}]},
    }
    await kube.create(PODS, pod, namespace="app")
    running_ready = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    await kube.patch_status(PODS, "db-0", {"status": running_ready}, namespace="app")
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "db", "namespace": "app"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}},
    }
    await kube.create(PDBS, budget, namespace="app")
    async with running(FakeDaemons(kube, seconds=0.05).run, FakeKubelet(kube).run):
        async with Supervisor(admin_kubeconfig):
            await kube.patch(MACHINECONFIGPOOLS, "worker", {"spec": {"configuration": {"name": R1}}})

            async def w00_cordoned_by_us() -> bool:
                return ann((await nodes_now(kube))["w00"]).get(names.CORDONED_BY) == names.CORDONED_BY_VALUE

            await eventually(w00_cordoned_by_us, what="w00 cordoned for its drain")
            await kube.patch(MACHINECONFIGPOOLS, "worker", {"spec": {"paused": True}})

            async def w00_released() -> bool:
                node = (await nodes_now(kube))["w00"]
                return names.CORDONED_BY not in ann(node) and not node["spec"].get("unschedulable")

            await eventually(w00_released, what="the pause to release w00's cordon")
            assert ann((await nodes_now(kube))["w00"])[names.DESIRED_CONFIG] == R0, "no target while paused"

            async def deferred_event() -> bool:
                events, _ = await kube.list(EVENTS, namespace="default")
                return any(
                    e["reason"] == "UpdateDeferred" and e["involvedObject"]["name"] == "w00" for e in events
                )

            await eventually(deferred_event, what="an UpdateDeferred Event for w00")

            await kube.delete(PDBS, "db", namespace="app")
            await kube.patch(MACHINECONFIGPOOLS, "worker", {"spec": {"paused": False}})
            await eventually(lambda: rolled_out(kube, R1), what="the rollout once resumed")


async def test_a_node_change_no_plan_reads_replans_nothing_from_the_first_event_on(
    kube: kclient.Kube, admin_kubeconfig: Path
) -> None:
    """A change of a node that nothing a plan reads depends on (an admin's label, here) plans no pool,
    starting with the first event after the supervisor starts: at thousands of nodes, a plan of the
    whole pool per such event is what kept the supervisor from keeping up with its watch."""
    await kube.create(MACHINECONFIGPOOLS, pool_body())
    names_ = await create_nodes(kube, 3)
    async with Supervisor(admin_kubeconfig) as sup:
        await eventually(lambda: rolled_out(kube, R0), what="the pool to report every node updated")
        assert sup.rollout is not None
        rollout = sup.rollout

        def cached_pool_updated() -> bool:
            pool = rollout.pools.get("worker") or {}
            conds = (pool.get("status") or {}).get("conditions") or []
            return any(c["type"] == names.UPDATED and c["status"] == "True" for c in conds)

        # The echo of the controller's own status write has come back (and enqueued what it enqueues).
        await eventually(cached_pool_updated, what="the supervisor's cache to show the pool Updated")
        enqueued: list[str] = []
        enqueue = rollout.controller.enqueue

        def counting(key: str) -> None:
            enqueued.append(key)
            enqueue(key)

        rollout.controller.enqueue = counting  # type: ignore[method-assign]

        def cached_label(value: str) -> bool:
            nodes = (rollout.nodes.get(n) for n in names_)
            return all(
                n is not None and n["metadata"]["labels"].get("example.com/rack") == value for n in nodes
            )

        for name in names_:
            await kube.patch(NODES, name, {"metadata": {"labels": {"example.com/rack": "r1"}}})
        # Notifications are synchronous with the cache's update: once it shows every label, each
        # event has enqueued whatever it was going to.
        await eventually(lambda: cached_label("r1"), what="the supervisor's cache to show the labels")
        assert enqueued == []

        # A change a plan reads does plan the pool.
        await set_ready(kube, names_[0], False)
        await eventually(lambda: "worker" in enqueued, what="a NotReady node to enqueue its pool")
