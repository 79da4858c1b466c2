"""The kubelet stand-in runs the emulator's Pods as local processes and reports back like a kubelet."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.resources import CONFIGMAPS, PODS, SECRETS
from mcosup.runtime.settings import KubeSettings
from mcosup.sim.kubelet import ImageRule, Kubelet, rewrite
from mcosup.sim.recorder import Recorder
from waiting import eventually

NS = "default"
SHELL = ImageRule("example.com/shell:*", entrypoint=("/bin/sh",))


@pytest.fixture
async def kube(admin_kubeconfig: Path) -> AsyncIterator[kclient.Kube]:
    async with kclient.connect(KubeSettings(kubeconfig=str(admin_kubeconfig))) as k:
        yield k


@pytest.fixture
async def kubelet(kube: kclient.Kube, emulator: Any, tmp_path: Path) -> AsyncIterator[Kubelet]:
    def credentials(ns: str, account: str, node: str | None, path: Path) -> Path:
        result: Path = emulator.write_kubeconfig_for_service_account(path, ns, account, node)
        return result

    k = Kubelet(
        kube,
        tmp_path / "kubelet",
        nodes=["node-a"],
        image_rules=[SHELL],
        credentials=credentials,
        log_sink=emulator.set_pod_log,
    )
    task = asyncio.create_task(k.run())
    await k.listed.wait()
    yield k
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def pod(name: str, script: str, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": "example.com/shell:1", "args": ["-c", script], **container}
            ],
        },
    }


async def phase(kube: kclient.Kube, name: str, wanted: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def check() -> bool:
        found.update(await kube.get(PODS, name, namespace=NS))
        return bool(found.get("status", {}).get("phase") == wanted)

    await eventually(check, what=f"pod {name} {wanted}", within=30)
    return found


async def kubectl_logs(kubeconfig: Path, name: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(kubeconfig), "-n", NS, "logs", name, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.decode()


def test_rewrite_replaces_whole_path_prefixes_only() -> None:
    paths = {"/etc/cfg": "/tmp/p/cfg", "/etc/cfg-2": "/tmp/p/cfg2", "/dev/termination-log": "/tmp/p/t"}
    assert rewrite("cat /etc/cfg/a /etc/cfg-2/b >/dev/termination-log", paths) == (
        "cat /tmp/p/cfg/a /tmp/p/cfg2/b >/tmp/p/t"
    )
    assert rewrite("/etc/cfgx /etc/cfg", paths) == "/etc/cfgx /tmp/p/cfg"
    assert rewrite("X=/etc/cfg:/etc/cfg-2", paths) == "X=/tmp/p/cfg:/tmp/p/cfg2"


async def test_volumes_env_termination_message_and_logs(
    kube: kclient.Kube, kubelet: Kubelet, admin_kubeconfig: Path
) -> None:
    await kube.create(
        CONFIGMAPS,
        {
            "metadata": {"name": "cfg"},
            "data": {"greeting": "hello"},
            "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()},
        },
        namespace=NS,
    )
    await kube.create(
        SECRETS,
        {"metadata": {"name": "sec"}, "data": {"token": base64.b64encode(b"s3cret").decode()}},
        namespace=NS,
    )
    script = (
        "set -eu; cat /etc/cfg/greeting; echo; cat /etc/sec/token; echo; "
        'test "$(stat -c %a /etc/sec/token)" = 400; '
        "wc -c < /etc/cfg/blob; echo $WHERE; echo $POD; "
        "mkdir -p /scratch/x && echo kept > /scratch/x/f; "
        'test -n "$KUBECONFIG"; '
        "printf 'all done' > /dev/termination-log"
    )
    body = pod(
        "p1",
        script,
        env=[
            {"name": "WHERE", "value": "/scratch/x"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        volumeMounts=[
            {"name": "c", "mountPath": "/etc/cfg"},
            {"name": "s", "mountPath": "/etc/sec"},
            {"name": "w", "mountPath": "/scratch"},
        ],
    )
    body["spec"]["nodeName"] = "node-a"
    body["spec"]["volumes"] = [
        {"name": "c", "configMap": {"name": "cfg"}},
        {"name": "s", "secret": {"secretName": "sec", "defaultMode": 0o400}},
        {"name": "w", "emptyDir": {}},
    ]
    await kube.create(PODS, body, namespace=NS)
    done = await phase(kube, "p1", "Succeeded")
    (status,) = done["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 0
    assert status["state"]["terminated"]["message"] == "all done"
    logs = await kubectl_logs(admin_kubeconfig, "p1")
    lines = logs.splitlines()
    assert lines[0] == "hello"
    assert lines[1] == "s3cret"
    assert lines[2].strip() == "2"
    assert lines[3].endswith("/volumes/w/x")  # env values are rewritten too
    assert lines[4] == "p1"


async def test_failure_falls_back_to_log_tail(kube: kclient.Kube, kubelet: Kubelet) -> None:
    script = "for i in $(seq 1 100); do echo line $i; done; exit 3"
    await kube.create(PODS, pod("p2", script, terminationMessagePolicy="FallbackToLogsOnError"), namespace=NS)
    done = await phase(kube, "p2", "Failed")
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert terminated["message"].splitlines()[-1] == "line 100"
    assert "line 20\n" not in terminated["message"]


async def test_a_container_that_ends_for_good_ends_the_pod_in_the_same_status_write(
    kube: kclient.Kube, kubelet: Kubelet, tmp_path: Path
) -> None:
    """Containers that will not restart: one ending while another runs is reported (phase Running); the
    last one's end comes with the final phase, never as a Running Pod with every container ended."""
    recorder = Recorder(kube, PODS)
    task = asyncio.create_task(recorder.run())
    try:
        await recorder.listed.wait()
        go = tmp_path / "go"
        body = pod("p-two", "exit 0")
        body["spec"]["containers"].append(
            {
                "name": "slow",
                "image": "example.com/shell:1",
                "args": ["-c", f"while [ ! -e {go} ]; do sleep 0.02; done"],
            }
        )
        await kube.create(PODS, body, namespace=NS)

        def states(obj: dict[str, Any]) -> dict[str, str]:
            return {
                c["name"]: next(iter(c["state"]))
                for c in (obj.get("status") or {}).get("containerStatuses") or []
            }

        async def first_ended() -> bool:
            current = await kube.get(PODS, "p-two", namespace=NS)
            return states(current).get("main") == "terminated"

        await eventually(first_ended, what="container main of p-two terminated", within=30)
        go.touch()
        await phase(kube, "p-two", "Succeeded")
        await eventually(
            lambda: any(
                o["status"].get("phase") == "Succeeded" for _, _, o in recorder.history if "status" in o
            ),
            what="the recorder sees p-two Succeeded",
            within=30,
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    seen = [(o["status"].get("phase"), states(o)) for _, _, o in recorder.history if "status" in o]
    assert ("Running", {"main": "terminated", "slow": "running"}) in seen
    assert ("Running", {"main": "terminated", "slow": "terminated"}) not in seen
    assert seen[-1] == ("Succeeded", {"main": "terminated", "slow": "terminated"})


async def test_a_status_report_the_api_server_keeps_failing_is_sent_until_it_lands(
    kube: kclient.Kube, kubelet: Kubelet, emulator: Any
) -> None:
    # Story chaos (issue 17), seed 2: the API server dropped a build pod's binding request more often
    # than the client retries; the kubelet stand-in gave the pod up (logged "failed to run") and never
    # ran it. Its status writes went the same way. A kubelet keeps sending until the server takes it.
    attempts = kube.retry.attempts
    rule = emulator.faults.fail(503, method="PATCH", path=r"/pods/p8/status$", times=attempts + 2)
    await kube.create(PODS, pod("p8", "echo done"), namespace=NS)
    await phase(kube, "p8", "Succeeded")
    assert rule.hits == attempts + 2


async def test_missing_configmap_keeps_pod_pending_until_it_exists(
    kube: kclient.Kube, kubelet: Kubelet
) -> None:
    body = pod("p3", "cat /etc/late/k", volumeMounts=[{"name": "l", "mountPath": "/etc/late"}])
    body["spec"]["volumes"] = [{"name": "l", "configMap": {"name": "late"}}]
    await kube.create(PODS, body, namespace=NS)
    await phase(kube, "p3", "Pending")
    await kube.create(CONFIGMAPS, {"metadata": {"name": "late"}, "data": {"k": "v"}}, namespace=NS)
    await phase(kube, "p3", "Succeeded")


async def test_unknown_image_waits_with_err_image_pull(kube: kclient.Kube, kubelet: Kubelet) -> None:
    body = pod("p4", "true")
    body["spec"]["containers"][0]["image"] = "quay.io/nobody/unknown:1"
    await kube.create(PODS, body, namespace=NS)

    async def waiting() -> bool:
        current = await kube.get(PODS, "p4", namespace=NS)
        statuses = current.get("status", {}).get("containerStatuses") or []
        return bool(statuses) and statuses[0]["state"].get("waiting", {}).get("reason") == "ErrImagePull"

    await eventually(waiting, what="ErrImagePull")


async def test_deletion_kills_the_process_group(kube: kclient.Kube, kubelet: Kubelet, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The shell starts a child: the kill must reach the whole group, not only the shell.
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    body = pod("p5", script)
    body["spec"]["terminationGracePeriodSeconds"] = 1
    body["spec"]["nodeName"] = "node-a"
    await kube.create(PODS, body, namespace=NS)
    await phase(kube, "p5", "Running")
    await eventually(lambda: pidfile.exists() and pidfile.read_text().strip() != "", what="child pid")
    child = int(pidfile.read_text())
    await kube.delete(PODS, "p5", namespace=NS)

    async def gone() -> bool:
        try:
            await kube.get(PODS, "p5", namespace=NS)
        except errors.NotFound:
            return True
        return False

    await eventually(gone, what="pod p5 deleted (kubelet confirmed the graceful deletion)")

    def dead() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # A zombie is dead too: it only waits for its parent to reap it.
        with contextlib.suppress(OSError):
            return Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0] == "Z"
        return True

    await eventually(dead, what=f"child process {child} killed")


async def test_host_path_is_the_nodes_directory(kube: kclient.Kube, kubelet: Kubelet, tmp_path: Path) -> None:
    body = pod("p6", "mkdir -p /rootfs/etc && echo node-a > /rootfs/etc/marker", volumeMounts=[
        {"name": "host", "mountPath": "/rootfs"},
    ])  # fmt: skip
    body["spec"]["nodeName"] = "node-a"
    body["spec"]["volumes"] = [{"name": "host", "hostPath": {"path": "/"}}]
    await kube.create(PODS, body, namespace=NS)
    await phase(kube, "p6", "Succeeded")
    assert (tmp_path / "kubelet" / "hosts" / "node-a" / "etc" / "marker").read_text() == "node-a\n"
