"""Pods: eviction under PodDisruptionBudgets, pods/log, and the other test hooks (faults, users)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from emu_http import Api, cm

from mcosup.sim.apiserver import Emulator

PODS = "/api/v1/namespaces/default/pods"
PDBS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"


async def running_pod(
    api: Api, name: str, *, ready: bool = True, labels: dict[str, str] | None = None
) -> None:
    spec = {"containers": [{"name": "c", "image": "i"}]}
    await api.post(PODS, {"metadata": {"name": name, "labels": labels or {"app": "web"}}, "spec": spec})
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    await api.patch(f"{PODS}/{name}/status", {"status": status})


def eviction(name: str, **delete_options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
    if delete_options:
        body["deleteOptions"] = delete_options
    return body


async def owned_by_a_deployment(api: Api, replicas: int) -> dict[str, Any]:
    _, deploy = await api.post(
        "/apis/apps/v1/namespaces/default/deployments",
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {}},
            },
        },
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "uid": deploy["metadata"]["uid"],
        "controller": True,
    }


@pytest.mark.parametrize(
    ("budget", "controlled"),
    [({"minAvailable": 2}, False), ({"maxUnavailable": 1}, True), ({"minAvailable": "60%"}, True)],
)
async def test_eviction_honours_the_budget(api: Api, budget: dict[str, Any], controlled: bool) -> None:
    owner = await owned_by_a_deployment(api, 3) if controlled else None
    for name in ("a", "b", "c"):
        await running_pod(api, name)
        if owner:
            await api.patch(f"{PODS}/{name}", {"metadata": {"ownerReferences": [owner]}})
    await api.post(
        PDBS, {"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, **budget}}
    )
    status, body = await api.post(f"{PODS}/a/eviction", eviction("a"))
    assert (status, body["status"]) == (201, "Success")
    assert (await api.get(f"{PODS}/a"))[0] == 404
    status, body = await api.post(f"{PODS}/b/eviction", eviction("b"))
    assert (status, body["reason"], body["code"]) == (429, "TooManyRequests", 429)
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"][0]["reason"] == "DisruptionBudget"
    assert (
        body["details"]["causes"][0]["message"]
        == "The disruption budget web needs 2 healthy pods and has 2 currently"
    )
    assert (await api.get(f"{PODS}/b"))[0] == 200
    _, pdb = await api.get(f"{PDBS}/web")
    assert (pdb["status"]["currentHealthy"], pdb["status"]["disruptionsAllowed"]) == (2, 0)


async def test_max_unavailable_over_bare_pods_allows_no_eviction_as_on_a_real_cluster(api: Api) -> None:
    for name in ("a", "b", "c"):
        await running_pod(api, name)
    await api.post(
        PDBS,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": 1},
        },
    )
    status, body = await api.post(f"{PODS}/a/eviction", eviction("a"))
    assert (status, body["reason"]) == (429, "TooManyRequests")
    _, pdb = await api.get(f"{PDBS}/web")
    condition = pdb["status"]["conditions"][0]
    assert (condition["reason"], condition["message"]) == (
        "SyncFailed",
        'found no controller ref for pod "a"',
    )


async def test_unhealthy_and_pending_pods_and_pods_without_a_budget(api: Api) -> None:
    await running_pod(api, "ok1")
    await running_pod(api, "ok2")
    await running_pod(api, "sick", ready=False)
    await api.post(
        PODS,
        {
            "metadata": {"name": "pending", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        },
    )
    await running_pod(api, "free", labels={"app": "other"})
    await api.post(
        PDBS,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 2},
        },
    )
    # The budget is met (2 healthy, 2 needed): an unhealthy pod may go, a healthy one may not.
    assert (await api.post(f"{PODS}/sick/eviction", eviction("sick")))[0] == 201
    assert (await api.post(f"{PODS}/ok1/eviction", eviction("ok1")))[0] == 429
    assert (await api.post(f"{PODS}/pending/eviction", eviction("pending")))[0] == 201
    assert (await api.post(f"{PODS}/free/eviction", eviction("free")))[0] == 201
    status, body = await api.post(f"{PODS}/nope/eviction", eviction("nope"))
    assert (status, body["reason"]) == (404, "NotFound")


async def test_unhealthy_pods_under_a_broken_budget_need_always_allow(api: Api) -> None:
    await running_pod(api, "ok")
    await running_pod(api, "sick1", ready=False)
    await running_pod(api, "sick2", ready=False)
    budget = {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 2}
    await api.post(PDBS, {"metadata": {"name": "web"}, "spec": budget})
    # 1 healthy of 2 needed: the default policy keeps even unready pods.
    assert (await api.post(f"{PODS}/sick1/eviction", eviction("sick1")))[0] == 429
    await api.patch(f"{PDBS}/web", {"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}})
    assert (await api.post(f"{PODS}/sick1/eviction", eviction("sick1")))[0] == 201
    assert (await api.post(f"{PODS}/ok/eviction", eviction("ok")))[0] == 429


async def test_eviction_dry_run_and_two_budgets(api: Api) -> None:
    await running_pod(api, "a")
    assert (await api.post(f"{PODS}/a/eviction", eviction("a", dryRun=["All"])))[0] == 201
    assert (await api.get(f"{PODS}/a"))[0] == 200
    for name in ("one", "two"):
        await api.post(
            PDBS,
            {
                "metadata": {"name": name},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": 1},
            },
        )
    status, body = await api.post(f"{PODS}/a/eviction", eviction("a"))
    assert status == 500 and "more than one PodDisruptionBudget" in body["message"]


async def test_an_evicted_pod_on_a_node_terminates_gracefully(api: Api) -> None:
    spec = {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}
    await api.post(PODS, {"metadata": {"name": "a"}, "spec": spec})
    await api.patch(f"{PODS}/a/status", {"status": {"phase": "Running"}})
    assert (await api.post(f"{PODS}/a/eviction", eviction("a")))[0] == 201
    _, pod = await api.get(f"{PODS}/a")
    assert pod["metadata"]["deletionTimestamp"]


async def test_pod_logs(api: Api, emulator: Emulator) -> None:
    await api.post(PODS, {"metadata": {"name": "one"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})
    await api.post(
        PODS,
        {
            "metadata": {"name": "two"},
            "spec": {"containers": [{"name": "x", "image": "i"}, {"name": "y", "image": "i"}]},
        },
    )
    emulator.set_pod_log("default", "one", "c", "line 1\nline 2\n")
    emulator.append_pod_log("default", "one", "c", "line 3\n")
    status, text = await api.get(f"{PODS}/one/log")
    assert (status, text) == (200, "line 1\nline 2\nline 3\n")
    assert (await api.get(f"{PODS}/one/log", tailLines="1"))[1] == "line 3\n"
    status, body = await api.get(f"{PODS}/two/log")
    assert (
        status == 400
        and body["message"] == "a container name must be specified for pod two, choose one of: [x y]"
    )
    assert (await api.get(f"{PODS}/two/log", container="y")) == (200, "")


async def test_following_a_pod_log(api: Api, emulator: Emulator) -> None:
    await api.post(PODS, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})
    emulator.set_pod_log("default", "p", "c", "start\n")
    headers = {"Authorization": f"Bearer {api.token}"}
    async with api.session.get(
        f"{api.url}{PODS}/p/log", params={"follow": "true"}, headers=headers, ssl=api.ctx
    ) as resp:
        assert await resp.content.readline() == b"start\n"
        emulator.append_pod_log("default", "p", "c", "more\n")
        assert await asyncio.wait_for(resp.content.readline(), 10) == b"more\n"
        await api.patch(f"{PODS}/p/status", {"status": {"phase": "Succeeded"}})
        emulator.append_pod_log("default", "p", "c", "end\n")
        assert await asyncio.wait_for(resp.content.read(), 10) == b"end\n"


async def test_faults_answer_matching_requests_then_stop(api: Api, emulator: Emulator) -> None:
    await api.post("/api/v1/namespaces/default/configmaps", cm("a"))
    rule = emulator.faults.fail(429, method="GET", path=r"/configmaps/a$", times=2, retry_after=3)
    for _ in range(2):
        status, body, headers = await api.call("GET", "/api/v1/namespaces/default/configmaps/a")
        assert (status, body["reason"], headers["Retry-After"]) == (429, "TooManyRequests", "3")
    assert (await api.get("/api/v1/namespaces/default/configmaps/a"))[0] == 200
    assert rule.hits == 2
    emulator.faults.fail(500, path="/configmaps", times=None)
    assert (await api.get("/api/v1/namespaces/default/configmaps"))[0] == 500
    emulator.faults.clear()
    emulator.faults.delay(0.05, method="GET", times=1)
    assert (await api.get("/api/v1/namespaces/default/configmaps"))[0] == 200
    log = [(r.method, r.path, r.user, r.status) for r in emulator.requests[-2:]]
    assert log == [
        ("GET", "/api/v1/namespaces/default/configmaps", "admin", 500),
        ("GET", "/api/v1/namespaces/default/configmaps", "admin", 200),
    ]


async def test_service_account_kubeconfig_carries_the_node_name(emulator: Emulator, tmp_path: Path) -> None:
    path = emulator.write_kubeconfig_for_service_account(tmp_path / "sa", "mcosup", "daemon", node_name="n1")
    config = yaml.safe_load(path.read_text())
    token = config["users"][0]["user"]["token"]
    user = emulator._tokens[token]
    assert user.username == "system:serviceaccount:mcosup:daemon"
    assert set(user.groups) == {
        "system:serviceaccounts",
        "system:serviceaccounts:mcosup",
        "system:authenticated",
    }
    assert dict(user.extra) == {"authentication.kubernetes.io/node-name": ("n1",)}
    assert config["clusters"][0]["cluster"]["server"] == emulator.url
