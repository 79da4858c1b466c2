"""Fixtures for tests on the ostree host (tests/ostree, tests/daemon): import them into a conftest.

``ostree_hosts`` is a directory for :class:`~mcosup.sim.ostreehost.OstreeHost` s whose deployments are
made removable again afterwards (ostree leaves them immutable); ``image_registry`` a real registry
asking for credentials; ``pull_url`` the URL a node pulls from, its pull secret's credentials in it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mcosup.sim.ostreehost import make_removable, missing_ostree
from mcosup.sim.registry import Registry

CREDENTIALS = ("node", "pull-s3cret")


@pytest.fixture
def ostree_hosts(tmp_path: Path) -> Iterator[Path]:
    if why := missing_ostree():
        pytest.fail(f"this test needs a real ostree sysroot: {why}")
    path = tmp_path / "hosts"
    path.mkdir()
    yield path
    make_removable(path)


@pytest.fixture
async def image_registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with Registry(tmp_path / "registry", credentials=CREDENTIALS) as reg:
        yield reg


@pytest.fixture
def pull_url(image_registry: Registry) -> str:
    return f"http://{CREDENTIALS[0]}:{CREDENTIALS[1]}@{image_registry.host}"
