"""Conformance probes: each asks the emulator and the real kube-apiserver the same things, and compares.

Every probe returns what a client saw (codes, masked bodies, events, kubectl output). A probe whose
answers are equal is asserted equal; a difference that is not fixed in the emulator is pinned by a
test named in the known-differences table of ``mcosup/sim/README.md``, which asserts both answers, so
it is noticed the day either side changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from emu_http import Api, webhook_server
from emu_sides import CRDS, GROUP, Side, crd_group, diff, events, mask, mco_crd, unique

from mcosup.sim.apiserver import Emulator
from mcosup.sim.controlplane import ADMIN_USER, ControlPlane

Probe = Callable[[Side], Awaitable[Any]]


@dataclass
class Sides:
    emulator: Side
    real: Side
    ns: str
    emulator_server: Emulator

    async def run(self, probe: Probe) -> tuple[Any, Any]:
        """The probe's answer from the emulator, then from the real server."""
        return await probe(self.emulator), await probe(self.real)

    async def same(self, probe: Probe) -> Any:
        """Run the probe on both; the answers must be equal. Returns the answer."""
        emu, real = await self.run(probe)
        assert emu == real, "emulator (-) and real (+) differ:\n" + diff(emu, real)
        return real


@pytest.fixture
async def sides(control_plane: ControlPlane, tmp_path: Path) -> AsyncIterator[Sides]:
    ns = unique()
    async with Emulator() as emu, aiohttp.ClientSession() as session:
        # The same user name on both, so what webhooks and errors say about the caller can be compared.
        emu_api = Api(
            session,
            emu.url,
            ssl.create_default_context(cafile=str(emu.ca_path)),
            emu.add_token(ADMIN_USER, ["system:masters"]),
        )
        real_api = Api(
            session,
            control_plane.url,
            ssl.create_default_context(cadata=control_plane.ca_pem.decode()),
            control_plane.admin_token,
        )
        kubectl = control_plane.binary("kubectl")
        both = Sides(
            Side(
                "emulator",
                emu_api,
                emu.write_kubeconfig(tmp_path / "emulator.kubeconfig", user=ADMIN_USER),
                kubectl,
                real=False,
            ),
            Side(
                "real",
                real_api,
                control_plane.write_kubeconfig(tmp_path / "real.kubeconfig"),
                kubectl,
                real=True,
            ),
            ns,
            emu,
        )
        for side in (both.emulator, both.real):
            await side.namespace(ns)
        try:
            yield both
        finally:
            # The real server is shared by the whole session: leave nothing of this test behind.
            for path in reversed(both.real.cleanup):
                await real_api.call("DELETE", path)
            await real_api.call("DELETE", f"/api/v1/namespaces/{ns}")


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


# --------------------------------------------------------------------------------- objects and 409


async def test_create_get_and_already_exists(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        return [
            await side.answer("POST", cms, cm("a", k="v")),
            await side.answer("GET", f"{cms}/a"),
            await side.answer("POST", cms, cm("a")),
            await side.answer("GET", f"{cms}/missing"),
            await side.answer("POST", cms, {**cm("b"), "metadata": {"name": "b", "resourceVersion": "7"}}),
        ]

    await sides.same(probe)


async def test_update_conflicts_on_a_stale_resource_version(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        created = await side.ok("POST", cms, cm("a", k="1"))
        rv = created["metadata"]["resourceVersion"]
        first = await side.ok("PUT", f"{cms}/a", {**created, "data": {"k": "2"}})
        stale = await side.answer("PUT", f"{cms}/a", {**created, "data": {"k": "3"}})
        # No resourceVersion: an unconditional update, allowed for ConfigMaps.
        unconditional = await side.answer("PUT", f"{cms}/a", cm("a", k="4"))
        current = await side.ok("GET", f"{cms}/a")
        same = await side.ok("PUT", f"{cms}/a", current)
        return {
            "first_moved": first["metadata"]["resourceVersion"] != rv,
            "stale": stale,
            "unconditional": unconditional,
            "no_op_keeps_rv": same["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"],
            "missing": await side.answer("PUT", f"{cms}/nope", cm("nope")),
            "name_mismatch": await side.answer("PUT", f"{cms}/a", cm("b")),
        }

    await sides.same(probe)


async def test_generate_name(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}
        status, created, _ = await side.api.call("POST", cms, body)
        name = created["metadata"]["name"]
        return {
            "create": (status, mask(created)),
            "suffix_alphabet": set(name[4:]) <= set("bcdfghjklmnpqrstvwxz2456789"),
            "get": await side.answer("GET", f"{cms}/{name}"),
            "no_name": await side.answer(
                "POST", cms, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}
            ),
        }

    await sides.same(probe)


async def test_status_error_bodies(sides: Sides) -> None:
    ns = sides.ns

    async def probe(side: Side) -> Any:
        cms = f"/api/v1/namespaces/{ns}/configmaps"
        return {
            "unknown_group": await side.answer("GET", "/apis/nothing.example.com/v1/things"),
            "unknown_resource": await side.answer("GET", "/api/v1/namespaces/default/nothings"),
            "missing_namespace": await side.answer(
                "POST", "/api/v1/namespaces/absent-ns-x/configmaps", cm("a")
            ),
            "wrong_kind": await side.answer(
                "POST", cms, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
            ),
            "bad_name": await side.answer("POST", cms, cm("Not_Valid")),
            "namespace_mismatch": await side.answer(
                "POST", cms, {**cm("a"), "metadata": {"name": "a", "namespace": "other"}}
            ),
            "unsupported_field": await side.answer("GET", f"{cms}?fieldSelector=data.k%3Dv"),
            "delete_missing": await side.answer("DELETE", f"{cms}/none"),
            # (the selector matches nothing, should a server ever allow it)
            "delete_all_namespaces": await side.answer(
                "DELETE", "/api/v1/namespaces", params={"labelSelector": "conformance-matches=nothing"}
            ),
            "delete_uid_precondition": await side.answer(
                "DELETE", f"{cms}/none", {"preconditions": {"uid": "x"}}
            ),
            "unknown_patch_type": await side.answer(
                "PATCH", f"{cms}/none", {}, content_type="application/x-unknown"
            ),
        }

    await sides.same(probe)


async def test_dry_run(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        made = await side.answer("POST", cms + "?dryRun=All", cm("d", k="1"))
        after = await side.answer("GET", f"{cms}/d")
        await side.ok("POST", cms, cm("d", k="1"))
        patched = await side.answer(
            "PATCH", f"{cms}/d?dryRun=All", {"data": {"k": "2"}}, content_type="application/merge-patch+json"
        )
        deleted = await side.answer("DELETE", f"{cms}/d?dryRun=All")
        return [
            made,
            after,
            patched,
            deleted,
            await side.answer("GET", f"{cms}/d"),
            await side.answer("POST", cms + "?dryRun=Some", cm("e")),
        ]

    await sides.same(probe)


# --------------------------------------------------------------------------------- selectors


async def test_label_selectors(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"
    selectors = [
        "app=web",
        "app==web",
        "app!=web",
        "app in (web,db)",
        "app notin (web)",
        "app",
        "!app",
        "app=web,tier=front",
        "tier",
        "tier!=front",
        "",
        "app in ()",
    ]

    async def probe(side: Side) -> Any:
        for name, labels in [
            ("a", {"app": "web", "tier": "front"}),
            ("b", {"app": "web"}),
            ("c", {"app": "db"}),
            ("d", {}),
        ]:
            await side.ok("POST", cms, cm(name, labels))
        answers = {}
        for selector in selectors:
            status, out, _ = await side.api.call("GET", cms, params={"labelSelector": selector})
            names = (
                [i["metadata"]["name"] for i in out["items"] if i["metadata"]["name"] != "kube-root-ca.crt"]
                if status == 200
                else mask(out)
            )
            answers[selector] = (status, names)
        return answers

    await sides.same(probe)


async def test_field_selectors(sides: Sides) -> None:
    ns = sides.ns
    pods = f"/api/v1/namespaces/{ns}/pods"
    selectors = [
        "metadata.name=a",
        "metadata.name!=a",
        f"metadata.namespace={ns}",
        "spec.nodeName=n1",
        "spec.nodeName=",
        "status.phase=Running",
        "status.phase!=Running",
        "spec.nodeName=n1,metadata.name=b",
        "spec.restartPolicy=Always",
        "spec.schedulerName=default-scheduler",
        "status.podIP=",
        "metadata.labels=x",
        "spec.containers=x",
    ]

    async def probe(side: Side) -> Any:
        for name, node in [("a", "n1"), ("b", "n1"), ("c", None)]:
            spec: dict[str, Any] = {"containers": [{"name": "c", "image": "i"}]}
            if node:
                spec["nodeName"] = node
            await side.ok(
                "POST", pods, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
            )
        await side.ok(
            "PATCH",
            f"{pods}/a/status",
            {"status": {"phase": "Running"}},
            content_type="application/merge-patch+json",
        )
        answers = {}
        for selector in selectors:
            status, out, _ = await side.api.call("GET", pods, params={"fieldSelector": selector})
            answers[selector] = (
                (status, [i["metadata"]["name"] for i in out["items"]])
                if status == 200
                else (status, mask(out))
            )
        return answers

    await sides.same(probe)


# --------------------------------------------------------------------------------- patches


async def test_merge_json_and_strategic_patches_on_a_config_map(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def patch(side: Side, body: Any, kind: str) -> Any:
        content_type = f"application/{'strategic-merge' if kind == 'strategic' else kind}-patch+json"
        return await side.answer("PATCH", f"{cms}/p", body, content_type=content_type)

    async def probe(side: Side) -> Any:
        await side.ok("POST", cms, cm("p", {"a": "1"}, x="1", y="2"))
        return [
            await patch(side, {"data": {"x": None, "z": "3"}, "metadata": {"labels": {"b": "2"}}}, "merge"),
            await patch(side, [{"op": "replace", "path": "/data/y", "value": "22"}], "json"),
            await patch(side, [{"op": "test", "path": "/data/y", "value": "nope"}], "json"),
            await patch(side, [{"op": "remove", "path": "/data/absent"}], "json"),
            await patch(
                side,
                [
                    {"op": "add", "path": "/data/w", "value": "4"},
                    {"op": "move", "from": "/data/w", "path": "/data/v"},
                ],
                "json",
            ),
            await patch(
                side,
                {"data": {"y": None}, "metadata": {"labels": {"$patch": "replace", "c": "3"}}},
                "strategic",
            ),
            await patch(side, {"not": "a list"}, "json"),
            await patch(side, [{"op": "bogus", "path": "/data"}], "json"),
            await patch(side, ["x"], "merge"),
            await patch(side, {"metadata": {"name": "renamed"}}, "merge"),
            await side.answer(
                "PATCH", f"{cms}/absent", {"data": {}}, content_type="application/merge-patch+json"
            ),
        ]

    await sides.same(probe)


async def test_strategic_merge_patch_on_pod_containers(sides: Sides) -> None:
    pods = f"/api/v1/namespaces/{sides.ns}/pods"

    async def probe(side: Side) -> Any:
        spec = {"containers": [{"name": "a", "image": "i:1"}, {"name": "b", "image": "j:1"}]}
        await side.ok(
            "POST", pods, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
        )
        status, out, _ = await side.api.call(
            "PATCH",
            f"{pods}/p",
            {"metadata": {"labels": {"l": "1"}}, "spec": {"containers": [{"name": "b", "image": "j:2"}]}},
            content_type="application/strategic-merge-patch+json",
        )
        merged = [(c["name"], c["image"]) for c in out["spec"]["containers"]]
        status2, out2, _ = await side.api.call(
            "PATCH",
            f"{pods}/p",
            {"spec": {"containers": [{"name": "b", "image": "j:3"}]}},
            content_type="application/merge-patch+json",
        )
        return {
            "strategic": (status, merged, out["metadata"]["labels"]),
            # A merge patch replaces the whole list, and a Pod's containers cannot be added or removed.
            "merge": (status2, mask(out2)),
        }

    await sides.same(probe)


# --------------------------------------------------------------------------------- finalizers, GC


async def test_finalizers_and_deletion_timestamp(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        await side.ok("POST", cms, {**cm("f"), "metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
        deleting = await side.answer("DELETE", f"{cms}/f")
        again = await side.answer("DELETE", f"{cms}/f")
        add = await side.answer(
            "PATCH",
            f"{cms}/f",
            {"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}},
            content_type="application/merge-patch+json",
        )
        change_data = await side.answer(
            "PATCH", f"{cms}/f", {"data": {"k": "v"}}, content_type="application/merge-patch+json"
        )
        clear_ts = await side.answer(
            "PATCH",
            f"{cms}/f",
            {"metadata": {"deletionTimestamp": None}},
            content_type="application/merge-patch+json",
        )
        release = await side.answer(
            "PATCH",
            f"{cms}/f",
            {"metadata": {"finalizers": None}},
            content_type="application/merge-patch+json",
        )
        return [deleting, again, add, change_data, clear_ts, release, await side.answer("GET", f"{cms}/f")]

    await sides.same(probe)


def owned_cm(
    name: str, owner: dict[str, Any], *, block: bool | None = None, finalizers: list[str] | None = None
) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    if block is not None:
        ref["blockOwnerDeletion"] = block
    body = cm(name)
    body["metadata"]["ownerReferences"] = [ref]
    if finalizers:
        body["metadata"]["finalizers"] = finalizers
    return body


async def gone(side: Side, path: str) -> None:
    async def check() -> bool:
        status, _, _ = await side.api.call("GET", path)
        return status == 404

    await side.until(check, f"{path} deleted")


async def test_garbage_collection_background(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        owner = await side.ok("POST", cms, cm("owner"))
        other = await side.ok("POST", cms, cm("other"))
        child = await side.ok("POST", cms, owned_cm("child", owner))
        await side.ok("POST", cms, owned_cm("grandchild", child))
        shared = owned_cm("shared", owner)
        shared["metadata"]["ownerReferences"] += owned_cm("x", other)["metadata"]["ownerReferences"]
        await side.ok("POST", cms, shared)
        deleted = await side.answer("DELETE", f"{cms}/owner", {"propagationPolicy": "Background"})
        await gone(side, f"{cms}/child")
        await gone(side, f"{cms}/grandchild")

        async def unshared() -> bool:
            got = await side.ok("GET", f"{cms}/shared")
            return len(got["metadata"]["ownerReferences"]) == 1

        await side.until(unshared, "the deleted owner's reference dropped from shared")
        return {"delete": deleted, "shared": await side.answer("GET", f"{cms}/shared")}

    await sides.same(probe)


async def test_garbage_collection_foreground(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        owner = await side.ok("POST", cms, cm("owner"))
        await side.ok("POST", cms, owned_cm("child", owner, block=True, finalizers=["example.com/hold"]))
        deleting = await side.answer("DELETE", f"{cms}/owner", {"propagationPolicy": "Foreground"})

        async def child_deleting() -> bool:
            got = await side.ok("GET", f"{cms}/child")
            return "deletionTimestamp" in got["metadata"]

        await side.until(child_deleting, "the dependent marked for deletion")
        waiting_owner = await side.answer("GET", f"{cms}/owner")
        await side.ok(
            "PATCH",
            f"{cms}/child",
            {"metadata": {"finalizers": None}},
            content_type="application/merge-patch+json",
        )
        await gone(side, f"{cms}/child")
        await gone(side, f"{cms}/owner")
        return {"delete": deleting, "owner_while_waiting": waiting_owner}

    await sides.same(probe)


async def test_garbage_collection_orphan(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        owner = await side.ok("POST", cms, cm("owner"))
        await side.ok("POST", cms, owned_cm("kept", owner))
        deleted = await side.answer("DELETE", f"{cms}/owner", {"propagationPolicy": "Orphan"})
        await gone(side, f"{cms}/owner")

        async def orphaned() -> bool:
            got = await side.ok("GET", f"{cms}/kept")
            return "ownerReferences" not in got["metadata"]

        await side.until(orphaned, "the dependent orphaned")
        return {"delete": deleted, "kept": await side.answer("GET", f"{cms}/kept")}

    await sides.same(probe)


# --------------------------------------------------------------------------------- watches


async def watch_events(side: Side, path: str, count: int, **params: str) -> list[dict[str, Any]]:
    """The first ``count`` events of a watch, periodic bookmarks left out.

    When a server sends a periodic BOOKMARK is its own choice (the API promises none at any interval),
    so only the initial-events-end bookmark, which is promised, is kept.
    """
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(60), contextlib.aclosing(side.api.watch(path, **params)) as stream:
        async for event in stream:
            annotations = (event["object"].get("metadata") or {}).get("annotations") or {}
            if event["type"] == "BOOKMARK" and "k8s.io/initial-events-end" not in annotations:
                continue
            seen.append(event)
            if len(seen) == count:
                break
    return seen


async def test_watch_resumes_from_a_resource_version(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        a = await side.ok("POST", cms, cm("a", {"w": "1"}))
        await side.ok("PATCH", f"{cms}/a", {"data": {"k": "1"}}, content_type="application/merge-patch+json")
        await side.ok("POST", cms, cm("b", {"w": "1"}))
        await side.ok("DELETE", f"{cms}/a")
        rv = a["metadata"]["resourceVersion"]
        resumed = await watch_events(side, cms, 3, resourceVersion=rv, labelSelector="w=1")
        return {
            "resumed": events(resumed),
            "rv_order": [int(e["object"]["metadata"]["resourceVersion"]) for e in resumed]
            == sorted(int(e["object"]["metadata"]["resourceVersion"]) for e in resumed),
            "bad_rv": await side.answer("GET", f"{cms}?watch=true&resourceVersion=abc"),
        }

    await sides.same(probe)


async def test_watch_from_now_sends_current_state_then_changes(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        for name in ("b", "a"):
            await side.ok("POST", cms, cm(name, {"w": "1"}))
        stream = side.api.watch(cms, labelSelector="w=1")
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(60), contextlib.aclosing(stream):
            async for event in stream:
                if event["type"] == "BOOKMARK":
                    continue
                got.append(event)
                if len(got) == 2:  # the synthetic ADDED events are in: change something
                    await side.ok("POST", cms, cm("c", {"w": "1"}))
                if len(got) == 3:
                    break
        return events(got)

    await sides.same(probe)


async def test_watch_with_a_selector_sees_objects_enter_and_leave(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        start = await side.ok("POST", cms, cm("marker"))
        await side.ok("POST", cms, cm("a", {"team": "x"}))
        for team in ("y", "x"):
            await side.ok(
                "PATCH",
                f"{cms}/a",
                {"metadata": {"labels": {"team": team}}},
                content_type="application/merge-patch+json",
            )
        await side.ok("DELETE", f"{cms}/a")
        rv = start["metadata"]["resourceVersion"]
        return events(await watch_events(side, cms, 4, resourceVersion=rv, labelSelector="team=x"))

    await sides.same(probe)


async def test_send_initial_events_ends_with_a_marked_bookmark(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        for name in ("b", "a"):
            await side.ok("POST", cms, cm(name, {"w": "1"}))
        got = await watch_events(
            side,
            cms,
            3,
            labelSelector="w=1",
            sendInitialEvents="true",
            resourceVersionMatch="NotOlderThan",
            allowWatchBookmarks="true",
        )
        return events(got)

    await sides.same(probe)


async def test_known_difference_the_watch_window(sides: Sides, control_plane: ControlPlane) -> None:
    """Forgetting history: the emulator's window (``faults.compact()`` or ``history_window``) answers
    410 Expired; compacting the real server's etcd does not, its watch cache still serves the events."""
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side, compact: Callable[[int], Awaitable[None]]) -> Any:
        first = await side.ok("POST", cms, cm("a", {"w": "1"}))
        latest = await side.ok("POST", cms, cm("b", {"w": "1"}))
        await compact(int(latest["metadata"]["resourceVersion"]))
        got = await watch_events(
            side, cms, 1, resourceVersion=first["metadata"]["resourceVersion"], labelSelector="w=1"
        )
        event = got[0]
        if event["type"] == "ERROR":
            status = event["object"]
            return ("ERROR", status["code"], status["reason"], status["message"].split(":")[0])
        return (event["type"], event["object"]["metadata"]["name"])

    async def compact_emulator(rv: int) -> None:
        sides.emulator_server.faults.compact()

    async def compact_etcd(rv: int) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{control_plane.etcd_url}/v3/kv/compaction", json={"revision": str(rv), "physical": True}
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()

    emulator = await probe(sides.emulator, compact_emulator)
    real = await probe(sides.real, compact_etcd)
    assert emulator == ("ERROR", 410, "Expired", "too old resource version")
    assert real == ("ADDED", "b")


# --------------------------------------------------------------------------------- custom resources


async def test_custom_resource_status_subresource_validation_and_pruning(sides: Sides) -> None:
    group = crd_group()
    mcps = f"/apis/{group}/v1/machineconfigpools"

    async def probe(side: Side) -> Any:
        await side.install_crds(group, "machineconfigpools")
        side.cleanup.append(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/machineconfigpools.{group}"
        )
        pool = {
            "apiVersion": f"{group}/v1",
            "kind": "MachineConfigPool",
            "metadata": {"name": "worker"},
            "spec": {"machineConfigSelector": {"matchLabels": {"role": "worker"}}, "paused": False},
            "status": {"machineCount": 3},
        }
        status, created, headers = await side.api.call(
            "POST", mcps, {**pool, "spec": {**pool["spec"], "bogus": 1}}
        )
        answers: dict[str, Any] = {
            "create": (status, mask(created)),
            "create_warning": headers.get("Warning"),
        }
        put = {**created, "spec": {**created["spec"], "paused": True}, "status": {"machineCount": 5}}
        answers["put_main"] = await side.answer("PUT", f"{mcps}/worker", put)
        answers["patch_status"] = await side.answer(
            "PATCH",
            f"{mcps}/worker/status",
            {"spec": {"paused": False}, "status": {"machineCount": 4}},
            content_type="application/merge-patch+json",
        )
        answers["invalid"] = await side.answer(
            "POST",
            mcps,
            {**pool, "metadata": {"name": "bad"}, "spec": {"paused": "yes"}},
        )
        answers["strategic"] = await side.answer(
            "PATCH",
            f"{mcps}/worker",
            {"spec": {"paused": False}},
            content_type="application/strategic-merge-patch+json",
        )
        answers["unknown_patch_type"] = await side.answer(
            "PATCH", f"{mcps}/worker", {}, content_type="application/x-unknown"
        )
        answers["field_selector"] = await side.answer("GET", f"{mcps}?fieldSelector=spec.paused%3Dtrue")
        answers["list"] = await side.answer("GET", mcps)
        answers["delete"] = await side.answer("DELETE", f"{mcps}/worker")
        return answers

    await sides.same(probe)


# --------------------------------------------------------------------------------- namespaces


async def test_namespace_create_and_terminating(sides: Sides) -> None:
    name = unique("conf-ns")

    async def probe(side: Side) -> Any:
        side.cleanup.append(f"/api/v1/namespaces/{name}")
        created = await side.answer(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        held = {**cm("held"), "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
        await side.ok("POST", f"/api/v1/namespaces/{name}/configmaps", held)
        deleting = await side.answer("DELETE", f"/api/v1/namespaces/{name}")
        refused = await side.answer("POST", f"/api/v1/namespaces/{name}/configmaps", cm("late"))

        async def held_is_deleting() -> bool:
            got = await side.ok("GET", f"/api/v1/namespaces/{name}/configmaps/held")
            return "deletionTimestamp" in got["metadata"]

        await side.until(held_is_deleting, "the namespace's contents marked for deletion")
        await side.ok(
            "PATCH",
            f"/api/v1/namespaces/{name}/configmaps/held",
            {"metadata": {"finalizers": None}},
            content_type="application/merge-patch+json",
        )
        await gone(side, f"/api/v1/namespaces/{name}")
        return {"created": created, "deleting": deleting, "refused": refused}

    await sides.same(probe)


# --------------------------------------------------------------------------------- eviction


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }


def eviction(name: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}


async def test_eviction_under_a_pod_disruption_budget(sides: Sides) -> None:
    ns = sides.ns
    pods = f"/api/v1/namespaces/{ns}/pods"
    pdbs = f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"

    async def budget_seen(side: Side, generation: int) -> None:
        """The real budget's status comes from the disruption controller, a moment after each change."""
        if not side.real:
            return

        async def observed() -> bool:
            got = await side.ok("GET", f"{pdbs}/budget")
            return (got.get("status") or {}).get("observedGeneration") == generation

        await side.until(observed, f"the disruption controller to observe generation {generation}")

    async def probe(side: Side) -> Any:
        for name in ("a", "b", "pending"):
            await side.ok("POST", pods, pod(name, {"app": "web"}))
        await side.ok("POST", pods, pod("free", {"app": "other"}))
        for name in ("a", "b", "free"):
            ready = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
            await side.ok(
                "PATCH", f"{pods}/{name}/status", ready, content_type="application/merge-patch+json"
            )
        budget = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "budget"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
        }
        answers: dict[str, Any] = {"pdb": await side.answer("POST", pdbs, budget)}
        await budget_seen(side, 1)
        answers["blocked"] = await side.answer("POST", f"{pods}/a/eviction", eviction("a"))
        answers["pending_goes"] = await side.answer("POST", f"{pods}/pending/eviction", eviction("pending"))
        answers["no_budget_goes"] = await side.answer("POST", f"{pods}/free/eviction", eviction("free"))
        answers["missing"] = await side.answer("POST", f"{pods}/nope/eviction", eviction("nope"))
        answers["name_mismatch"] = await side.answer("POST", f"{pods}/a/eviction", eviction("b"))
        answers["dry_run"] = await side.answer(
            "POST", f"{pods}/a/eviction", {**eviction("a"), "deleteOptions": {"dryRun": ["All"]}}
        )
        await side.ok(
            "PATCH",
            f"{pdbs}/budget",
            {"spec": {"minAvailable": 1}},
            content_type="application/merge-patch+json",
        )
        await budget_seen(side, 2)
        answers["allowed"] = await side.answer("POST", f"{pods}/a/eviction", eviction("a"))
        answers["evicted"] = await side.answer("GET", f"{pods}/a")
        answers["next_blocked"] = await side.answer("POST", f"{pods}/b/eviction", eviction("b"))
        return answers

    await sides.same(probe)


# --------------------------------------------------------------------------------- admission webhooks


@dataclass
class Hook:
    """A validating webhook on loopback HTTPS: records each AdmissionReview; denies objects labelled deny."""

    url: str = ""
    ca_bundle: str = ""
    reviews: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        req = review["request"]
        obj = req.get("object") or req.get("oldObject") or {}
        deny = ((obj.get("metadata") or {}).get("labels") or {}).get("deny") == "yes"
        response: dict[str, Any] = {"uid": req["uid"], "allowed": not deny}
        if deny:
            response["status"] = {"code": 403, "message": "objects labelled deny are refused"}
            response["warnings"] = ["think again"]
        return web.json_response(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    state = Hook()
    async with webhook_server(state.handle) as (port, ca_bundle):
        state.url, state.ca_bundle = f"https://127.0.0.1:{port}/validate", ca_bundle
        yield state


async def test_the_admission_review_a_webhook_receives(sides: Sides, hook: Hook) -> None:
    ns = sides.ns
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    name = unique("conf-hook")
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{name}.mcosup.test",
                "clientConfig": {"url": hook.url, "caBundle": hook.ca_bundle},
                "rules": [
                    {
                        "operations": ["CREATE", "UPDATE", "DELETE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["configmaps", "pods/eviction"],
                    }
                ],
                # Only this test's namespace: the real server is shared by the whole session.
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "failurePolicy": "Fail",
            }
        ],
    }

    async def probe(side: Side) -> Any:
        path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
        side.cleanup.append(f"{path}/{name}")
        created = await side.answer("POST", path, config)

        async def in_force() -> bool:
            # The real server loads webhook configurations from its informer, a moment after the write.
            status, _, _ = await side.api.call(
                "POST",
                cms,
                {**cm(unique("ready")), "metadata": {"name": unique("ready"), "labels": {"deny": "yes"}}},
            )
            return status == 403

        await side.until(in_force, "the webhook configuration to be in force")
        hook.reviews.clear()
        await side.ok("POST", cms + "?dryRun=All", cm("a", k="1"))
        await side.ok("POST", cms, cm("a", k="1"))
        await side.ok("PATCH", f"{cms}/a", {"data": {"k": "2"}}, content_type="application/merge-patch+json")
        await side.ok("DELETE", f"{cms}/a")
        status, denied, headers = await side.api.call("POST", cms, cm("d", {"deny": "yes"}))
        reviews = []
        for review in hook.reviews:
            request = dict(review["request"])
            # The two servers know the same user by name and groups; its uid is each server's own.
            request["userInfo"] = {k: v for k, v in request["userInfo"].items() if k != "uid"}
            reviews.append({**review, "request": mask(request)})
        hook.reviews.clear()
        return {
            "config": created,
            "reviews": reviews,
            "denied": (status, mask(denied), headers.get("Warning")),
        }

    answer = await sides.same(probe)
    requests = [r["request"] for r in answer["reviews"]]
    assert [(r["operation"], r["dryRun"], r["name"]) for r in requests] == [
        ("CREATE", True, "a"),
        ("CREATE", False, "a"),
        ("UPDATE", False, "a"),
        ("DELETE", False, "a"),
        ("CREATE", False, "d"),
    ]
    assert answer["denied"][0] == 403


async def test_a_webhook_that_cannot_be_reached(sides: Sides, hook: Hook) -> None:
    ns = sides.ns
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    name = unique("conf-down")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    down = f"https://127.0.0.1:{listener.getsockname()[1]}/validate"

    def hook_config(url: str, policy: str, suffix: str) -> dict[str, Any]:
        return {
            "name": f"{suffix}.{name}.mcosup.test",
            "clientConfig": {"url": url, "caBundle": hook.ca_bundle},
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["configmaps"],
                }
            ],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "objectSelector": {"matchLabels": {"webhook": suffix}},
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": policy,
            "timeoutSeconds": 5,
        }

    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            hook_config(hook.url, "Fail", "up"),
            hook_config(down, "Fail", "fail"),
            hook_config(down, "Ignore", "ignore"),
        ],
    }

    async def probe(side: Side) -> Any:
        path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
        side.cleanup.append(f"{path}/{name}")
        await side.ok("POST", path, config)

        async def in_force() -> bool:
            status, _, _ = await side.api.call(
                "POST", cms, cm(unique("ready"), {"webhook": "up", "deny": "yes"})
            )
            return status == 403

        await side.until(in_force, "the webhook configuration to be in force")
        return {
            "fail": await side.answer("POST", cms, cm("f", {"webhook": "fail"})),
            "ignore": (await side.answer("POST", cms, cm("i", {"webhook": "ignore"})))[0],
        }

    try:
        answer = await sides.same(probe)
    finally:
        listener.close()
    assert (answer["fail"][0], answer["ignore"]) == (500, 201)


# --------------------------------------------------------------------------------- CRDs themselves


async def test_custom_resource_definition_objects(sides: Sides) -> None:
    group = crd_group()
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

    async def probe(side: Side) -> Any:
        crd = mco_crd("machineconfigs", group)
        side.cleanup.append(f"{crds}/machineconfigs.{group}")
        created = await side.answer("POST", crds, crd)
        await side.install_crds(group)  # waits for Established
        return {
            "created": created,
            "established": await side.answer("GET", f"{crds}/machineconfigs.{group}"),
            "bad_name": await side.answer("POST", crds, {**crd, "metadata": {"name": "wrong"}}),
        }

    await sides.same(probe)


# openshift/api's CRD test vectors (CEL rules included) are replayed on both servers, against our own
# MachineOSConfig/MachineOSBuild CRDs, by tests/sim/test_os_crd_vectors.py.


# --------------------------------------------------------------------------------- kubectl

AGE = re.compile(r"\b\d+(s|m|h|d)(\d+(s|m|h))?\b")


KLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ .*\n", re.MULTILINE)


def text(answer: tuple[int, str, str]) -> tuple[int, str, str]:
    """kubectl's (code, stdout, stderr) with ages masked and client-go's own log lines left out.

    Those lines report the client's transport, which differs (HTTP/1.1 against the emulator, HTTP/2
    against the real server: test_known_difference_http2): cancelling a watch at kubectl's timeout
    sometimes logs "Failed to watch" over HTTP/1.1.
    """
    code, out, err = answer
    return code, AGE.sub("<age>", out), AGE.sub("<age>", KLOG.sub("", err))


async def kubectl_json(side: Side, *args: str) -> Any:
    code, out, err = await side.kubectl(*args, "-o", "json")
    assert code == 0, f"{side.name}: kubectl {' '.join(args)}: {err}"
    return mask(json.loads(out))


async def test_kubectl_apply_label_annotate_patch_get_describe_delete(sides: Sides, tmp_path: Path) -> None:
    ns = sides.ns

    async def probe(side: Side) -> Any:
        manifest = tmp_path / f"{side.name}.yaml"
        docs = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": ns},
                "data": {"mode": "a"},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "creds", "namespace": ns},
                "stringData": {"k": "v"},
            },
        ]
        manifest.write_text(yaml.safe_dump_all(docs))
        answers: list[Any] = [text(await side.kubectl("apply", "-f", str(manifest)))]
        manifest.write_text(manifest.read_text().replace("mode: a", "mode: b"))
        answers.append(text(await side.kubectl("apply", "-f", str(manifest))))
        answers.append(await kubectl_json(side, "get", "cm", "settings", "-n", ns))
        for args in (
            ("label", "-n", ns, "cm", "settings", "tier=config"),
            ("annotate", "-n", ns, "cm", "settings", "owner=me"),
            ("label", "-n", ns, "cm", "settings", "tier=other"),
            ("label", "-n", ns, "cm", "settings", "tier=other", "--overwrite"),
            (
                "patch",
                "-n",
                ns,
                "cm",
                "settings",
                "--type=json",
                "-p",
                '[{"op":"replace","path":"/data/mode","value":"c"}]',
            ),
            ("patch", "-n", ns, "cm", "settings", "--type=merge", "-p", '{"data":{"extra":"1"}}'),
            ("patch", "-n", ns, "cm", "settings", "-p", '{"data":{"extra":"2"}}'),
            (
                "patch",
                "-n",
                ns,
                "cm",
                "settings",
                "--type=json",
                "-p",
                '[{"op":"test","path":"/data/mode","value":"x"}]',
            ),
            ("get", "cm", "-n", ns, "-l", "tier=other"),
            ("get", "cm", "-n", ns, "settings", "-o", "wide", "--show-labels"),
            ("get", "secret", "-n", ns),
            ("describe", "-n", ns, "cm", "settings"),
            ("get", "cm", "-n", ns, "settings", "-o", "jsonpath={.data}"),
            ("delete", "-n", ns, "cm", "settings"),
            ("get", "-n", ns, "cm", "settings"),
            ("delete", "-n", ns, "cm", "settings"),
            ("get", "nothings"),
        ):
            answers.append(text(await side.kubectl(*args)))
        return answers

    await sides.same(probe)


async def test_kubectl_imperative_creates(sides: Sides) -> None:
    ns = sides.ns

    async def probe(side: Side) -> Any:
        answers: list[Any] = []
        for args in (
            ("create", "configmap", "c", "--from-literal=a=b", "--from-literal=empty=", "-n", ns),
            ("create", "secret", "generic", "s", "--from-literal=password=hunter2", "-n", ns),
            ("create", "serviceaccount", "robot", "-n", ns),
            ("create", "configmap", "c", "--from-literal=a=b", "-n", ns),
        ):
            answers.append(text(await side.kubectl(*args)))
        answers.append(await kubectl_json(side, "get", "cm", "c", "-n", ns))
        answers.append(await kubectl_json(side, "get", "secret", "s", "-n", ns))
        return answers

    await sides.same(probe)


async def test_kubectl_with_the_mco_custom_resources(sides: Sides, tmp_path: Path) -> None:
    group = crd_group()

    async def probe(side: Side) -> Any:
        await side.install_crds(group, "machineconfigpools", "machineconfigs")
        for plural in ("machineconfigpools", "machineconfigs"):
            side.cleanup.append(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{group}")
        objects = tmp_path / f"{side.name}-objects"
        objects.mkdir()
        for path in sorted((CRDS.parent / "objects").glob("*.yaml")):
            (objects / path.name).write_text(path.read_text().replace(GROUP, group))
        bad = tmp_path / f"{side.name}-bad.yaml"
        bad.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": f"{group}/v1",
                    "kind": "MachineConfigPool",
                    "metadata": {"name": "bad"},
                    "spec": {"paused": "yes"},
                }
            )
        )
        mcp = f"machineconfigpools.{group}"
        status = {
            "configuration": {"name": "rendered-worker-1"},
            "machineCount": 3,
            "conditions": [{"type": "Updated", "status": "True"}, {"type": "Degraded", "status": "False"}],
        }
        answers: list[Any] = [text(await side.kubectl("apply", "-f", str(objects)))]
        await side.ok(
            "PATCH",
            f"/apis/{group}/v1/machineconfigpools/worker/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )
        for args in (
            ("patch", mcp, "worker", "--type=merge", "-p", '{"spec":{"paused":true}}'),
            ("get", mcp),
            ("get", mcp, "-o", "wide"),
            ("get", f"machineconfigs.{group}"),
            ("apply", "-f", str(bad)),
            ("patch", mcp, "worker", "--type=strategic", "-p", '{"spec":{"paused":false}}'),
            ("patch", mcp, "worker", "-p", '{"spec":{"paused":false}}'),
            ("apply", "-f", str(objects)),
            ("delete", "-f", str(objects)),
        ):
            answers.append(text(await side.kubectl(*args)))
        return answers

    await sides.same(probe)


async def test_kubectl_get_nodes_prints_the_servers_columns(sides: Sides) -> None:
    name = unique("conf-node")

    async def probe(side: Side) -> Any:
        side.cleanup.append(f"/api/v1/nodes/{name}")
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"node-role.kubernetes.io/worker": "", "conformance": name}},
            "spec": {"unschedulable": True},
        }
        await side.ok("POST", "/api/v1/nodes", node)
        ready = {
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": {"kubeletVersion": "v1.36.3"},
            }
        }
        await side.ok(
            "PATCH", f"/api/v1/nodes/{name}/status", ready, content_type="application/merge-patch+json"
        )
        return [
            text(await side.kubectl("get", "nodes", "-l", f"conformance={name}")),
            text(await side.kubectl("uncordon", name)),
            text(await side.kubectl("get", "node", name)),
            text(await side.kubectl("cordon", name)),
        ]

    await sides.same(probe)


async def test_kubectl_wait(sides: Sides) -> None:
    ns = sides.ns

    async def probe(side: Side) -> Any:
        held = pod("p", {"app": "w"})
        held["metadata"]["finalizers"] = ["example.com/hold"]
        await side.ok("POST", f"/api/v1/namespaces/{ns}/pods", held)
        waiter = asyncio.create_task(
            side.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/p", "--timeout=60s")
        )
        ready = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
        await side.ok(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/p/status",
            ready,
            content_type="application/merge-patch+json",
        )
        answers = [text(await waiter)]
        answers.append(text(await side.kubectl("delete", "-n", ns, "pod", "p", "--wait=false")))
        # The finalizer holds the pod: waiting for its deletion can only run out of time.
        answers.append(text(await side.kubectl("wait", "-n", ns, "--for=delete", "pod/p", "--timeout=2s")))
        await side.ok(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/p",
            {"metadata": {"finalizers": None}},
            content_type="application/merge-patch+json",
        )
        await gone(side, f"/api/v1/namespaces/{ns}/pods/p")
        answers.append(text(await side.kubectl("wait", "-n", ns, "--for=delete", "pod/p", "--timeout=10s")))
        return answers

    await sides.same(probe)


# --------------------------------------------------------------------------------- more object semantics


def in_record(answer: tuple[int, Any]) -> tuple[int, Any]:
    """A precondition failure with the stored object's uid or resourceVersion in its message masked."""
    status, body = answer
    message = re.sub(r"in record \([^)]*\)", "in record (<masked>)", body["message"])
    return status, {**body, "message": message}


async def test_delete_preconditions_delete_collection_and_pages(sides: Sides) -> None:
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        for name in ("a", "b", "c", "d"):
            await side.ok("POST", cms, cm(name, {"page": "yes"} if name != "d" else {"page": "no"}))
        first = await side.ok("GET", cms, params={"labelSelector": "page=yes", "limit": "2"})
        token = first["metadata"].get("continue", "")
        rest = await side.ok(
            "GET", cms, params={"labelSelector": "page=yes", "limit": "2", "continue": token}
        )
        current = await side.ok("GET", f"{cms}/a")
        meta = current["metadata"]
        return {
            "pages": [
                [i["metadata"]["name"] for i in first["items"]],
                first["metadata"].get("remainingItemCount"),
                [i["metadata"]["name"] for i in rest["items"]],
                rest["metadata"].get("continue", ""),
            ],
            "uid_precondition": in_record(
                await side.answer(
                    "DELETE", f"{cms}/a", {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}
                )
            ),
            "rv_precondition": in_record(
                await side.answer("DELETE", f"{cms}/a", {"preconditions": {"resourceVersion": "1"}})
            ),
            "bad_propagation": await side.answer("DELETE", f"{cms}/a", {"propagationPolicy": "Sideways"}),
            "both_preconditions": await side.answer(
                "DELETE",
                f"{cms}/a",
                {"preconditions": {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}},
            ),
            "collection": await side.answer("DELETE", cms + "?labelSelector=page%3Dyes"),
            "left": sorted(
                i["metadata"]["name"]
                for i in (await side.ok("GET", cms))["items"]
                if i["metadata"]["name"] != "kube-root-ca.crt"
            ),
        }

    await sides.same(probe)


async def test_a_bound_pod_waits_for_its_kubelet(sides: Sides) -> None:
    pods = f"/api/v1/namespaces/{sides.ns}/pods"

    async def probe(side: Side) -> Any:
        bound = pod("bound", {"app": "web"})
        bound["spec"]["nodeName"] = "nowhere"
        await side.ok("POST", pods, bound)
        await side.ok("POST", pods, pod("unbound", {"app": "web"}))
        # Only the metadata: the spec differs by what admission plugins add (a pinned difference).
        status, deleting = await side.answer("DELETE", f"{pods}/bound")
        return {
            "bound": (status, deleting["metadata"]),
            "still_there": (await side.answer("GET", f"{pods}/bound"))[0],
            "again_with_grace_0": (await side.answer("DELETE", f"{pods}/bound?gracePeriodSeconds=0"))[0],
            "then": (await side.answer("GET", f"{pods}/bound"))[0],
            "unbound": (await side.answer("DELETE", f"{pods}/unbound"))[0],
            "unbound_then": (await side.answer("GET", f"{pods}/unbound"))[0],
        }

    answer = await sides.same(probe)
    assert answer["bound"][1]["deletionGracePeriodSeconds"] == 30


async def test_discovery_of_what_the_emulator_serves(sides: Sides) -> None:
    """Each resource the emulator lists in discovery is described as the real server describes it."""
    keys = (
        "name",
        "singularName",
        "namespaced",
        "kind",
        "verbs",
        "shortNames",
        "categories",
        "group",
        "version",
    )

    async def listing(side: Side, path: str) -> dict[str, Any]:
        listed = await side.ok("GET", path)
        return {r["name"]: {k: r.get(k) for k in keys} for r in listed["resources"]}

    groups = await sides.emulator.ok("GET", "/apis")
    paths = ["/api/v1"] + [
        f"/apis/{v['groupVersion']}"
        for g in groups["groups"]
        for v in g["versions"]
        if not g["name"].endswith(".openshift.io")
    ]
    emulator: dict[str, Any] = {}
    real: dict[str, Any] = {}
    for path in paths:
        served = await listing(sides.emulator, path)
        known = await listing(sides.real, path)
        emulator[path] = served
        real[path] = {name: known.get(name) for name in served}
    assert emulator == real, diff(emulator, real)
    assert len(paths) > 5


async def test_leases_events_and_nodes_as_controllers_write_them(sides: Sides) -> None:
    ns = sides.ns
    node_name = unique("conf-node")

    async def probe(side: Side) -> Any:
        side.cleanup.append(f"/api/v1/nodes/{node_name}")
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "leader"},
            "spec": {
                "holderIdentity": "a",
                "leaseDurationSeconds": 15,
                "acquireTime": "2026-01-01T00:00:00.000000Z",
                "renewTime": "2026-01-01T00:00:01.000000Z",
                "leaseTransitions": 0,
            },
        }
        created = await side.ok("POST", leases, lease)
        taken = {**created, "spec": {**created["spec"], "holderIdentity": "b", "leaseTransitions": 1}}
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "Node", "name": node_name, "apiVersion": "v1"},
            "reason": "Rebooted",
            "message": "the node rebooted",
            "type": "Normal",
            "source": {"component": "mcosup"},
            "count": 1,
        }
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}}
        return {
            "lease_created": mask(created),
            "lease_taken": await side.answer("PUT", f"{leases}/leader", taken),
            "lease_stale": await side.answer("PUT", f"{leases}/leader", taken),
            "lease_bad_time": await side.answer(
                "POST",
                leases,
                {**lease, "metadata": {"name": "bad"}, "spec": {"renewTime": "2026-01-01T00:00:01Z"}},
            ),
            "event": await side.answer("POST", f"/api/v1/namespaces/{ns}/events", event),
            "node": await side.answer("POST", "/api/v1/nodes", node),
            "node_status": await side.answer(
                "PATCH",
                f"/api/v1/nodes/{node_name}/status",
                {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                content_type="application/merge-patch+json",
            ),
            "node_cordon": await side.answer(
                "PATCH",
                f"/api/v1/nodes/{node_name}",
                {"spec": {"unschedulable": True}, "metadata": {"annotations": {"a": "b"}}},
                content_type="application/strategic-merge-patch+json",
            ),
        }

    await sides.same(probe)


async def test_kubectl_get_pods(sides: Sides) -> None:
    ns = sides.ns

    async def probe(side: Side) -> Any:
        bound = pod("p", {"app": "web"})
        bound["spec"]["nodeName"] = "n1"
        await side.ok("POST", f"/api/v1/namespaces/{ns}/pods", bound)
        running = {
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.7",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": "c",
                        "image": "i",
                        "imageID": "",
                        "ready": True,
                        "restartCount": 2,
                        "started": True,
                        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                    }
                ],
            }
        }
        await side.ok(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/p/status",
            running,
            content_type="application/merge-patch+json",
        )
        return [
            text(await side.kubectl("get", "pods", "-n", ns)),
            text(await side.kubectl("get", "pods", "-n", ns, "-o", "wide")),
            text(
                await side.kubectl(
                    "get", "pods", "-n", ns, "--field-selector", "spec.nodeName=n1", "-o", "name"
                )
            ),
        ]

    await sides.same(probe)


async def test_secrets_and_dangling_owner_references(sides: Sides) -> None:
    ns = sides.ns
    secrets = f"/api/v1/namespaces/{ns}/secrets"
    cms = f"/api/v1/namespaces/{ns}/configmaps"

    async def probe(side: Side) -> Any:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s"},
            "data": {"a": "YQ=="},
            "stringData": {"b": "bee", "a": "overrides"},
        }
        orphan = cm("orphan")
        orphan["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "ghost",
                "uid": "00000000-0000-0000-0000-00000000dead",
            }
        ]
        answers = {
            "merged": await side.answer("POST", secrets, secret),
            "bad_base64": await side.answer(
                "POST",
                secrets,
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}, "data": {"a": "!"}},
            ),
            "bad_key": await side.answer(
                "POST",
                secrets,
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, "data": {"a/b": "YQ=="}},
            ),
            "tls_without_keys": await side.answer(
                "POST",
                secrets,
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "t"},
                    "type": "kubernetes.io/tls",
                },
            ),
            "dangling": await side.answer("POST", cms, orphan),
        }
        # The garbage collector removes an object whose owners do not exist (the real one a moment later).
        await gone(side, f"{cms}/orphan")
        return answers

    await sides.same(probe)


async def test_workload_objects_as_the_install_creates_them(sides: Sides) -> None:
    ns = sides.ns
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "quay.io/mcosup/mcosup:latest"}]},
    }
    selector = {"matchLabels": {"app": "x"}}

    async def probe(side: Side) -> Any:
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"replicas": 2, "selector": selector, "template": template},
        }
        daemonset = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "ds"},
            "spec": {"selector": selector, "template": template},
        }
        return {
            "deployment": await side.answer("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", deployment),
            "daemonset": await side.answer("POST", f"/apis/apps/v1/namespaces/{ns}/daemonsets", daemonset),
        }

    await sides.same(probe)


# --------------------------------------------------------------------------------- known differences


def differing_paths(a: Any, b: Any, path: str = "") -> list[str]:
    """The paths where two JSON values differ (a key on one side only counts as different)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            p for k in sorted(set(a) | set(b)) for p in differing_paths(a.get(k), b.get(k), f"{path}.{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            p
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for p in differing_paths(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [path]


async def test_known_difference_pod_service_account_and_its_token(sides: Sides) -> None:
    """The real server's ServiceAccount admission plugin gives every Pod the namespace's `default`
    ServiceAccount and mounts its token (a projected volume); DefaultTolerationSeconds adds two
    tolerations. The emulator runs neither plugin; every other default of a Pod is the same."""
    pods = f"/api/v1/namespaces/{sides.ns}/pods"

    async def probe(side: Side) -> Any:
        return await side.answer("POST", pods, pod("p", {"app": "web"}))

    emulator, real = await sides.run(probe)
    assert (emulator[0], real[0]) == (201, 201)
    assert differing_paths(emulator[1], real[1]) == [
        ".spec.containers[0].volumeMounts",
        ".spec.serviceAccount",
        ".spec.serviceAccountName",
        ".spec.tolerations",
        ".spec.volumes",
    ]
    spec = real[1]["spec"]
    assert (spec["serviceAccountName"], spec["volumes"][0]["name"].startswith("kube-api-access-")) == (
        "default",
        True,
    )


async def test_known_difference_no_authorization(sides: Sides, control_plane: ControlPlane) -> None:
    """The emulator maps tokens to users but authorizes everything; the real server enforces RBAC."""
    ns = sides.ns
    user = f"system:serviceaccount:{ns}:default"
    token = await asyncio.to_thread(control_plane.service_account_token, ns, "default", seconds=600)
    as_real = sides.real.api.as_token(token)
    as_emulator = sides.emulator.api.as_token(
        sides.emulator_server.add_token(user, ["system:serviceaccounts", f"system:serviceaccounts:{ns}"])
    )
    path = f"/api/v1/namespaces/{ns}/configmaps"
    real_status, real_body, _ = await as_real.call("GET", path)
    emulator_status, _, _ = await as_emulator.call("GET", path)
    assert (real_status, real_body["reason"], real_body["message"]) == (
        403,
        "Forbidden",
        f'configmaps is forbidden: User "{user}" cannot list resource "configmaps" in API group "" '
        f'in the namespace "{ns}"',
    )
    assert emulator_status == 200


async def test_known_difference_no_namespace_controllers(sides: Sides) -> None:
    """A real namespace soon holds the `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap
    (kube-controller-manager's service-account and root-CA publisher controllers); the emulator runs
    no namespace controllers (of kube-controller-manager's only the garbage collector and the Job
    controller), so a new namespace stays empty."""
    ns = sides.ns  # the fixture waited for `default` on the real server

    async def probe(side: Side) -> Any:
        found = []
        for resource in ("serviceaccounts", "configmaps"):
            listed = await side.ok("GET", f"/api/v1/namespaces/{ns}/{resource}")
            found.append(sorted(i["metadata"]["name"] for i in listed["items"]))
        return found

    async def published(side: Side = sides.real) -> bool:
        return (await probe(side))[1] == ["kube-root-ca.crt"]

    await sides.real.until(published, "the root CA published into the namespace")
    assert await probe(sides.emulator) == [[], []]
    assert await probe(sides.real) == [["default"], ["kube-root-ca.crt"]]


async def test_known_difference_error_wording_of_malformed_input(sides: Sides) -> None:
    """A malformed label selector, a body that is not JSON and a forged continue token are 400
    BadRequest on both, but the message is the parser's own: Go's lexer and decoders word it
    differently."""
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        selector = await side.answer("GET", cms, params={"labelSelector": "a===b"})
        body = await side.answer("POST", cms, raw=b"{not json")
        token = await side.answer("GET", cms, params={"continue": "not-a-token"})
        return [(status, out["reason"], out["message"]) for status, out in (selector, body, token)]

    emulator, real = await sides.run(probe)
    assert real == [
        (400, "BadRequest", "unable to parse requirement: found '=', expected: identifier"),
        (
            400,
            "BadRequest",
            "the object provided is unrecognized (must be of type ConfigMap): couldn't get version/kind; "
            "json parse error: invalid character 'n' looking for beginning of object key string ({not json)",
        ),
        (
            400,
            "BadRequest",
            "invalid continue token: continue key is not valid: "
            "invalid character '\\u009e' looking for beginning of value",
        ),
    ]
    assert emulator == [
        (400, "BadRequest", "unable to parse requirement: invalid label selector 'a===b'"),
        (
            400,
            "BadRequest",
            "error decoding the request body as JSON: unexpected character, expected a string key: "
            "line 1 column 2 (char 1)",
        ),
        (400, "BadRequest", "invalid continue token: continue key is not valid: not-a-token"),
    ]


async def test_known_difference_server_side_apply(sides: Sides) -> None:
    """Server-side apply is not modelled: the emulator refuses the apply patch type with 415."""
    cms = f"/api/v1/namespaces/{sides.ns}/configmaps"

    async def probe(side: Side) -> Any:
        status, out, _ = await side.api.call(
            "PATCH",
            f"{cms}/applied?fieldManager=conformance",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"k": "v"}},
            content_type="application/apply-patch+yaml",
        )
        return status, out.get("reason"), out.get("data")

    emulator, real = await sides.run(probe)
    assert real == (201, None, {"k": "v"})
    assert emulator == (415, "UnsupportedMediaType", None)


async def test_known_difference_pdb_status_comes_from_a_controller(sides: Sides) -> None:
    """The real disruption controller keeps a budget's status current; the emulator, which runs no
    controllers, computes it only when an eviction asks (evictions give the same answers: see
    test_eviction_under_a_pod_disruption_budget)."""
    ns = sides.ns
    pods = f"/api/v1/namespaces/{ns}/pods"
    pdbs = f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"

    async def probe(side: Side) -> Any:
        await side.ok("POST", pods, pod("a", {"app": "web"}))
        ready = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
        await side.ok("PATCH", f"{pods}/a/status", ready, content_type="application/merge-patch+json")
        budget = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "budget"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        }
        await side.ok("POST", pdbs, budget)
        if side.real:

            async def observed() -> bool:
                got = await side.ok("GET", f"{pdbs}/budget")
                return (got.get("status") or {}).get("observedGeneration") == 1

            await side.until(observed, "the disruption controller to observe the budget")
        status = (await side.ok("GET", f"{pdbs}/budget"))["status"]
        return {
            k: status.get(k)
            for k in ("currentHealthy", "desiredHealthy", "expectedPods", "observedGeneration")
        }

    emulator, real = await sides.run(probe)
    assert real == {"currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1, "observedGeneration": 1}
    assert emulator == {
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "expectedPods": 0,
        "observedGeneration": None,
    }


async def test_known_difference_webhook_match_conditions(sides: Sides, hook: Hook) -> None:
    """The real server evaluates a webhook's matchConditions (CEL) and skips the call when one is
    false; the emulator does not evaluate them and calls the webhook."""
    ns = sides.ns
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    name = unique("conf-match")
    rule = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}
    webhook = {
        "name": f"{name}.mcosup.test",
        "clientConfig": {"url": hook.url, "caBundle": hook.ca_bundle},
        "rules": [rule],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
    }
    never = {
        **webhook,
        "name": f"never.{name}.mcosup.test",
        "matchConditions": [{"name": "never", "expression": "false"}],
    }
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook, never],
    }

    async def probe(side: Side) -> Any:
        path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
        side.cleanup.append(f"{path}/{name}")
        await side.ok("POST", path, config)

        async def in_force() -> bool:
            status, _, _ = await side.api.call("POST", cms, cm(unique("ready"), {"deny": "yes"}))
            return status == 403

        await side.until(in_force, "the webhook configuration to be in force")
        hook.reviews.clear()
        await side.ok("POST", cms, cm("a"))
        called = sorted(r["request"]["name"] for r in hook.reviews)
        hook.reviews.clear()
        return called

    emulator, real = await sides.run(probe)
    assert real == ["a"]
    assert emulator == ["a", "a"]


async def test_known_difference_http2(sides: Sides, control_plane: ControlPlane) -> None:
    """The real server negotiates HTTP/2 (ALPN h2); the emulator's aiohttp server speaks HTTP/1.1."""

    async def negotiated(url: str, ctx: ssl.SSLContext) -> str | None:
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        host, port = url.removeprefix("https://").split(":")
        _, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
        try:
            return writer.get_extra_info("ssl_object").selected_alpn_protocol()  # type: ignore[no-any-return]
        finally:
            writer.transport.abort()  # the HTTP/2 server has already sent its settings: no orderly close

    real = await negotiated(
        control_plane.url, ssl.create_default_context(cadata=control_plane.ca_pem.decode())
    )
    server = sides.emulator_server
    emulator = await negotiated(server.url, ssl.create_default_context(cafile=str(server.ca_path)))
    assert (emulator, real) == (None, "h2")
