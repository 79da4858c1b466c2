"""Fixtures for the emulator's own tests: a raw HTTPS client acting as a chosen user."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from emu_http import Api, cm

from mcosup.sim.apiserver import Emulator


@pytest.fixture
async def api(emulator: Emulator) -> AsyncIterator[Api]:
    ctx = ssl.create_default_context(cafile=str(emulator.ca_path))
    token = emulator.add_token("admin", ["system:masters"])
    async with aiohttp.ClientSession() as session:
        yield Api(session, emulator.url, ctx, token)


@pytest.fixture
def make_cm() -> Any:
    return cm
