"""A crash after every single host change, in every flow: the next daemon converges to the same end.

In-process and exhaustive: a host that dies (raises past the agent) right after its N-th change —
file write (the journal's own included), removal, command — for every N until a run gets through.
After each crash a fresh agent on the same host finishes the job, as a restarted pod would. The real
kill -9 of real processes is in test_daemon_e2e; this covers the points between commands too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from daemon_kit import MC1, MemoryCluster

from mcosup.daemon.agent import Agent
from mcosup.daemon.executor import RebootRequested
from mcosup.daemon.host import LocalHost
from mcosup.model import names
from mcosup.runtime.settings import AgentSettings
from mcosup.sim.fakehost import STOCK_IMAGE, FakeHost

IMG_A = "registry.local:5000/os/worker@sha256:" + "a" * 64


class Crash(BaseException):
    """The process died (BaseException: nothing in the agent may catch it)."""


class CrashingHost(LocalHost):
    def __init__(self, root: Path, env: dict[str, str], crash_after: int | None):
        super().__init__(root, env=env)
        self.changes = 0
        self.crash_after = crash_after

    def _changed(self) -> None:
        self.changes += 1
        if self.crash_after is not None and self.changes >= self.crash_after:
            self.crash_after = None
            raise Crash

    def write_file(
        self, path: str, contents: bytes, mode: int, user: str | None = None, group: str | None = None
    ) -> None:
        super().write_file(path, contents, mode, user, group)
        self._changed()

    def make_dir(self, path: str, mode: int, user: str | None = None, group: str | None = None) -> None:
        super().make_dir(path, mode, user, group)
        self._changed()

    def remove_file(self, path: str) -> None:
        super().remove_file(path)
        self._changed()

    def remove_dir(self, path: str) -> None:
        super().remove_dir(path)
        self._changed()

    async def rebase(self, image: str) -> None:
        await super().rebase(image)
        self._changed()

    async def kargs(self, append: Sequence[str], delete: Sequence[str]) -> None:
        await super().kargs(append, delete)
        self._changed()

    async def systemctl(self, action: str, units: Sequence[str]) -> None:
        await super().systemctl(action, units)
        self._changed()

    async def daemon_reload(self) -> None:
        await super().daemon_reload()
        self._changed()

    async def update_ca_trust(self) -> None:
        await super().update_ca_trust()
        self._changed()

    async def reboot(self) -> None:
        await super().reboot()
        self._changed()


async def converge(cluster: MemoryCluster, fake: FakeHost, crash_after: int | None) -> tuple[int, bool]:
    """(host changes made by the first daemon, whether it crashed); then finish with fresh daemons."""
    first = CrashingHost(fake.rootfs, fake.env(), crash_after)
    crashed = False
    host: LocalHost = first
    for _ in range(8):
        try:
            await Agent(cluster, host, node_name="worker-0", settings=AgentSettings()).reconcile()
        except Crash:
            crashed = True
        except RebootRequested:
            pass
        else:
            if cluster.annotations().get(names.STATE) == names.STATE_DONE:
                return first.changes, crashed
        host = LocalHost(fake.rootfs, env=fake.env())
    pytest.fail(f"did not converge after a crash at change {crash_after}: {cluster.annotations()}")


def end_state(fake: FakeHost) -> dict[str, Any]:
    state = fake.state()
    return {
        "files": {k: v for k, v in fake.files().items() if k != "/etc/mco/mcosup-daemon-state.json"},
        "booted": state["booted"],
        "staged": state["staged"],
        "enabled": sorted(state["enabled"]),
        "masked": sorted(state["masked"]),
    }


async def setup(flow: str, tmp: Path) -> tuple[MemoryCluster, FakeHost]:
    cluster = MemoryCluster()
    cluster.mcs = {"rendered-worker-1": MC1}
    cluster.configmap_data(names.OSIMAGEURL_CM, {names.BASE_OS_CONTAINER_IMAGE_KEY: STOCK_IMAGE})
    cluster.configmap_data(names.NODE_CERTIFICATES_CM, {"user-ca-bundle.crt": "U\n", "kubelet-ca.crt": "K\n"})
    fake = FakeHost(tmp)
    if flow == "revert":
        cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
        await converge(cluster, fake, None)
    if flow == "layered":
        cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
    else:
        cluster.target(names.MODE_LEGACY, "rendered-worker-1")
    return cluster, fake


@pytest.mark.slow
@pytest.mark.parametrize("flow", ["legacy", "layered", "revert"])
async def test_crash_after_every_host_change_converges(flow: str, tmp_path: Path) -> None:
    cluster, fake = await setup(flow, tmp_path / "clean")
    total, crashed = await converge(cluster, fake, None)
    assert not crashed
    expected = end_state(fake)
    reboots = fake.reboots()
    for n in range(1, total + 1):
        cluster, fake = await setup(flow, tmp_path / f"crash-{n}")
        _, crashed = await converge(cluster, fake, n)
        assert crashed
        assert end_state(fake) == expected, f"crash after host change {n} of {total} in the {flow} flow"
        assert fake.reboots() == reboots, f"crash after host change {n}: rebooted {fake.reboots()} times"
