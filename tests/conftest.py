"""Shared test fixtures: strictness checks that apply to every test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
MCO_FIXTURES = SHARED / "fixtures" / "mco"


@pytest.fixture
def mco_fixtures() -> Path:
    """The real MCO CRDs and objects (read from ../shared at test time, never copied in)."""
    if not MCO_FIXTURES.is_dir():
        pytest.fail(f"MCO fixtures not found at {MCO_FIXTURES}: the checkout must sit beside shared/")
    return MCO_FIXTURES


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real etcd, kube-apiserver and kube-controller-manager shared by the session's tests.

    Built from the Kubernetes Go modules pinned in tests/controlplane/ (``make install`` builds them; a
    missing binary is built here, never skipped). Tests that share it use names of their own.
    """
    from mcosup.sim.controlplane import ControlPlane

    with ControlPlane(tmp_path_factory.mktemp("controlplane")) as cp:
        yield cp


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running behind it."""
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    # Give tasks that are finishing their cancellation one loop turn to go.
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    if leaked:
        for t in leaked:
            t.cancel()
        await asyncio.gather(*leaked, return_exceptions=True)
        pytest.fail(f"test leaked {len(leaked)} asyncio task(s): {[t.get_coro() for t in leaked]}")


@pytest.fixture
async def emulator(mco_fixtures: Path) -> AsyncIterator[Any]:
    """A started Kubernetes API emulator with the two MCO CRDs installed; stopped at teardown."""
    import yaml

    from mcosup.sim.apiserver import Emulator

    async with Emulator() as emu:
        for crd in sorted((mco_fixtures / "crds").glob("*.yaml")):
            await emu.create_object(yaml.safe_load(crd.read_text()))
        yield emu


@pytest.fixture
def admin_kubeconfig(emulator: Any, tmp_path: Path) -> Path:
    """An admin (group system:masters) kubeconfig for the `emulator` fixture."""
    path: Path = emulator.write_kubeconfig(tmp_path / "admin.kubeconfig")
    return path
