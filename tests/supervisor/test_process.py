"""The supervisor as a process: probes and metrics over HTTP, a clean SIGTERM, and `mcosup status`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

from clusterkit import NS, install_build_config
from mcosup.kube import client as kclient
from mcosup.kube.resources import LEASES, MACHINECONFIGPOOLS
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


async def test_status_summarises_pools_and_the_builder(
    kube: kclient.Kube, emulator: Any, tmp_path: Path
) -> None:
    await kube.create(
        MACHINECONFIGPOOLS,
        {
            "apiVersion": names.API_VERSION,
            "kind": "MachineConfigPool",
            "metadata": {"name": "infra", "labels": {names.LAYERING_ENABLED: ""}},
            "spec": {
                "machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: "infra"}},
                "nodeSelector": {"matchLabels": {"node-role.kubernetes.io/infra": ""}},
            },
        },
    )
    kubeconfig = emulator.write_kubeconfig(tmp_path / "admin.kubeconfig")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcosup",
        "status",
        "--kubeconfig",
        str(kubeconfig),
        env=dict(os.environ, COLUMNS="200", MCOSUP_NAMESPACE=NS),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "infra" in text and "yes" in text  # layered
    assert "Machine OS Builder" in text and "(none)" in text

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
