"""Fixtures of the rollout suites on the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rollout_harness import connect, ensure_namespace

from mcosup.kube import client as kclient


@pytest.fixture
async def kube(admin_kubeconfig: Path) -> AsyncIterator[kclient.Kube]:
    """An admin connection to the emulator, with the namespace made."""
    async with connect(admin_kubeconfig) as k:
        await ensure_namespace(k)
        yield k
