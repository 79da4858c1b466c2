"""The supervisor as a process: probes and metrics over HTTP, a clean SIGTERM, and `mcosup status`."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

from clusterkit import NS, install_build_config
from mcosup.kube import client as kclient
from mcosup.kube.resources import LEASES, MACHINECONFIGPOOLS, MACHINEOSBUILDS, MACHINEOSCONFIGS
from mcosup.model import names
from waiting import eventually


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


async def test_probes_metrics_and_a_clean_sigterm(kube: kclient.Kube, emulator: Any, tmp_path: Path) -> None:
    await kube.create(
        MACHINECONFIGPOOLS,
        {
            "apiVersion": names.API_VERSION,
            "kind": "MachineConfigPool",
            "metadata": {"name": "worker"},
            "spec": {
                "machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: "worker"}},
                "nodeSelector": {"matchLabels": {"node-role.kubernetes.io/worker": ""}},
            },
        },
    )
    await install_build_config(kube)
    kubeconfig = emulator.write_kubeconfig_for_service_account(
        tmp_path / "sup.kubeconfig", NS, names.SUPERVISOR_SA
    )
    port = free_port()
    env = dict(
        os.environ,
        MCOSUP_NAMESPACE=NS,
        MCOSUP_HTTP_HOST="127.0.0.1",
        MCOSUP_WEBHOOK_TLS="off",
        POD_NAME="sup-process",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcosup",
        "supervisor",
        "--kubeconfig",
        str(kubeconfig),
        "--http-port",
        str(port),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def ready() -> bool:
            try:
                status, _ = await get(f"http://127.0.0.1:{port}/readyz")
            except aiohttp.ClientError:
                return False
            return status == 200

        await eventually(ready, what="/readyz 200")
        status, text = await get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        await kube.patch(MACHINECONFIGPOOLS, "worker", {"metadata": {"labels": {names.LAYERING_ENABLED: ""}}})

        async def counted() -> bool:
            _, text = await get(f"http://127.0.0.1:{port}/metrics")
            return "mcosup_opted_in_pools 1.0" in text and 'controller="optin",result=' in text

        await eventually(counted, what="metrics for the opt-in")
        _, text = await get(f"http://127.0.0.1:{port}/metrics")
        for metric in (
            "mcosup_reconciles_total",
            "mcosup_queue_depth",
            "mcosup_watch_restarts",
            "mcosup_builder_restarts_total",
            "mcosup_watch_events_total",
        ):
            assert metric in text, metric
        lease = await kube.get(LEASES, "mcosup-supervisor", namespace=NS)
        assert lease["spec"]["holderIdentity"] == "sup-process"

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        lease = await kube.get(LEASES, "mcosup-supervisor", namespace=NS)
        assert lease["spec"]["holderIdentity"] == "", "the lease was not released on SIGTERM"
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert "Traceback" not in log, log[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def run_status(kubeconfig: Path, columns: int) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcosup",
        "status",
        "--kubeconfig",
        str(kubeconfig),
        env=dict(os.environ, COLUMNS=str(columns), MCOSUP_NAMESPACE=NS),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    return text.splitlines()


async def test_status_summarises_pools_builds_and_the_builder(
    kube: kclient.Kube, emulator: Any, tmp_path: Path
) -> None:
    for name, labels in (("infra", {names.LAYERING_ENABLED: ""}), ("worker", {})):
        await kube.create(
            MACHINECONFIGPOOLS,
            {
                "apiVersion": names.API_VERSION,
                "kind": "MachineConfigPool",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: name}},
                    "nodeSelector": {"matchLabels": {f"node-role.kubernetes.io/{name}": ""}},
                    "configuration": {"name": f"rendered-{name}-{'3f2a9c1b' * 4}"},
                },
            },
        )
    # The worker pool's current build, in the shapes of deploy/crds/ and contract section 11.
    build, digest = "worker-0123456789abcdef", "sha256:" + "4f2a9c1e" * 8
    image = f"127.0.0.1:5000/os/layered@{digest}"
    await kube.create(
        MACHINEOSCONFIGS,
        {
            "apiVersion": names.API_VERSION,
            "kind": names.MACHINEOSCONFIG_KIND,
            "metadata": {"name": "worker", "annotations": {names.CURRENT_MOSB_ANNOTATION: build}},
            "spec": {
                "machineConfigPool": {"name": "worker"},
                "imageBuilder": {"imageBuilderType": "Job"},
                "renderedImagePushSecret": {"name": "push"},
                "renderedImagePushSpec": "127.0.0.1:5000/os/layered:latest",
            },
        },
    )
    await kube.create(
        MACHINEOSBUILDS,
        {
            "apiVersion": names.API_VERSION,
            "kind": names.MACHINEOSBUILD_KIND,
            "metadata": {"name": build},
            "spec": {
                "machineConfig": {"name": f"rendered-worker-{'3f2a9c1b' * 4}"},
                "machineOSConfig": {"name": "worker"},
                "renderedImagePushSpec": f"127.0.0.1:5000/os/layered:{build}",
            },
        },
    )
    now = dt.datetime.now(dt.UTC)

    def stamp(minutes_ago: int) -> str:
        return (now - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def condition(type_: str, status: str) -> dict[str, str]:
        return {
            "type": type_,
            "status": status,
            "reason": type_,
            "message": "",
            "lastTransitionTime": stamp(0),
        }

    await kube.patch_status(
        MACHINEOSBUILDS,
        build,
        {
            "status": {
                "conditions": [
                    condition("Prepared", "False"),
                    condition("Building", "False"),
                    condition("Succeeded", "True"),
                    condition("Interrupted", "False"),
                    condition("Failed", "False"),
                ],
                "buildStart": stamp(300),
                "buildEnd": stamp(296),
                "digestedImagePushSpec": image,
            }
        },
    )
    kubeconfig = emulator.write_kubeconfig(tmp_path / "admin.kubeconfig")

    narrow = await run_status(kubeconfig, 80)
    assert max(len(line) for line in narrow) <= 80, narrow
    rows = {line.split()[0]: line.split() for line in narrow if line[:1].isalpha()}
    assert rows["infra"][:2] == ["infra", "label"]
    assert rows["worker"][:2] == ["worker", "MOSC"]
    assert rows["worker"][3:5] == ["0/0", "Succeeded"]
    assert rows["worker"][-1] == "4m"  # buildStart to buildEnd
    assert f"  build  {build}" in narrow
    assert "  image  127.0.0.1:5000/os/layered@sha256:4f2a9c1e4f2a…" in narrow
    assert "builder pod: none (it runs while some pool is opted in with valid settings)" in narrow

    wide = await run_status(kubeconfig, 200)
    assert f"rendered-worker-{'3f2a9c1b' * 4}" in "\n".join(wide) and f"  image  {image}" in wide

    bad = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcosup",
        "status",
        "--kubeconfig",
        str(tmp_path / "missing"),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await bad.communicate()
    # A kubeconfig that cannot work: exit 2 and one line naming the file and the fix (mcosup.cli).
    assert bad.returncode == 2 and f"kubeconfig {tmp_path / 'missing'} does not exist" in err.decode()
