"""Fixtures of the daemon suites: a fake host and a registry that knows which manifests exist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from daemon_kit import Registry

from mcosup.sim.fakehost import FakeHost


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    reg = Registry()
    app = web.Application()
    app.router.add_route("HEAD", "/v2/{repo:.+}/manifests/{ref}", reg.handle)
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
