"""Object semantics over raw HTTPS: what a client of a real kube-apiserver sees, code and body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from emu_http import Api, cm

from mcosup.sim.apiserver import Emulator

CMS = "/api/v1/namespaces/default/configmaps"
MCPS = "/apis/machineconfiguration.openshift.io/v1/machineconfigpools"
MCS = "/apis/machineconfiguration.openshift.io/v1/machineconfigs"


def mcp(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfigPool",
        "metadata": {"name": name},
        "spec": {"machineConfigSelector": {"matchLabels": {"role": name}}, **spec},
    }


async def test_tokens_map_to_users_and_unknown_tokens_get_401(api: Api, emulator: Emulator) -> None:
    status, body, _ = await api.as_token("nope").call("GET", "/api/v1/namespaces")
    assert status == 401
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Unauthorized", 401)
    status, _, _ = await api.as_token("").call("GET", "/version")
    assert status == 401
    assert (await api.get("/api/v1/namespaces"))[0] == 200
    assert emulator.requests[-1].user == "admin"


async def test_discovery(api: Api) -> None:
    status, version = await api.get("/version")
    assert status == 200 and version["major"] == "1"
    _, core = await api.get("/api")
    assert core["kind"] == "APIVersions" and core["versions"] == ["v1"]
    _, groups = await api.get("/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {"apps", "policy", "coordination.k8s.io", "machineconfiguration.openshift.io"} <= names
    _, v1 = await api.get("/api/v1")
    resources = {r["name"]: r for r in v1["resources"]}
    assert (
        resources["pods/eviction"]["kind"] == "Eviction" and resources["pods/eviction"]["group"] == "policy"
    )
    assert resources["nodes"]["namespaced"] is False and "watch" in resources["nodes"]["verbs"]
    _, mco = await api.get("/apis/machineconfiguration.openshift.io/v1")
    mco_resources = {r["name"]: r for r in mco["resources"]}
    assert mco_resources["machineconfigpools"]["shortNames"] == ["mcp"]
    assert "machineconfigpools/status" in mco_resources
    assert "machineconfigs/status" not in mco_resources
    # A group nobody serves is a plain-text 404 from the server's mux, as on a real server.
    assert (await api.get("/apis/nothing.example.com/v1/things")) == (404, "404 page not found\n")


async def test_create_sets_server_metadata_and_namespace_from_the_url(api: Api) -> None:
    status, body = await api.post(CMS, {**cm("a"), "metadata": {"name": "a", "resourceVersion": "99"}})
    assert (status, body["message"], "reason" in body) == (
        500,
        "resourceVersion should not be set on objects to be created",
        False,
    )
    status, created = await api.post(CMS, cm("a", k="v"))
    assert status == 201
    meta = created["metadata"]
    assert meta["namespace"] == "default" and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert "generation" not in meta  # ConfigMaps do not track generation
    status, again = await api.post(CMS, cm("a"))
    assert (status, again["reason"], again["message"]) == (
        409,
        "AlreadyExists",
        'configmaps "a" already exists',
    )
    assert again["details"] == {"name": "a", "kind": "configmaps"}


async def test_generate_name(api: Api) -> None:
    status, created = await api.post(CMS, {"metadata": {"generateName": "job-"}, "data": {}})
    assert status == 201
    name = created["metadata"]["name"]
    assert name.startswith("job-") and len(name) == len("job-") + 5
    assert (await api.get(f"{CMS}/{name}"))[0] == 200


async def test_create_errors(api: Api) -> None:
    status, body = await api.post("/api/v1/namespaces/missing/configmaps", cm("a"))
    assert (status, body["reason"], body["message"]) == (404, "NotFound", 'namespaces "missing" not found')
    status, body = await api.post(CMS, {**cm("a"), "metadata": {"name": "a", "namespace": "other"}})
    assert (status, body["reason"]) == (400, "BadRequest")
    status, body = await api.post(CMS, cm("Not_Valid"))
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    status, body = await api.post(CMS, {"kind": "Secret", "metadata": {"name": "x"}})
    assert (status, body["reason"]) == (400, "BadRequest")
    status, body = await api.post(CMS, {"metadata": {}})
    assert (status, body["reason"]) == (422, "Invalid")
    status, body, _ = await api.call(
        "POST", CMS, raw=b"{}", content_type="application/vnd.kubernetes.protobuf"
    )
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


async def test_update_conflicts_on_a_stale_resource_version(api: Api) -> None:
    _, created = await api.post(CMS, cm("a", k="1"))
    status, updated = await api.put(f"{CMS}/a", {**created, "data": {"k": "2"}})
    assert status == 200 and int(updated["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    status, body = await api.put(f"{CMS}/a", {**created, "data": {"k": "3"}})
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "a": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    # Without a resourceVersion the update is unconditional.
    unconditional = {**cm("a", k="4")}
    assert (await api.put(f"{CMS}/a", unconditional))[0] == 200
    status, body = await api.put(f"{CMS}/nope", cm("nope"))
    assert (status, body["reason"]) == (404, "NotFound")
    status, body = await api.put(f"{CMS}/a", cm("b"))
    assert status == 400
    # A replacement object (same name, other uid) is not the object being updated.
    status, body = await api.put(f"{CMS}/a", {**cm("a"), "metadata": {"name": "a", "uid": "other"}})
    assert (status, body["reason"]) == (409, "Conflict") and "Precondition failed: UID" in body["message"]


async def test_a_no_op_write_keeps_the_resource_version(api: Api, emulator: Emulator) -> None:
    _, created = await api.post(CMS, cm("a", k="1"))
    writes = len(emulator.history)
    status, same = await api.patch(f"{CMS}/a", {"data": {"k": "1"}})
    assert status == 200 and same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert len(emulator.history) == writes


async def test_patches(api: Api) -> None:
    await api.post(CMS, {**cm("a", k="1", j="2"), "metadata": {"name": "a", "labels": {"x": "1"}}})
    status, out = await api.patch(
        f"{CMS}/a", {"data": {"j": None, "n": "3"}, "metadata": {"labels": {"y": "2"}}}
    )
    assert status == 200
    assert out["data"] == {"k": "1", "n": "3"} and out["metadata"]["labels"] == {"x": "1", "y": "2"}
    status, out = await api.patch(
        f"{CMS}/a",
        [{"op": "test", "path": "/data/k", "value": "1"}, {"op": "remove", "path": "/data/k"}],
        "json",
    )
    assert status == 200 and out["data"] == {"n": "3"}
    status, body = await api.patch(f"{CMS}/a", [{"op": "test", "path": "/data/n", "value": "0"}], "json")
    assert (status, body["reason"]) == (422, "Invalid")
    status, out = await api.patch(f"{CMS}/a", {"data": {"s": "4"}}, "strategic")
    assert status == 200 and out["data"] == {"n": "3", "s": "4"}
    stale = {"metadata": {"resourceVersion": "1"}, "data": {"z": "1"}}
    status, body = await api.patch(f"{CMS}/a", stale)
    assert (status, body["reason"]) == (409, "Conflict")
    status, body = await api.patch(f"{CMS}/missing", {"data": {}})
    assert status == 404


async def test_strategic_merge_patch_is_415_for_custom_resources(api: Api) -> None:
    await api.post(MCPS, mcp("pool"))
    status, body = await api.patch(f"{MCPS}/pool", {"spec": {"paused": True}}, "strategic")
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")
    assert "application/merge-patch+json" in body["message"]


async def test_strategic_merge_patch_on_a_pod_merges_containers(api: Api) -> None:
    pods = "/api/v1/namespaces/default/pods"
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]},
    }
    await api.post(pods, pod)
    status, out = await api.patch(
        f"{pods}/p", {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}, "strategic"
    )
    assert status == 200
    assert [(c["name"], c["image"]) for c in out["spec"]["containers"]] == [("a", "a:1"), ("b", "b:2")]
    status, body = await api.patch(f"{pods}/p", {"spec": {"restartPolicy": "Never"}}, "strategic")
    assert (status, body["reason"]) == (422, "Invalid")
    assert "pod updates may not change fields" in body["message"]


async def test_status_subresource_and_generation(api: Api) -> None:
    _, created = await api.post(MCPS, {**mcp("pool"), "status": {"machineCount": 9}})
    assert "status" not in created and created["metadata"]["generation"] == 1
    # The main endpoint ignores status; a metadata change does not bump the generation.
    _, out = await api.patch(
        f"{MCPS}/pool", {"status": {"machineCount": 3}, "metadata": {"labels": {"a": "b"}}}
    )
    assert "status" not in out and out["metadata"]["generation"] == 1
    # /status ignores everything but status, and never bumps the generation.
    status, out = await api.patch(
        f"{MCPS}/pool/status",
        {"status": {"machineCount": 3}, "spec": {"paused": True}, "metadata": {"labels": {}}},
    )
    assert status == 200
    assert out["status"]["machineCount"] == 3 and "paused" not in out["spec"]
    assert out["metadata"]["generation"] == 1 and out["metadata"]["labels"] == {"a": "b"}
    _, out = await api.patch(f"{MCPS}/pool", {"spec": {"paused": True}})
    assert out["metadata"]["generation"] == 2 and out["status"]["machineCount"] == 3
    # PUT /status with a stale resourceVersion conflicts like any update.
    status, body = await api.put(f"{MCPS}/pool/status", {**created, "status": {"machineCount": 1}})
    assert (status, body["reason"]) == (409, "Conflict")
    # MachineConfigs have no status subresource.
    await api.post(
        MCS,
        {
            "apiVersion": "machineconfiguration.openshift.io/v1",
            "kind": "MachineConfig",
            "metadata": {"name": "mc"},
            "spec": {},
        },
    )
    assert (await api.get(f"{MCS}/mc/status"))[0] == 404


async def test_pod_status_is_set_by_the_server_on_create_and_written_through_status(api: Api) -> None:
    pods = "/api/v1/namespaces/default/pods"
    _, created = await api.post(
        pods,
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"},
        },
    )
    assert created["status"]["phase"] == "Pending"
    _, out = await api.patch(f"{pods}/p/status", {"status": {"phase": "Running"}})
    assert out["status"]["phase"] == "Running"


async def test_label_and_field_selectors_on_lists(api: Api) -> None:
    for name, labels in [("a", {"app": "web", "tier": "front"}), ("b", {"app": "web"}), ("c", {"app": "db"})]:
        await api.post(CMS, {"metadata": {"name": name, "labels": labels}})

    async def names(**params: str) -> list[str]:
        status, body = await api.get(CMS, **params)
        assert status == 200, body
        assert body["kind"] == "ConfigMapList" and body["metadata"]["resourceVersion"]
        return [i["metadata"]["name"] for i in body["items"]]

    assert await names(labelSelector="app=web") == ["a", "b"]
    assert await names(labelSelector="app in (web,db),!tier") == ["b", "c"]
    assert await names(labelSelector="app!=web") == ["c"]
    assert await names(fieldSelector="metadata.name=b") == ["b"]
    assert await names(fieldSelector="metadata.name!=b") == ["a", "c"]
    status, body = await api.get(CMS, fieldSelector="data.x=1")
    assert (status, body["reason"], body["message"]) == (
        400,
        "BadRequest",
        '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"',
    )


async def test_built_in_list_items_carry_no_kind_but_custom_resource_items_do(api: Api) -> None:
    await api.post(CMS, cm("a"))
    await api.post(MCPS, mcp("pool"))
    _, cms = await api.get(CMS)
    assert "kind" not in cms["items"][0]
    _, pools = await api.get(MCPS)
    assert pools["items"][0]["kind"] == "MachineConfigPool"


async def test_pod_field_selectors(api: Api) -> None:
    pods = "/api/v1/namespaces/default/pods"
    for name, node in [("p1", "n1"), ("p2", "n2")]:
        await api.post(
            pods,
            {
                "metadata": {"name": name},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            },
        )
    await api.patch(f"{pods}/p2/status", {"status": {"phase": "Running"}})
    _, body = await api.get("/api/v1/pods", fieldSelector="spec.nodeName=n1")
    assert [p["metadata"]["name"] for p in body["items"]] == ["p1"]
    _, body = await api.get(pods, fieldSelector="status.phase=Running")
    assert [p["metadata"]["name"] for p in body["items"]] == ["p2"]


async def test_pagination(api: Api) -> None:
    for i in range(5):
        await api.post(CMS, cm(f"c{i}"))
    _, first = await api.get(CMS, limit="2")
    assert [i["metadata"]["name"] for i in first["items"]] == ["c0", "c1"]
    assert first["metadata"]["remainingItemCount"] == 3
    _, second = await api.get(CMS, limit="2", **{"continue": first["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in second["items"]] == ["c2", "c3"]
    _, third = await api.get(CMS, limit="2", **{"continue": second["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in third["items"]] == ["c4"] and "continue" not in third["metadata"]


async def test_finalizers_hold_deletion_until_removed(api: Api, emulator: Emulator) -> None:
    await api.post(CMS, {"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    status, deleting = await api.delete(f"{CMS}/f")
    assert status == 200 and deleting["metadata"]["deletionTimestamp"]
    assert (await api.get(f"{CMS}/f"))[0] == 200
    status, body = await api.patch(f"{CMS}/f", {"metadata": {"finalizers": ["example.com/hold", "new"]}})
    assert (status, body["reason"]) == (422, "Invalid")
    assert "no new finalizers can be added" in body["message"]
    status, _ = await api.patch(f"{CMS}/f", {"metadata": {"finalizers": None}})
    assert status == 200
    assert (await api.get(f"{CMS}/f"))[0] == 404
    # As on a real server, emptying the finalizers deletes in the same write: one DELETED event.
    history = [
        (t, o["metadata"].get("finalizers")) for _, t, o in emulator.history if o["metadata"]["name"] == "f"
    ]
    assert history == [
        ("ADDED", ["example.com/hold"]),
        ("MODIFIED", ["example.com/hold"]),
        ("DELETED", ["example.com/hold"]),
    ]


async def test_delete_preconditions(api: Api) -> None:
    _, created = await api.post(CMS, cm("a"))
    status, body = await api.delete(f"{CMS}/a", {"preconditions": {"uid": "other"}})
    assert (status, body["reason"]) == (409, "Conflict")
    status, _ = await api.delete(f"{CMS}/a", {"preconditions": {"uid": created["metadata"]["uid"]}})
    assert status == 200
    assert (await api.delete(f"{CMS}/a"))[0] == 404


def owned(name: str, owner: dict[str, Any], block: bool = False) -> dict[str, Any]:
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": block,
    }
    return {"metadata": {"name": name, "ownerReferences": [ref]}}


async def test_garbage_collection_background(api: Api) -> None:
    _, owner = await api.post(CMS, cm("owner"))
    _, other = await api.post(CMS, cm("other"))
    await api.post(CMS, owned("child", owner))
    two = owned("shared", owner)
    two["metadata"]["ownerReferences"].append(owned("x", other)["metadata"]["ownerReferences"][0])
    await api.post(CMS, two)
    await api.post(CMS, owned("grandchild", (await api.get(f"{CMS}/child"))[1]))
    await api.delete(f"{CMS}/owner")
    assert (await api.get(f"{CMS}/child"))[0] == 404
    assert (await api.get(f"{CMS}/grandchild"))[0] == 404
    # A dependent with another live owner stays, without the reference to the deleted one.
    _, shared = await api.get(f"{CMS}/shared")
    assert [r["name"] for r in shared["metadata"]["ownerReferences"]] == ["other"]


async def test_garbage_collection_foreground_and_orphan(api: Api, emulator: Emulator) -> None:
    _, owner = await api.post(CMS, cm("owner"))
    await api.post(
        CMS,
        {
            **owned("child", owner, block=True),
            "metadata": {**owned("child", owner, True)["metadata"], "finalizers": ["hold"]},
        },
    )
    status, body = await api.delete(f"{CMS}/owner", {"propagationPolicy": "Foreground"})
    assert status == 200 and "foregroundDeletion" in body["metadata"]["finalizers"]
    # The owner waits for its dependent, which waits for its own finalizer.
    assert (await api.get(f"{CMS}/owner"))[0] == 200
    _, child = await api.get(f"{CMS}/child")
    assert child["metadata"]["deletionTimestamp"]
    await api.patch(f"{CMS}/child", {"metadata": {"finalizers": None}})
    assert (await api.get(f"{CMS}/child"))[0] == 404
    assert (await api.get(f"{CMS}/owner"))[0] == 404

    _, owner = await api.post(CMS, cm("owner2"))
    await api.post(CMS, owned("kept", owner))
    await api.delete(f"{CMS}/owner2", propagationPolicy="Orphan")
    status, kept = await api.get(f"{CMS}/kept")
    assert status == 200 and "ownerReferences" not in kept["metadata"]


async def test_dry_run_writes_nothing(api: Api, emulator: Emulator) -> None:
    writes = len(emulator.history)
    status, out = await api.post(CMS, cm("d"), dryRun="All")
    assert status == 201 and out["metadata"]["name"] == "d"
    assert (await api.get(f"{CMS}/d"))[0] == 404
    await api.post(CMS, cm("d", k="1"))
    writes = len(emulator.history)
    status, out = await api.patch(f"{CMS}/d", {"data": {"k": "2"}}, dryRun="All")
    assert status == 200 and out["data"] == {"k": "2"}
    assert (await api.delete(f"{CMS}/d", dryRun="All"))[0] == 200
    assert (await api.get(f"{CMS}/d"))[1]["data"] == {"k": "1"}
    assert len(emulator.history) == writes
    status, body = await api.post(CMS, cm("e"), dryRun="Some")
    assert (status, body["details"]["kind"]) == (422, "CreateOptions")


async def test_graceful_pod_deletion_waits_for_the_kubelet(api: Api) -> None:
    pods = "/api/v1/namespaces/default/pods"
    spec = {"containers": [{"name": "c", "image": "i"}]}
    await api.post(pods, {"metadata": {"name": "bound"}, "spec": {**spec, "nodeName": "n1"}})
    await api.post(pods, {"metadata": {"name": "unbound"}, "spec": spec})
    _, deleting = await api.delete(f"{pods}/bound")
    assert (
        deleting["metadata"]["deletionTimestamp"] and deleting["metadata"]["deletionGracePeriodSeconds"] == 30
    )
    assert (await api.get(f"{pods}/bound"))[0] == 200
    await api.delete(f"{pods}/bound", gracePeriodSeconds="0")  # what the kubelet does once containers stop
    assert (await api.get(f"{pods}/bound"))[0] == 404
    await api.delete(f"{pods}/unbound")
    assert (await api.get(f"{pods}/unbound"))[0] == 404


async def test_namespace_deletion_removes_its_contents(api: Api) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "gone"}})
    await api.post("/api/v1/namespaces/gone/configmaps", cm("a"))
    await api.post("/api/v1/namespaces/gone/configmaps", {"metadata": {"name": "held", "finalizers": ["x"]}})
    _, ns = await api.delete("/api/v1/namespaces/gone")
    assert ns["status"]["phase"] == "Terminating"
    status, body = await api.post("/api/v1/namespaces/gone/configmaps", cm("b"))
    assert (status, body["reason"]) == (403, "Forbidden")
    assert "because it is being terminated" in body["message"]
    assert (await api.get("/api/v1/namespaces/gone/configmaps/a"))[0] == 404
    await api.patch("/api/v1/namespaces/gone/configmaps/held", {"metadata": {"finalizers": None}})
    assert (await api.get("/api/v1/namespaces/gone"))[0] == 404


async def test_mco_fixtures_load_and_validate(api: Api, mco_fixtures: Path) -> None:
    for path in sorted((mco_fixtures / "objects").glob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        plural = "machineconfigpools" if obj["kind"] == "MachineConfigPool" else "machineconfigs"
        status, body, headers = await api.call(
            "POST", f"/apis/machineconfiguration.openshift.io/v1/{plural}", obj
        )
        assert status == 201, (path.name, body)
        assert "Warning" not in headers, (path.name, headers.getall("Warning"))
    _, pools = await api.get(MCPS)
    assert {p["metadata"]["name"] for p in pools["items"]} == {"master", "worker"}


async def test_an_invalid_machine_config_pool_is_rejected_with_the_schema_error(api: Api) -> None:
    bad = mcp("bad", paused="yes", maxUnavailable={"n": 1})
    status, body = await api.post(MCPS, bad)
    assert (status, body["reason"], body["code"]) == (422, "Invalid", 422)
    assert body["message"].startswith(
        'MachineConfigPool.machineconfiguration.openshift.io "bad" is invalid: '
    )
    fields = {c["field"]: c["message"] for c in body["details"]["causes"]}
    assert (
        fields["spec.paused"]
        == 'Invalid value: "string": spec.paused in body must be of type boolean: "string"'
    )
    assert "spec.maxUnavailable" in fields
    assert (await api.get(f"{MCPS}/bad"))[0] == 404


async def test_unknown_fields_are_pruned_with_a_warning_or_rejected_when_strict(api: Api) -> None:
    obj = mcp("pool", notAField=1)
    status, body, headers = await api.call("POST", MCPS, obj)
    assert status == 201 and "notAField" not in body["spec"]
    assert headers.getall("Warning") == ['299 - "unknown field \\"spec.notAField\\""']
    status, body, _ = await api.call(
        "POST", MCPS, mcp("strict", notAField=1), params={"fieldValidation": "Strict"}
    )
    assert (status, body["reason"]) == (400, "BadRequest")
    assert 'unknown field "spec.notAField"' in body["message"]


async def test_custom_resource_definitions_are_served_at_once_and_removed_with_their_objects(
    api: Api,
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"x-kubernetes-int-or-string": True},
                                        "note": {"type": "string", "nullable": True},
                                        "color": {"type": "string", "default": "blue"},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    status, created = await api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 201
    # The create answers the CRD as written; it is Established by the next read (on a real server, by
    # the apiextensions controllers a moment later).
    assert created["status"]["conditions"] is None
    _, established = await api.get(
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
    )
    assert {c["type"]: c["status"] for c in established["status"]["conditions"]}["Established"] == "True"
    widgets = "/apis/example.com/v1/namespaces/default/widgets"
    for size in (3, "50%"):
        status, w = await api.post(
            widgets,
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"generateName": "w-"},
                "spec": {"size": size, "note": None},
            },
        )
        assert status == 201, w
        assert w["spec"]["color"] == "blue"  # defaulted from the schema
    status, body = await api.post(widgets, {"metadata": {"name": "bad"}, "spec": {"size": [1]}})
    assert status == 422
    status, body = await api.post(widgets, {"metadata": {"name": "bad"}, "spec": {"note": 1}})
    assert status == 422
    await api.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert (await api.get(widgets))[0] == 404
    bad_crd = {**crd, "metadata": {"name": "wrong.example.com"}}
    status, body = await api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", bad_crd)
    assert (status, body["reason"]) == (422, "Invalid")


async def test_deletecollection_by_label(api: Api) -> None:
    await api.post(CMS, {"metadata": {"name": "a", "labels": {"x": "1"}}})
    await api.post(CMS, {"metadata": {"name": "b"}})
    status, _ = await api.delete(CMS, labelSelector="x=1")
    assert status == 200
    _, left = await api.get(CMS)
    assert [i["metadata"]["name"] for i in left["items"]] == ["b"]


async def test_metadata_validation(api: Api) -> None:
    status, body = await api.post(CMS, {"metadata": {"name": "a", "labels": {"config": "rendered:worker"}}})
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.labels"
    assert "a valid label must be an empty string" in body["message"]
    status, body = await api.post(CMS, {"metadata": {"name": "a", "labels": {"v": "x" * 64}}})
    assert status == 422 and "must be no more than 63 characters" in body["message"]
    status, body = await api.post(CMS, {"metadata": {"name": "a", "annotations": {"bad key": "v"}}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "metadata.annotations"
    status, body = await api.post(
        CMS, {"metadata": {"name": "a", "ownerReferences": [{"kind": "X", "name": "x"}]}}
    )
    assert status == 422
    assert {c["field"] for c in body["details"]["causes"]} == {
        "metadata.ownerReferences[0].apiVersion",
        "metadata.ownerReferences[0].uid",
    }
    ok = {
        "name": "a",
        "labels": {"example.com/role": "", "v": "A-1_b.2"},
        "annotations": {"note": "any: text!"},
    }
    assert (await api.post(CMS, {"metadata": ok}))[0] == 201
    status, body = await api.patch(f"{CMS}/a", {"metadata": {"labels": {"v": "-bad"}}})
    assert status == 422


async def test_events_about_cluster_scoped_objects_live_in_default(api: Api) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "ops"}})

    def event(involved_namespace: str) -> dict[str, Any]:
        return {
            "metadata": {"generateName": "e."},
            "reason": "Updated",
            "message": "m",
            "type": "Normal",
            "involvedObject": {"kind": "Node", "name": "n1", "namespace": involved_namespace},
        }

    status, body = await api.post("/api/v1/namespaces/ops/events", event(""))
    assert (status, body["details"]["causes"][0]["field"]) == (422, "involvedObject.namespace")
    assert body["details"]["causes"][0]["message"] == 'Invalid value: "": does not match event.namespace'
    assert (await api.post("/api/v1/namespaces/default/events", event("")))[0] == 201
    assert (await api.post("/api/v1/namespaces/ops/events", event("ops")))[0] == 201
    assert (await api.post("/api/v1/namespaces/default/events", event("ops")))[0] == 422
    new_style = {**event(""), "eventTime": "2026-01-01T00:00:00.000000Z"}
    status, body = await api.post("/api/v1/namespaces/kube-system/events", new_style)
    assert status == 422
    assert {c["field"] for c in body["details"]["causes"]} == {
        "reportingComponent",
        "reportingInstance",
        "action",
    }
    complete = {
        **new_style,
        "reportingComponent": "mcosup",
        "reportingInstance": "mcosup-1",
        "action": "Update",
    }
    assert (await api.post("/api/v1/namespaces/kube-system/events", complete))[0] == 201


async def test_secrets_merge_string_data_and_reject_bad_base64(api: Api) -> None:
    secrets = "/api/v1/namespaces/default/secrets"
    status, created = await api.post(
        secrets,
        {"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}, "data": {"user": "YWRtaW4="}},
    )
    assert status == 201
    assert created["data"] == {"user": "YWRtaW4=", "password": "aHVudGVyMg=="}
    assert "stringData" not in created and created["type"] == "Opaque"
    status, body = await api.post(secrets, {"metadata": {"name": "t"}, "data": {"k": "not base64!"}})
    assert (status, body["reason"]) == (400, "BadRequest")
    status, body = await api.post(CMS, {"metadata": {"name": "c"}, "data": {"bad/key": "v"}})
    assert status == 422


async def test_unknown_fields_of_built_in_kinds_are_dropped_as_a_typed_server_drops_them(api: Api) -> None:
    status, body, headers = await api.call(
        "POST", "/api/v1/nodes", {"metadata": {"name": "n1", "color": "red"}, "spec": {"unschedulabel": True}}
    )
    assert status == 201
    # The unknown spec field is gone; only the taint every new Node gets (TaintNodesByCondition) is left.
    assert "color" not in body["metadata"]
    assert body["spec"] == {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}
    assert headers.getall("Warning") == [
        '299 - "unknown field \\"metadata.color\\""',
        '299 - "unknown field \\"spec.unschedulabel\\""',
    ]
    status, body, _ = await api.call(
        "POST", CMS, {**cm("a"), "spec": {}}, params={"fieldValidation": "Strict"}
    )
    assert (status, body["message"]) == (
        400,
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
        'strict decoding error: unknown field "spec"',
    )


async def test_objects_naming_owners_that_do_not_exist_are_collected(api: Api, emulator: Emulator) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "other"}})
    _, here = await api.post(CMS, cm("here"))
    _, there = await api.post("/api/v1/namespaces/other/configmaps", cm("there"))

    def ref(owner: dict[str, Any], uid: str | None = None, kind: str = "ConfigMap") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": kind,
            "name": owner["metadata"]["name"],
            "uid": uid or owner["metadata"]["uid"],
        }

    # A stale uid: the owner by that name is another object, so the dependent is collected.
    assert (await api.post(CMS, {"metadata": {"name": "stale", "ownerReferences": [ref(here, "old-uid")]}}))[
        0
    ] == 201
    assert (await api.get(f"{CMS}/stale"))[0] == 404
    # An owner in another namespace cannot own a namespaced object.
    await api.post(CMS, {"metadata": {"name": "cross", "ownerReferences": [ref(there)]}})
    assert (await api.get(f"{CMS}/cross"))[0] == 404
    # With one real owner left, only the dangling reference goes.
    await api.post(CMS, {"metadata": {"name": "mixed", "ownerReferences": [ref(here), ref(there)]}})
    _, mixed = await api.get(f"{CMS}/mixed")
    assert [r["name"] for r in mixed["metadata"]["ownerReferences"]] == ["here"]
    # Kinds the server does not serve are left alone, as the garbage collector cannot resolve them.
    await api.post(CMS, {"metadata": {"name": "unknown", "ownerReferences": [ref(here, "x", kind="Gizmo")]}})
    assert (await api.get(f"{CMS}/unknown"))[0] == 200
    # A cluster-scoped owner may own a namespaced object.
    _, node = await api.post("/api/v1/nodes", {"metadata": {"name": "n1"}})
    await api.post(CMS, {"metadata": {"name": "node-owned", "ownerReferences": [ref(node, kind="Node")]}})
    assert (await api.get(f"{CMS}/node-owned"))[0] == 200


async def test_dangling_owner_collection_can_be_turned_off_for_fixtures(mco_fixtures: Path) -> None:
    async with Emulator(collect_dangling_dependents=False) as emu:
        fake = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "name": "agent",
            "uid": "u1",
            "controller": True,
        }
        await emu.create_object(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "kept", "namespace": "default", "ownerReferences": [fake]},
            }
        )
        assert emu.get_object("v1", "configmaps", "kept", "default") is not None


async def test_names_follow_each_kinds_rule(api: Api) -> None:
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role = {
        "metadata": {"name": "mcosup:reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    assert (await api.post(f"{rbac}/clusterroles", role))[0] == 201
    assert (await api.post(f"{rbac}/clusterroles", {**role, "metadata": {"name": "a/b"}}))[0] == 422
    services = "/api/v1/namespaces/default/services"
    assert (await api.post(services, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}))[
        0
    ] == 201
    status, body = await api.post(services, {"metadata": {"name": "1web"}, "spec": {}})
    assert status == 422 and "DNS-1035" in body["message"]


async def test_a_pdb_selector_is_replaced_by_a_strategic_patch(api: Api) -> None:
    pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
    selector = {"matchLabels": {"app": "web", "tier": "front"}}
    await api.post(pdbs, {"metadata": {"name": "b"}, "spec": {"minAvailable": 1, "selector": selector}})
    _, out = await api.patch(
        f"{pdbs}/b", {"spec": {"selector": {"matchLabels": {"app": "web"}}}}, "strategic"
    )
    assert out["spec"]["selector"] == {"matchLabels": {"app": "web"}}  # patchStrategy: replace
    assert out["metadata"]["generation"] == 2


async def test_a_terminating_namespace_waits_for_its_running_pods(api: Api) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "apps"}})
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}}
    await api.post("/api/v1/namespaces/apps/pods", pod)
    await api.delete("/api/v1/namespaces/apps")
    _, left = await api.get("/api/v1/namespaces/apps/pods/p")
    assert left["metadata"]["deletionTimestamp"] and left["metadata"]["deletionGracePeriodSeconds"] == 30
    assert (await api.get("/api/v1/namespaces/apps"))[1]["status"]["phase"] == "Terminating"
    await api.delete("/api/v1/namespaces/apps/pods/p", gracePeriodSeconds="0")  # the kubelet's confirmation
    assert (await api.get("/api/v1/namespaces/apps"))[0] == 404


async def test_timestamps_must_parse_as_the_apiserver_parses_them(api: Api) -> None:
    leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    status, body = await api.post(
        leases, {"metadata": {"name": "l"}, "spec": {"renewTime": "2026-01-01T00:00:00Z"}}
    )
    assert (status, body["reason"]) == (400, "BadRequest")  # a MicroTime needs six fraction digits
    assert body["message"].endswith(
        'parsing time "2026-01-01T00:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": '
        'cannot parse "Z" as ".000000"'
    )
    micro = {"renewTime": "2026-01-01T00:00:00.123456Z", "holderIdentity": "a"}
    assert (await api.post(leases, {"metadata": {"name": "l"}, "spec": micro}))[0] == 201
    node = {
        "metadata": {"name": "n1"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01 00:00:00"}]
        },
    }
    assert (await api.post("/api/v1/nodes", node))[0] == 400
    await api.post(MCPS, mcp("pool"))
    condition = {"type": "Updated", "status": "True", "lastTransitionTime": "2026-11-26 08:00:00"}
    status, body = await api.patch(f"{MCPS}/pool/status", {"status": {"conditions": [condition]}})
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["message"] == (
        'Invalid value: "2026-11-26 08:00:00": status.conditions[0].lastTransitionTime in body '
        'must be of type date-time: "2026-11-26 08:00:00"'
    )
    condition["lastTransitionTime"] = "2026-11-26T08:00:00+00:00"
    assert (await api.patch(f"{MCPS}/pool/status", {"status": {"conditions": [condition]}}))[0] == 200
