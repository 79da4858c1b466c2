"""The ``binding`` subresource, which the kubelet stand-in uses as a scheduler, on both API servers.

Same requests, same assertions: a Pod is bound once (201, ``spec.nodeName`` set, ``PodScheduled``
True); binding it again, or with a uid that is not its own, is a 409 Conflict naming the Pod.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.resources import NAMESPACES, PODS
from mcosup.runtime.settings import KubeSettings
from mcosup.sim.backends import KINDS, make_backend

NS = "binding-probe"


@pytest.fixture(params=KINDS)
async def kube(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[kclient.Kube]:
    backend = make_backend(
        request.param, workdir=tmp_path, namespace=NS, service="none", webhook_port=0, startup_seconds=120
    )
    await backend.start()
    try:
        admin = backend.write_kubeconfig(tmp_path / "admin.kubeconfig")
        async with kclient.connect(KubeSettings(kubeconfig=str(admin))) as k:
            await k.create(NAMESPACES, {"metadata": {"name": NS}})
            yield k
    finally:
        await backend.stop()


def binding(pod: str, node: str, uid: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": pod}
    if uid:
        meta["uid"] = uid
    return {"apiVersion": "v1", "kind": "Binding", "metadata": meta, "target": {"kind": "Node", "name": node}}


async def test_a_pod_is_bound_once_and_a_second_binding_conflicts(kube: kclient.Kube) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    created = await kube.create(PODS, pod, namespace=NS)
    path = PODS.path("p", NS, "binding")
    answer = await kube.request("POST", path, body=binding("p", "node-a", created["metadata"]["uid"]))
    assert (answer["kind"], answer["status"]) == ("Status", "Success")
    bound = await kube.get(PODS, "p", namespace=NS)
    assert bound["spec"]["nodeName"] == "node-a"
    scheduled = [c for c in bound["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
    assert [c["status"] for c in scheduled] == ["True"]
    with pytest.raises(errors.Conflict) as again:
        await kube.request("POST", path, body=binding("p", "node-b"))
    assert 'pod p is already assigned to node "node-a"' in again.value.message

    other = await kube.create(PODS, {**pod, "metadata": {"name": "q"}}, namespace=NS)
    with pytest.raises(errors.Conflict) as stale:
        await kube.request("POST", PODS.path("q", NS, "binding"), body=binding("q", "node-a", "0" * 8))
    assert "Precondition failed: UID in precondition" in stale.value.message
    assert (await kube.get(PODS, "q", namespace=NS))["spec"].get("nodeName") in (None, "")
    assert other["metadata"]["uid"] != "0" * 8
