"""Two supervisor replicas on a real control plane: one leads through a real Lease, the other takes over.

Each replica is a real ``mcosup supervisor`` process with the supervisor ServiceAccount's token and
nothing but ``deploy/rbac/``; the leader is killed with SIGKILL (no Lease release), and the standby must
take the Lease once it expires and go on rendering, with no request refused in either log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcosup.kube import client as kclient
from mcosup.kube.resources import LEASES, MACHINECONFIGPOOLS
from mcosup.model import names
from mcosup.runtime.settings import KubeSettings
from mcosup.sim.backends import RealBackend
from mcosup.sim.objects import machineconfig, pool_object
from mcosup.sim.registry import free_port
from waiting import eventually

pytestmark = pytest.mark.timeout(180)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NS = names.DEFAULT_NAMESPACE
LEASE = "mcosup-supervisor"


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[RealBackend]:
    real = RealBackend(tmp_path / "controlplane")
    await real.start()
    try:
        for path in [DEPLOY / "namespace.yaml", *sorted((DEPLOY / "crds").glob("*.yaml"))]:
            for doc in yaml.safe_load_all(path.read_text()):
                await real.create_object(doc)
        await real.install_identities()
        yield real
    finally:
        await real.stop()


class Replica:
    def __init__(self, backend: RealBackend, workdir: Path, identity: str) -> None:
        self.identity = identity
        self.log = workdir / f"{identity}.log"
        self.kubeconfig = backend.write_kubeconfig_for_service_account(
            workdir / f"{identity}.kubeconfig", NS, names.SUPERVISOR_SA
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = dict(
            os.environ,
            MCOSUP_NAMESPACE=NS,
            MCOSUP_HTTP_HOST="127.0.0.1",
            MCOSUP_WEBHOOK_TLS="off",
            POD_NAME=self.identity,
        )
        env.pop("KUBECONFIG", None)
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mcosup", "supervisor",
                "--kubeconfig", str(self.kubeconfig),
                "--http-port", str(free_port()),
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self.proc.wait(), 20)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


async def holder(kube: kclient.Kube) -> str | None:
    try:
        lease: dict[str, Any] = await kube.get(LEASES, LEASE, namespace=NS)
    except Exception:
        return None
    return (lease.get("spec") or {}).get("holderIdentity") or None


async def rendered(kube: kclient.Kube) -> str | None:
    pool = await kube.get(MACHINECONFIGPOOLS, "worker")
    return ((pool.get("spec") or {}).get("configuration") or {}).get("name") or None


async def test_the_standby_takes_the_lease_from_a_killed_leader_and_goes_on(
    backend: RealBackend, tmp_path: Path
) -> None:
    await backend.create_object(pool_object("worker"))
    await backend.create_object(machineconfig("00-worker", "worker", {"/etc/a.conf": ("a\n", 0o644)}))
    replicas = {r.identity: r for r in (Replica(backend, tmp_path, f"sup-{x}") for x in "ab")}
    admin = backend.write_kubeconfig(tmp_path / "admin.kubeconfig")
    async with kclient.connect(KubeSettings(kubeconfig=str(admin))) as kube:
        try:
            for r in replicas.values():
                await r.start()
            await eventually(lambda: holder(kube), within=60, every=0.2, what="a replica holding the Lease")
            leader = await holder(kube)
            assert leader in replicas
            await eventually(lambda: rendered(kube), within=60, every=0.2, what="the pool rendered")
            first = await rendered(kube)
            standby = next(r for name, r in replicas.items() if name != leader)

            await replicas[str(leader)].stop(signal.SIGKILL)
            await backend.create_object(machineconfig("10-worker", "worker", {"/etc/b.conf": ("b\n", 0o644)}))

            async def taken_over() -> bool:
                return await holder(kube) == standby.identity

            await eventually(taken_over, within=60, every=0.2, what=f"{standby.identity} taking the Lease")

            async def rendered_again() -> bool:
                return await rendered(kube) not in (None, first)

            await eventually(rendered_again, within=60, every=0.2, what="the new leader rendering the change")
        finally:
            for r in replicas.values():
                await r.stop()
    for r in replicas.values():
        log = r.text()
        assert "403 Forbidden" not in log and " is forbidden: " not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    assert "became leader" in standby.text()
