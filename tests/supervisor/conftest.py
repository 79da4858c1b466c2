"""Fixtures for supervisor tests: an admin client and supervisors running in-process against the emulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clusterkit import NS, StartSupervisor, SupervisorHandle
from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.resources import NAMESPACES
from mcosup.runtime.settings import KubeSettings, LeaseSettings, SupervisorSettings
from mcosup.supervisor.run import run

# Short enough that the takeover test is quick, long enough that a loaded 2-core machine does not make
# a lone leader miss its renewals.
FAST_LEASE = LeaseSettings(lease_duration=4.0, renew_deadline=3.0, retry_period=0.3)


@pytest.fixture
async def kube(admin_kubeconfig: Path) -> AsyncIterator[kclient.Kube]:
    async with kclient.connect(KubeSettings(kubeconfig=str(admin_kubeconfig))) as k:
        with contextlib.suppress(errors.AlreadyExists):
            await k.create(NAMESPACES, {"metadata": {"name": NS}})
        yield k


@pytest.fixture
async def start_supervisor(emulator: Any, tmp_path: Path) -> AsyncIterator[StartSupervisor]:
    """Start supervisors in-process; each identity gets its own credentials, so the emulator's request
    log tells which replica wrote what."""
    handles: list[SupervisorHandle] = []

    async def start(identity: str = "sup-a", **overrides: Any) -> SupervisorHandle:
        kubeconfig = emulator.write_kubeconfig(tmp_path / f"{identity}.kubeconfig", user=identity)
        settings = SupervisorSettings(
            namespace=NS,
            http_host="127.0.0.1",
            http_port=0,
            identity=identity,
            image="mcosup:test",
            builder_backoff=0.3,
            **{
                "webhook_tls": "off",
                "webhook_port": 0,
                "webhook_cert_dir": str(tmp_path / identity),
                **overrides,
            },
        )
        bound = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(
            run(
                settings,
                KubeSettings(kubeconfig=str(kubeconfig), watch_timeout=60),
                lease=FAST_LEASE,
                on_ready=bound.set_result,
            )
        )
        await asyncio.wait({task, bound}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        handle = SupervisorHandle(task, identity)
        handle.http_port = bound.result()  # type: ignore[attr-defined]
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.stop()
