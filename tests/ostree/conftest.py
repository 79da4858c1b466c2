"""Fixtures for the ostree host: a real registry with credentials, and hosts cleaned up afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mcosup.sim.ostreehost import make_removable, missing_ostree
from mcosup.sim.registry import Registry

CREDENTIALS = ("node", "pull-s3cret")


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Path]:
    """A directory for ostree hosts; its deployments are made removable again afterwards."""
    if why := missing_ostree():
        pytest.fail(f"the ostree host tests need a real sysroot: {why}")
    path = tmp_path / "hosts"
    path.mkdir()
    yield path
    make_removable(path)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with Registry(tmp_path / "registry", credentials=CREDENTIALS) as reg:
        yield reg


@pytest.fixture
def pull_url(registry: Registry) -> str:
    """The registry URL a node pulls from, with its pull secret's credentials."""
    return f"http://{CREDENTIALS[0]}:{CREDENTIALS[1]}@{registry.host}"
