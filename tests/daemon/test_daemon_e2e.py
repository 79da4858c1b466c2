"""Real `mcosup daemon` processes against the API emulator and the fake host (contract section 6).

Each test drives a Node the way the supervisor does (label + desired* annotations in one patch) and
waits for what a user would see: the Node's report and the host tree. The flows that change what a node
boots (layered, a new image, a revert, and their crash points) run on a real ostree sysroot instead:
``test_daemon_ostree``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from daemon_kit import KEY, NODE, Cluster, Registry, apply_legacy, assert_legacy_mc1, rendered

from mcosup.daemon import command
from mcosup.daemon import plan as p
from mcosup.daemon.certplan import USER_CA_PATH
from mcosup.model import names
from mcosup.sim import fakehost
from mcosup.sim.fakehost import STOCK_IMAGE, FakeHost
from waiting import eventually

IMG_A = "127.0.0.1:5000/os/worker@sha256:" + "a" * 64


def test_reboot_exit_code_agrees() -> None:
    assert fakehost.REBOOT_EXIT_CODE == command.REBOOT_EXIT_CODE


async def test_legacy_apply_and_replace(cluster: Cluster, fake: FakeHost) -> None:
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig) as handle:
        await apply_legacy(cluster, fake)
        assert_legacy_mc1(fake)
        assert fake.reboots() == 1 and handle.exit_codes == [command.REBOOT_EXIT_CODE]

        await cluster.target(names.MODE_LEGACY, "rendered-worker-2")
        await cluster.done("rendered-worker-2")
        assert fake.read("/etc/app/app.conf") == b"x=2\n" and fake.mode("/etc/app/app.conf") == 0o644
        assert fake.read("/etc/old.conf") is None
        assert fake.read("/etc/systemd/system/app.service") is None and not fake.unit_enabled("app.service")
        assert fake.read("/etc/systemd/system/docker.service.d/10-opts.conf") is None
        assert fake.unit_enabled("docker.service") and not fake.unit_masked("crio.service")
        assert fake.kargs() == ["root=/dev/vda4", "rw", "mitigations=off"]
        assert fake.read(p.SSH_KEYS_FILE) == (KEY + "\nssh-rsa BBBB second\n").encode()
        assert fake.reboots() == 2
    # SIGTERM (the pod being deleted) ends the daemon cleanly.
    assert handle.process is not None and handle.process.returncode == 0


async def test_certificates_in_every_mode(cluster: Cluster, fake: FakeHost) -> None:
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig):
        # Before the node has any target (a paused pool never gives it one): certificates still land.
        await cluster.configmap(
            names.NODE_CERTIFICATES_CM,
            {"registry-a.example.com..5000.crt": "RA", "user-ca-bundle.crt": "U1"},
        )
        await eventually(
            lambda: fake.read("/etc/docker/certs.d/a.example.com:5000/ca.crt") == b"RA", what="registry cert"
        )
        await eventually(
            lambda: fake.read("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem") == b"U1",
            what="trust updated",
        )
        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
        await cluster.done("rendered-worker-1", IMG_A)
        await cluster.configmap(
            names.NODE_CERTIFICATES_CM, {"registry-b.example.com.crt": "RB", "user-ca-bundle.crt": "U2"}
        )
        await eventually(
            lambda: not (fake.rootfs / "etc/docker/certs.d/a.example.com:5000").exists(),
            what="registry a's directory removed",
        )
        await eventually(
            lambda: fake.read("/etc/docker/certs.d/b.example.com/ca.crt") == b"RB", what="cert b"
        )
        await eventually(
            lambda: fake.read("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem") == b"U2",
            what="trust updated",
        )
        assert fake.reboots() == 1  # certificates never reboot


async def test_failed_rebase_degrades_then_recovers(
    cluster: Cluster, tmp_path: Path, registry: Registry
) -> None:
    host = FakeHost(tmp_path / "reg-host", registry=registry.url)
    async with fakehost.daemon(host, NODE, kubeconfig=cluster.kubeconfig):
        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)

        async def degraded() -> bool:
            ann = await cluster.annotations()
            return ann.get(names.STATE) == names.STATE_DEGRADED and "manifest unknown" in ann.get(
                names.REASON, ""
            )

        await eventually(degraded, what="Degraded with the rebase error")
        ann = await cluster.annotations()
        assert ann[names.STATE] == names.STATE_DEGRADED, "retries stay Degraded, they do not flap"
        reason = ann[names.REASON]
        assert f"rebase onto {IMG_A}" in reason and "rpm-ostree rebase" in reason
        registry.push(IMG_A)
        await cluster.done("rendered-worker-1", IMG_A)
        assert names.REASON not in await cluster.annotations()
        assert host.booted_image() == IMG_A and host.reboots() == 1


async def test_missing_rendered_config_degrades_until_it_exists(
    cluster: Cluster, fake: FakeHost, emulator: Any
) -> None:
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig):
        await cluster.target(names.MODE_LEGACY, "rendered-worker-3")

        async def degraded() -> bool:
            ann = await cluster.annotations()
            return ann.get(names.STATE) == names.STATE_DEGRADED and "rendered-worker-3" in ann.get(
                names.REASON, ""
            )

        await eventually(degraded, what="Degraded naming the missing rendered config")
        mc3 = rendered("rendered-worker-3", {"/etc/three": ("3\n", 0o644)}, keys=[KEY])
        await emulator.create_object(mc3)
        await cluster.done("rendered-worker-3")
        assert fake.read("/etc/three") == b"3\n"


# Kill -9 at each host command of the legacy flow: the daemon converges, and never reboots twice. (The
# flows that change what the node boots run on a real sysroot: test_daemon_ostree.)
LEGACY_POINTS = [
    "systemctl daemon-reload",
    "systemctl mask",
    "systemctl enable",
    "rpm-ostree kargs --append-if-missing=nosmt",
    "systemctl reboot",
]


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("point", LEGACY_POINTS)
async def test_kill_at_each_legacy_step_converges(
    cluster: Cluster, fake: FakeHost, point: str, when: str
) -> None:
    await cluster.configmap(names.NODE_CERTIFICATES_CM, {"user-ca-bundle.crt": "U\n"})
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig) as handle:
        reboots = fake.reboots()
        fake.kill_daemon_at(point, when)  # type: ignore[arg-type]
        await cluster.target(names.MODE_LEGACY, "rendered-worker-1")
        await cluster.done("rendered-worker-1")
        assert_legacy_mc1(fake)
        assert fake.booted_image() == STOCK_IMAGE
        assert fake.read(USER_CA_PATH) == b"U\n"
        assert fake.kills_pending() == 0, "the kill point was never reached"
        assert -9 in handle.exit_codes
        assert fake.reboots() == reboots + 1
