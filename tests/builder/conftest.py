"""Fixtures for builder tests: a real local registry with a tiny base OS image in it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcosup.sim.registry import Registry, build_base_image

CREDENTIALS = ("builder", "s3cret")


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage under the test's tmp_path, asking for
    HTTP Basic credentials (``CREDENTIALS``) like a real private registry."""
    async with Registry(tmp_path / "registry", credentials=CREDENTIALS) as reg:
        yield reg


@pytest.fixture
async def base_image(registry: Registry) -> str:
    """``<registry>/os/base@sha256:...``: a FROM-scratch image with /usr/lib/os-release."""
    return await build_base_image(registry)


@pytest.fixture
async def emulator(mco_fixtures: Path) -> AsyncIterator[Any]:
    """The emulator with the MCO CRDs, whose Job controller replaces a failed build Pod after 0.1 s
    instead of kube-controller-manager's 10 s, so the retries of a failing build take no time."""
    import yaml

    from mcosup.sim.apiserver import Emulator

    async with Emulator(job_backoff=0.1) as emu:
        for crd in sorted((mco_fixtures / "crds").glob("*.yaml")):
            await emu.create_object(yaml.safe_load(crd.read_text()))
        yield emu
