"""Fixtures for the emulator's own tests: a raw HTTPS client acting as a chosen user."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from emu_http import Api, cm
from emu_sides import Side

from mcosup.sim.apiserver import Emulator
from mcosup.sim.controlplane import ADMIN_USER, ControlPlane


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
        emulator = Side(
            "emulator",
            Api(
                session,
                emu.url,
                ssl.create_default_context(cafile=str(emu.ca_path)),
                emu.add_token(ADMIN_USER, ["system:masters"]),
            ),
            emu.write_kubeconfig(tmp_path / "emulator.kubeconfig", user=ADMIN_USER),
            control_plane.binary("kubectl"),
            real=False,
        )
        real = Side(
            "real",
            Api(
                session,
                control_plane.url,
                ssl.create_default_context(cadata=control_plane.ca_pem.decode()),
                control_plane.admin_token,
            ),
            control_plane.write_kubeconfig(tmp_path / "real.kubeconfig"),
            control_plane.binary("kubectl"),
            real=True,
        )
        try:
            yield emulator, real
        finally:
            # The real server is shared by the whole session: leave nothing of this test behind.
            for path in reversed(real.cleanup):
                await real.api.call("DELETE", path)
