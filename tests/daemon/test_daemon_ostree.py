"""Real `mcosup daemon` processes on a real ostree sysroot (issue 19): the flows that change what a node
boots — layered, a new image, the bootc backend, the revert to stock — and kill -9 at their steps.

The images are real: the stock OS and, for each rendered config, the stock layers plus what the builder
lays out for it (its own ``build_context``), pushed to a local registry the node pulls from by digest.
Assertions are on the booted deployment: its commit, its files (contents, mode, owner), its kernel
arguments.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemon_kit import KEY, MC1, MC2, NODE, Cluster, assert_legacy_mc1
from imagekit import BOOTABLE, config_layer, push_image

from mcosup.daemon import plan as p
from mcosup.daemon.certplan import KUBELET_CA_PATH, USER_CA_PATH
from mcosup.daemon.journal import STATE_FILE
from mcosup.model import names
from mcosup.sim import fakehost
from mcosup.sim.ostreehost import OstreeHost
from mcosup.sim.registry import Registry
from waiting import eventually

pytestmark = pytest.mark.timeout(180)


@dataclasses.dataclass(frozen=True)
class Images:
    stock: str
    a: str  # MC1 built on the stock OS
    b: str  # MC2 built on the stock OS


@pytest.fixture
async def images(image_registry: Registry) -> Images:
    def push() -> Images:
        return Images(
            stock=push_image(image_registry, "os/stock", [BOOTABLE]),
            a=push_image(image_registry, "os/worker", [BOOTABLE, config_layer(MC1)], "a"),
            b=push_image(image_registry, "os/worker", [BOOTABLE, config_layer(MC2)], "b"),
        )

    return await asyncio.to_thread(push)


@pytest.fixture
async def host(
    ostree_hosts: Path, images: Images, pull_url: str, cluster: Cluster
) -> AsyncIterator[OstreeHost]:
    await cluster.configmap(names.OSIMAGEURL_CM, {names.BASE_OS_CONTAINER_IMAGE_KEY: images.stock})
    yield await asyncio.to_thread(OstreeHost, ostree_hosts / NODE, image=images.stock, registry=pull_url)


def without_journal(tree: dict[str, tuple[bytes, int]]) -> dict[str, tuple[bytes, int]]:
    return {path: v for path, v in tree.items() if path != STATE_FILE}


def rebases(host: OstreeHost) -> int:
    return sum(c[:2] == ["rpm-ostree", "rebase"] for c in host.command_log())


def assert_boots_mc1_image(host: OstreeHost, image: str) -> None:
    """The host boots ``image`` (MC1's): MC1's files as the image has them, kernel arguments applied."""
    assert host.booted_image() == image
    assert host.read("/etc/app/app.conf") == b"x=1\n" and host.mode("/etc/app/app.conf") == 0o640
    assert host.read("/usr/etc/app/app.conf") == b"x=1\n", "not the image's copy"
    assert (
        host.read("/etc/systemd/system/app.service")
        == b"[Service]\nExecStart=/bin/app\n[Install]\nWantedBy=multi-user.target\n"
    )
    tree = host.files()
    assert tree["/etc/systemd/system/multi-user.target.wants/app.service"][0] == (
        b"-> /etc/systemd/system/app.service"
    )
    assert tree["/etc/systemd/system/crio.service"][0] == b"-> /dev/null"
    assert host.kargs() == ["root=/dev/vda4", "rw", "nosmt"]
    assert host.read(p.SSH_KEYS_FILE) == (KEY + "\n").encode()


async def test_layered_then_a_new_image(cluster: Cluster, host: OstreeHost, images: Images) -> None:
    await cluster.configmap(names.NODE_CERTIFICATES_CM, {"kubelet-ca.crt": "KCA\n"})
    async with fakehost.daemon(host, NODE, kubeconfig=cluster.kubeconfig) as handle:
        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", images.a)
        await cluster.done("rendered-worker-1", images.a)
        assert_boots_mc1_image(host, images.a)
        assert host.reboots() == 1 and rebases(host) == 1
        assert host.read(KUBELET_CA_PATH) == b"KCA\n"
        first = host.booted()

        # A restarted daemon with the same target: no second rebase, no reboot.
        starts, commands = handle.starts, len(host.command_log())
        handle.kill()
        await eventually(lambda: handle.starts > starts, what="daemon restarted")
        await eventually(
            lambda: len(host.command_log()) >= commands + 2, what="restarted daemon read the host"
        )
        await cluster.done("rendered-worker-1", images.a)
        assert rebases(host) == 1 and host.reboots() == 1 and host.booted() == first

        await cluster.target(names.MODE_LAYERED, "rendered-worker-2", images.b)
        await cluster.done("rendered-worker-2", images.b)
    assert host.booted_image() == images.b and host.reboots() == 2 and rebases(host) == 2
    assert [d.image for d in host.deployments()] == [images.b, images.a]  # A stays, as rollback
    assert host.read("/etc/app/app.conf") == b"x=2\n" and host.mode("/etc/app/app.conf") == 0o644
    # What only image A carried went with it (unchanged on the node, so the merge drops it).
    tree = host.files()
    assert "/etc/old.conf" not in tree and "/etc/systemd/system/app.service" not in tree
    assert "/etc/systemd/system/crio.service" not in tree
    assert tree["/etc/systemd/system/multi-user.target.wants/docker.service"][0] == (
        b"-> /usr/lib/systemd/system/docker.service"
    )
    assert host.kargs() == ["root=/dev/vda4", "rw", "mitigations=off"]
    # What the daemon owns in every mode survives both deployments: certificates, ssh keys (in /var).
    assert host.read(KUBELET_CA_PATH) == b"KCA\n"
    assert host.read(p.SSH_KEYS_FILE) == (KEY + "\nssh-rsa BBBB second\n").encode()
    # Layered mode wrote no config file and changed no unit: the image did it all.
    assert host.state()["enabled"] == [] and host.state()["masked"] == []
    assert not any(c[0] == "systemctl" and c[1] != "reboot" for c in host.command_log())


async def test_layered_with_the_bootc_backend(cluster: Cluster, host: OstreeHost, images: Images) -> None:
    async with fakehost.daemon(host, NODE, kubeconfig=cluster.kubeconfig, backend="bootc"):
        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", images.a)
        await cluster.done("rendered-worker-1", images.a)
    assert_boots_mc1_image(host, images.a)
    assert [c for c in host.command_log() if c[:2] == ["bootc", "switch"]] == [
        ["bootc", "switch", "--transport", "registry", images.a]
    ]
    assert rebases(host) == 0


async def test_opt_in_then_revert_to_stock(cluster: Cluster, host: OstreeHost, images: Images) -> None:
    async with fakehost.daemon(host, NODE, kubeconfig=cluster.kubeconfig):
        await cluster.target(names.MODE_LEGACY, "rendered-worker-1")
        await cluster.done("rendered-worker-1")
        assert_legacy_mc1(host)
        legacy_tree = without_journal(host.files())
        assert "/usr/etc/app/app.conf" not in legacy_tree  # written on the node, not by an image

        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", images.a)
        await cluster.done("rendered-worker-1", images.a)
        assert_boots_mc1_image(host, images.a)

        await cluster.target(names.MODE_LEGACY, "rendered-worker-1")
        await cluster.done("rendered-worker-1", None)
    assert host.booted().checksum == host.stock_commit
    assert_legacy_mc1(host)
    assert without_journal(host.files()) == legacy_tree, "after the revert the node differs from legacy's"
    assert host.reboots() == 3


# Kill -9 at each host command of the flows that change what the node boots: the daemon converges
# to the same host, and never reboots twice.
LAYERED_POINTS = [
    "update-ca-trust",
    "rpm-ostree rebase",
    "rpm-ostree kargs --append-if-missing=nosmt",
    "systemctl reboot",
]
OPT_IN_POINTS = ["rpm-ostree rebase", "systemctl reboot"]
REVERT_POINTS = ["rpm-ostree rebase", "systemctl reboot", "systemctl daemon-reload", "systemctl enable"]


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize(
    ("flow", "point"),
    [("layered", x) for x in LAYERED_POINTS]
    + [("opt-in", x) for x in OPT_IN_POINTS]
    + [("revert", x) for x in REVERT_POINTS],
)
async def test_kill_at_each_step_converges(
    cluster: Cluster, host: OstreeHost, images: Images, flow: str, point: str, when: str
) -> None:
    await cluster.configmap(names.NODE_CERTIFICATES_CM, {"user-ca-bundle.crt": "U\n"})
    async with fakehost.daemon(host, NODE, kubeconfig=cluster.kubeconfig) as handle:
        if flow == "opt-in":
            await cluster.target(names.MODE_LEGACY, "rendered-worker-1")
            await cluster.done("rendered-worker-1")
        if flow == "revert":
            await cluster.target(names.MODE_LAYERED, "rendered-worker-1", images.a)
            await cluster.done("rendered-worker-1", images.a)
        reboots = host.reboots()
        host.kill_daemon_at(point, when)  # type: ignore[arg-type]
        if flow == "revert":
            await cluster.target(names.MODE_LEGACY, "rendered-worker-1")
            await cluster.done("rendered-worker-1")
            assert_legacy_mc1(host)
            assert host.booted().checksum == host.stock_commit
        else:
            await cluster.target(names.MODE_LAYERED, "rendered-worker-1", images.a)
            await cluster.done("rendered-worker-1", images.a)
            assert_boots_mc1_image(host, images.a)
        assert host.read(USER_CA_PATH) == b"U\n"
        assert host.kills_pending() == 0, "the kill point was never reached"
        assert -9 in handle.exit_codes
        assert host.reboots() == reboots + 1
        assert not await asyncio.to_thread(os.path.lexists, host.rootfs / p.REVERT_FILE.lstrip("/"))
