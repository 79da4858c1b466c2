"""Fixtures of the daemon suites: the emulator with a Node and the daemon's credential, a fake host and a
registry that knows which manifests exist; and (from :mod:`ostreekit`) what an ostree host needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from daemon_kit import MC1, MC2, NODE, NS, Cluster, Registry
from ostreekit import image_registry, ostree_hosts, pull_url

from mcosup.kube import client as kclient
from mcosup.model import names
from mcosup.runtime.settings import KubeSettings
from mcosup.sim.fakehost import FakeHost

__all__ = ["image_registry", "ostree_hosts", "pull_url"]


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    reg = Registry()
    app = web.Application()
    app.router.add_get("/v2/{repo:.+}/manifests/{ref}", reg.handle)  # HEAD too
    app.router.add_get("/v2/{repo:.+}/blobs/{digest}", reg.config)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    reg.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield reg
    finally:
        await runner.cleanup()


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path / "host")


@pytest.fixture
async def cluster(emulator: Any, admin_kubeconfig: Path) -> AsyncIterator[Cluster]:
    await emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    ready = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}
    await emulator.create_object(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "status": ready}
    )
    for mc in (MC1, MC2):
        await emulator.create_object(mc)
    # The daemon runs with its own ServiceAccount's credential, bound to its node, as in the DaemonSet.
    daemon_kubeconfig = emulator.write_kubeconfig_for_service_account(
        admin_kubeconfig.parent / "daemon.kubeconfig", NS, names.DAEMON_SA, node_name=NODE
    )
    async with kclient.connect(KubeSettings(kubeconfig=str(admin_kubeconfig))) as kube:
        yield Cluster(kube, daemon_kubeconfig)
