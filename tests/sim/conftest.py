"""Fixtures for the emulator's own tests: a raw HTTPS client acting as a chosen user."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from emu_http import Api, cm
from emu_sides import Side, emulator_side, real_side

from mcosup.sim.apiserver import Emulator
from mcosup.sim.controlplane import ControlPlane


@pytest.fixture
async def api(emulator: Emulator) -> AsyncIterator[Api]:
    ctx = ssl.create_default_context(cafile=str(emulator.ca_path))
    token = emulator.add_token("admin", ["system:masters"])
    async with aiohttp.ClientSession() as session:
        yield Api(session, emulator.url, ctx, token)


@pytest.fixture
def make_cm() -> Any:
    return cm


@pytest.fixture
async def both(control_plane: ControlPlane, tmp_path: Path) -> AsyncIterator[tuple[Side, Side]]:
    """A fresh emulator and the session's real control plane, as two :class:`Side`s (emulator first)."""
    async with Emulator() as emu, aiohttp.ClientSession() as session:
        emulator = emulator_side(emu, session, tmp_path, control_plane.binary("kubectl"))
        real = real_side(control_plane, session, tmp_path)
        try:
            yield emulator, real
        finally:
            # The real server is shared by the whole session: leave nothing of this test behind.
            for path in reversed(real.cleanup):
                await real.api.call("DELETE", path)
