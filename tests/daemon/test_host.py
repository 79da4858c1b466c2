"""The real host backends (rpm-ostree, bootc, systemctl, files) against the fake host's commands."""

from __future__ import annotations

import os

import pytest
from daemon_kit import Registry

from mcosup.daemon.host import HostError, LocalHost, parse_bootc_status, parse_rpm_ostree_status
from mcosup.daemon.hostfacts import Deployment, DiskFile
from mcosup.sim.fakehost import STOCK_IMAGE, FakeHost

IMG = "registry.local:5000/os/worker@sha256:" + "c" * 64


@pytest.fixture(params=["rpm-ostree", "bootc"])
def host(request: pytest.FixtureRequest, fake: FakeHost) -> LocalHost:
    return LocalHost(fake.rootfs, backend=request.param, env=fake.env())


async def test_rebase_stages_and_reboot_boots(host: LocalHost, fake: FakeHost) -> None:
    booted, staged = await host.deployments()
    assert booted == Deployment(STOCK_IMAGE, STOCK_IMAGE.split("@")[1], ("root=/dev/vda4", "rw"))
    assert staged is None
    before = host.boot_id()
    await host.rebase(IMG)
    booted, staged = await host.deployments()
    assert booted is not None and booted.image == STOCK_IMAGE
    assert staged is not None and staged.image == IMG and staged.digest == "sha256:" + "c" * 64
    await host.reboot()
    booted, staged = await host.deployments()
    assert booted is not None and booted.image == IMG and staged is None
    assert host.boot_id() != before
    assert fake.booted_image() == IMG and fake.reboots() == 1


async def test_kargs_stage_a_deployment(host: LocalHost, fake: FakeHost) -> None:
    await host.kargs(["nosmt", "foo=bar"], ["rw"])
    _, staged = await host.deployments()
    assert staged is not None and staged.kargs == ("root=/dev/vda4", "nosmt", "foo=bar")
    assert fake.kargs() == ["root=/dev/vda4", "rw"]  # not before the reboot
    await host.reboot()
    assert fake.kargs() == ["root=/dev/vda4", "nosmt", "foo=bar"]
    # Again (as after a crash before the daemon recorded it): no duplicate, no error.
    await host.kargs(["nosmt"], ["rw"])
    _, staged = await host.deployments()
    assert staged is None and fake.kargs() == ["root=/dev/vda4", "nosmt", "foo=bar"]


async def test_systemctl_units(host: LocalHost, fake: FakeHost) -> None:
    with pytest.raises(
        HostError, match=r"systemctl .* enable app.service failed .*Unit file app.service does not"
    ):
        await host.systemctl("enable", ["app.service"])
    host.write_file("/etc/systemd/system/static.service", b"[Service]\n", 0o644)
    host.write_file("/etc/systemd/system/app.service", b"[Service]\n[Install]\nWantedBy=a.target\n", 0o644)
    await host.daemon_reload()
    await host.systemctl("enable", ["app.service", "sshd.service", "static.service"])
    assert fake.unit_enabled("app.service") and fake.unit_enabled("sshd.service")
    # As systemd: a unit without an [Install] section is static; enabling it succeeds and does nothing.
    assert not fake.unit_enabled("static.service")
    await host.systemctl("disable", ["app.service"])
    await host.systemctl("mask", ["crio.service"])
    assert not fake.unit_enabled("app.service") and fake.unit_masked("crio.service")
    assert fake.state()["daemonReloads"] == 1


async def test_update_ca_trust(host: LocalHost, fake: FakeHost) -> None:
    host.write_file("/etc/pki/ca-trust/source/anchors/user-ca-bundle.crt", b"CERT\n", 0o644)
    await host.update_ca_trust()
    assert fake.read("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem") == b"CERT\n"


async def test_failed_command_reports_its_error(host: LocalHost, fake: FakeHost) -> None:
    fake.fail("rpm-ostree rebase", "reading manifest: manifest unknown")
    fake.fail("bootc switch", "reading manifest: manifest unknown")
    with pytest.raises(
        HostError, match="failed with exit status 1: error: reading manifest: manifest unknown"
    ):
        await host.rebase(IMG)
    assert fake.staged_image() is None


def test_files_atomic_with_mode_and_owner(fake: FakeHost) -> None:
    host = LocalHost(fake.rootfs)
    host.write_file("/etc/deep/dir/x.conf", b"one", 0o640, "core", None)
    assert host.read_file("/etc/deep/dir/x.conf") == DiskFile(b"one", 0o640)
    host.write_file("/etc/deep/dir/x.conf", b"two", 0o600)
    assert fake.read("/etc/deep/dir/x.conf") == b"two" and fake.mode("/etc/deep/dir/x.conf") == 0o600
    assert [p.name for p in (fake.rootfs / "etc/deep/dir").iterdir()] == ["x.conf"]  # no temp left
    with pytest.raises(HostError, match=r"user 'nobody-here'.*not in /etc/passwd"):
        host.write_file("/etc/y", b"", 0o644, "nobody-here")
    with pytest.raises(HostError, match="absolute"):
        host.write_file("/etc/../../escape", b"", 0o644)
    host.remove_file("/etc/deep/dir/x.conf")
    host.remove_file("/etc/deep/dir/x.conf")  # idempotent
    assert host.read_file("/etc/deep/dir/x.conf") is None
    host.write_file("/etc/docker/certs.d/a:5000/ca.crt", b"x", 0o644)
    assert host.list_dir("/etc/docker/certs.d") == ["a:5000"]
    host.remove_dir("/etc/docker/certs.d/a:5000")
    assert host.list_dir("/etc/docker/certs.d") == []


def test_unwritable_path_names_it(fake: FakeHost) -> None:
    host = LocalHost(fake.rootfs)
    # A regular file where a directory should be: unwritable even for root.
    with pytest.raises(
        HostError, match="cannot write /etc/os-release/x: /etc/os-release on the host is not a directory"
    ):
        host.write_file("/etc/os-release/x", b"", 0o644)


def test_password_hash_edits_shadow(fake: FakeHost) -> None:
    host = LocalHost(fake.rootfs)
    host.set_password_hash("core", "$6$salt$hash")
    shadow = fake.read("/etc/shadow")
    assert shadow is not None and b"core:$6$salt$hash:19000" in shadow and b"root:*:" in shadow
    assert fake.mode("/etc/shadow") == 0o640
    host.set_password_hash("core", None)
    assert b"core:*:19000" in (fake.read("/etc/shadow") or b"")
    with pytest.raises(HostError, match="no such user in /etc/shadow"):
        host.set_password_hash("ghost", "x")


def test_status_parsers_read_real_shapes() -> None:
    rpm = (
        '{"deployments": [{"booted": false, "staged": true, "container-image-reference": '
        f'"ostree-unverified-registry:{IMG}", "container-image-reference-digest": "sha256:{"c" * 64}"}}, '
        '{"booted": true, "staged": false, "origin": "fedora:fedora/x86_64/coreos/stable"}]}'
    )
    assert parse_rpm_ostree_status(rpm) == (Deployment(None, None), Deployment(IMG, "sha256:" + "c" * 64))
    bootc = (
        '{"status": {"staged": null, "booted": {"image": {"image": {"image": "quay.io/x:1", '
        '"transport": "registry"}, "imageDigest": "sha256:1"}}}}'
    )
    assert parse_bootc_status(bootc) == (Deployment("quay.io/x:1", "sha256:1"), None)
    with pytest.raises(HostError, match="not JSON"):
        parse_rpm_ostree_status("Deployments: *")


async def test_rebase_checks_the_registry(host: LocalHost, fake: FakeHost, registry: Registry) -> None:
    fake.set_registry(registry.url)
    with pytest.raises(HostError, match="manifest unknown"):
        await host.rebase(IMG)
    registry.push(IMG)
    await host.rebase(IMG)
    assert fake.staged_image() == IMG


async def test_exec_prefix_runs_host_tools_through_it(fake: FakeHost) -> None:
    # `env` stands in for `chroot /rootfs`: the prefix comes first, systemctl then needs no --root.
    host = LocalHost(fake.rootfs, env=fake.env(), exec_prefix=["env"])
    await host.systemctl("enable", ["sshd.service"])
    assert fake.unit_enabled("sshd.service")
    assert fake.command_log()[-1] == ["systemctl", "enable", "sshd.service"]


def test_ssh_directory_is_private(fake: FakeHost) -> None:
    host = LocalHost(fake.rootfs)
    host.make_dir("/home/core/.ssh", 0o700, "core", "core")
    assert fake.mode("/home/core/.ssh") == 0o700
    assert (fake.rootfs / "home/core/.ssh").stat().st_uid in (1000, os.getuid())
