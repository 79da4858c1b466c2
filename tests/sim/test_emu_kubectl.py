"""The real kubectl binary against the emulator, and `mcosup sim serve` as a process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from emu_http import Api

from mcosup.sim.apiserver import Emulator
from waiting import eventually

# The kubectl to drive: the one on PATH, or another (e.g. Debian's 1.20 `kubernetes-client`) named here.
KUBECTL = os.environ.get("MCOSUP_TEST_KUBECTL", "kubectl")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"  # the install manifests (contract section 9)


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    async def __call__(self, *args: str, ok: bool = True) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL,
            "--kubeconfig",
            str(self.kubeconfig),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        code = proc.returncode if proc.returncode is not None else -1
        if ok:
            assert code == 0, f"kubectl {' '.join(args)} failed ({code}): {err.decode()}"
        return code, out.decode(), err.decode()

    async def json(self, *args: str) -> Any:
        _, out, _ = await self(*args, "-o", "json")
        return json.loads(out)


@pytest.fixture
def kubectl(admin_kubeconfig: Path) -> Kubectl:
    return Kubectl(admin_kubeconfig)


async def test_kubectl_apply_label_annotate_patch_get_delete(kubectl: Kubectl, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(
        yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}},
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "settings", "namespace": "app"},
                    "data": {"mode": "a"},
                },
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "web", "namespace": "app", "labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
                },
            ]
        )
    )
    _, out, _ = await kubectl("apply", "-f", str(manifest))
    assert "configmap/settings created" in out and "pod/web created" in out
    # A second apply with a change is a patch computed by kubectl from last-applied-configuration.
    manifest.write_text(manifest.read_text().replace("mode: a", "mode: b"))
    _, out, _ = await kubectl("apply", "-f", str(manifest))
    assert "configmap/settings configured" in out and "pod/web unchanged" in out
    assert (await kubectl.json("get", "cm", "settings", "-n", "app"))["data"] == {"mode": "b"}

    await kubectl("label", "-n", "app", "cm", "settings", "tier=config")
    await kubectl("annotate", "-n", "app", "cm", "settings", "owner=me")
    got = await kubectl.json("get", "cm", "-n", "app", "-l", "tier=config")
    assert [i["metadata"]["name"] for i in got["items"]] == ["settings"]
    assert got["items"][0]["metadata"]["annotations"]["owner"] == "me"
    code, _, err = await kubectl("label", "-n", "app", "cm", "settings", "tier=other", ok=False)
    assert code == 1 and "already has a value" in err
    await kubectl("label", "-n", "app", "cm", "settings", "tier=other", "--overwrite")

    await kubectl(
        "patch", "-n", "app", "pod", "web", "-p", '{"spec":{"containers":[{"name":"c","image":"nginx:2"}]}}'
    )
    pod = await kubectl.json("get", "pod", "web", "-n", "app")
    assert pod["spec"]["containers"][0]["image"] == "nginx:2"
    await kubectl(
        "patch",
        "-n",
        "app",
        "cm",
        "settings",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/data/mode","value":"c"}]',
    )
    await kubectl("patch", "-n", "app", "cm", "settings", "--type=merge", "-p", '{"data":{"extra":"1"}}')
    assert (await kubectl.json("get", "cm", "settings", "-n", "app"))["data"] == {"mode": "c", "extra": "1"}

    _, out, _ = await kubectl("describe", "-n", "app", "pod", "web")
    assert "nginx:2" in out
    _, out, _ = await kubectl("get", "pods", "-A")
    assert "web" in out
    _, out, _ = await kubectl("delete", "-n", "app", "cm", "settings")
    assert 'configmap "settings" deleted' in out
    code, _, err = await kubectl("get", "-n", "app", "cm", "settings", ok=False)
    assert code == 1 and 'configmaps "settings" not found' in err


async def test_kubectl_get_prints_the_servers_columns(kubectl: Kubectl, mco_fixtures: Path, api: Api) -> None:
    await kubectl("apply", "-f", str(mco_fixtures / "objects" / "worker.machineconfigpool.yaml"))
    status = {
        "configuration": {"name": "rendered-worker-1"},
        "machineCount": 3,
        "conditions": [{"type": "Updated", "status": "True"}, {"type": "Degraded", "status": "False"}],
    }
    assert (
        await api.patch(
            "/apis/machineconfiguration.openshift.io/v1/machineconfigpools/worker/status", {"status": status}
        )
    )[0] == 200
    _, out, _ = await kubectl("get", "mcp")
    header, row = out.splitlines()
    assert header.split() == [
        "NAME",
        "CONFIG",
        "UPDATED",
        "UPDATING",
        "DEGRADED",
        "MACHINECOUNT",
        "READYMACHINECOUNT",
        "UPDATEDMACHINECOUNT",
        "DEGRADEDMACHINECOUNT",
        "AGE",
    ]
    assert row.split()[:4] == ["worker", "rendered-worker-1", "True", "False"]
    node = {
        "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/worker": ""}},
        "spec": {"unschedulable": True},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    await api.post("/api/v1/nodes", node)
    _, out, _ = await kubectl("get", "nodes")
    assert out.splitlines()[1].split()[:3] == ["n1", "Ready,SchedulingDisabled", "worker"]


async def test_kubectl_with_the_mco_custom_resources(
    kubectl: Kubectl, mco_fixtures: Path, tmp_path: Path
) -> None:
    _, out, _ = await kubectl("apply", "-f", str(mco_fixtures / "objects"))
    assert "machineconfigpool.machineconfiguration.openshift.io/worker created" in out
    await kubectl("patch", "mcp", "worker", "--type=merge", "-p", '{"spec":{"paused":true}}')
    assert (await kubectl.json("get", "mcp", "worker"))["spec"]["paused"] is True
    _, out, _ = await kubectl("get", "machineconfigs")
    assert "test-config" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "machineconfiguration.openshift.io/v1",
                "kind": "MachineConfigPool",
                "metadata": {"name": "bad"},
                "spec": {"paused": "yes"},
            }
        )
    )
    code, _, err = await kubectl("apply", "-f", str(bad), ok=False)
    assert code == 1
    # Two causes (the CRD has CEL rules the real server skips once the schema fails): kubectl lists them.
    assert 'The MachineConfigPool "bad" is invalid: \n* spec.paused: Invalid value: "string": ' in err
    assert "* <nil>: Invalid value: null: some validation rules were not checked" in err
    code, _, err = await kubectl(
        "patch", "mcp", "worker", "--type=strategic", "-p", '{"spec":{"paused":false}}', ok=False
    )
    assert (code == 1 and "UnsupportedMediaType" in err) or "unknown format" in err


async def test_kubectl_wait_and_watch(kubectl: Kubectl, emulator: Emulator, api: Api) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    await emulator.create_object(pod)
    watcher = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(kubectl.kubeconfig),
        "get",
        "pods",
        "-w",
        "-o",
        "name",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    waiter = asyncio.create_task(kubectl("wait", "--for=condition=Ready", "pod/p", "--timeout=30s"))
    await eventually(
        lambda: (
            any(r.query.get("watch") == "true" and "fieldSelector" in r.query for r in emulator.requests)
            or waiter.done()
        ),
        what="kubectl wait to watch",
    )
    ready = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    status, _ = await api.patch("/api/v1/namespaces/default/pods/p/status", ready)
    assert status == 200
    _, out, _ = await waiter
    assert "pod/p condition met" in out
    assert watcher.stdout is not None
    line = await asyncio.wait_for(watcher.stdout.readline(), 30)
    assert line.decode().strip() == "pod/p"
    if watcher.returncode is not None:
        rest, err = await watcher.communicate()
        raise AssertionError(f"watcher ended {watcher.returncode}: {rest!r} {err.decode()[-3000:]}")
    watcher.terminate()
    await watcher.wait()

    def watches() -> int:
        return sum(
            1 for r in emulator.requests if r.query.get("watch") == "true" and "fieldSelector" in r.query
        )

    before = watches()
    deleter = asyncio.create_task(kubectl("wait", "--for=delete", "pod/p", "--timeout=30s"))
    await eventually(lambda: watches() > before or deleter.done(), what="kubectl wait --for=delete to watch")
    await kubectl("delete", "pod", "p", "--wait=false")
    await deleter


async def test_mcosup_sim_serve(tmp_path: Path, mco_fixtures: Path) -> None:
    kubeconfig = tmp_path / "admin.kubeconfig"
    mcosup = Path(sys.executable).parent / "mcosup"
    proc = await asyncio.create_subprocess_exec(
        str(mcosup),
        "sim",
        "serve",
        "--kubeconfig",
        str(kubeconfig),
        "--crds",
        str(mco_fixtures / "crds"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("emulator serving on https://127.0.0.1:"), line
        _, out, _ = await Kubectl(kubeconfig)("get", "crd", "-o", "name")
        assert (
            "customresourcedefinition.apiextensions.k8s.io/machineconfigpools.machineconfiguration.openshift.io"
            in out
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_mcosup_sim_serve_rejects_bad_arguments(tmp_path: Path) -> None:
    mcosup = Path(sys.executable).parent / "mcosup"
    proc = await asyncio.create_subprocess_exec(
        str(mcosup),
        "sim",
        "serve",
        "--kubeconfig",
        str(tmp_path / "k"),
        "--crds",
        str(tmp_path / "missing"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and "is not a directory of CRD manifests" in err.decode()


async def test_kubectl_imperative_creates(kubectl: Kubectl, emulator: Emulator) -> None:
    # kubectl 1.32 sends these as protobuf; the emulator decodes the four kinds it creates this way.
    await kubectl("create", "namespace", "tools")
    await kubectl("create", "configmap", "c", "--from-literal=a=b", "--from-literal=empty=", "-n", "tools")
    await kubectl("create", "secret", "generic", "s", "--from-literal=password=hunter2", "-n", "tools")
    await kubectl("create", "serviceaccount", "robot", "-n", "tools")
    assert emulator.get_object("v1", "namespaces", "tools") is not None
    assert (emulator.get_object("v1", "configmaps", "c", "tools") or {})["data"] == {"a": "b", "empty": ""}
    secret = emulator.get_object("v1", "secrets", "s", "tools") or {}
    assert (secret["data"], secret["type"]) == ({"password": "aHVudGVyMg=="}, "Opaque")
    assert emulator.get_object("v1", "serviceaccounts", "robot", "tools") is not None


async def test_the_install_manifests_apply_and_reapply_unchanged(kubectl: Kubectl) -> None:
    _, out, _ = await kubectl("apply", "-k", str(DEPLOY))
    assert "validatingwebhookconfiguration.admissionregistration.k8s.io/mcosup created" in out
    _, out, _ = await kubectl("apply", "-k", str(DEPLOY))
    changed = [line for line in out.splitlines() if not line.endswith(" unchanged")]
    # The PDB's selector has patchStrategy replace, so kubectl 1.32 always sends it: "configured", as
    # against a real cluster (1.20 does not).
    assert set(changed) <= {"poddisruptionbudget.policy/machine-config-supervisor configured"}
