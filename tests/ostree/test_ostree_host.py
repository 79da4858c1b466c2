"""The ostree host (issue 19): real pulls, commits, deployments and boots, driven through the daemon's
own host interface (:class:`mcosup.daemon.host.LocalHost`) as the daemon drives it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from imagekit import BOOTABLE, OPAQUE, WHITEOUT, Layer, Link, push_image

from mcosup.daemon.host import HostError, LocalHost
from mcosup.sim.fakehost import FakeHost
from mcosup.sim.ostreehost import OstreeHost, make_removable
from mcosup.sim.registry import Registry, build_base_image

pytestmark = pytest.mark.timeout(120)

STOCK_EXTRA: Layer = {
    "etc/motd": "stock motd\n",
    "etc/chrony.conf": "pool stock\n",
    "usr/share/doc/a": "a\n",
    "usr/share/doc/b": "b\n",
    "usr/lib/tools/x": "x\n",
}


async def install(ostree_hosts: Path, image_registry: Registry, pull_url: str, *layers: Layer) -> OstreeHost:
    stock = await asyncio.to_thread(push_image, image_registry, "os/stock", [BOOTABLE, STOCK_EXTRA, *layers])
    return await asyncio.to_thread(OstreeHost, ostree_hosts / "node", image=stock, registry=pull_url)


def daemon_view(host: OstreeHost, backend: str = "rpm-ostree") -> LocalHost:
    """The host as the daemon sees it: its root and the fake tools on PATH."""
    return LocalHost(host.rootfs, backend=backend, env=host.env())  # type: ignore[arg-type]


async def test_install_boots_the_stock_image_from_a_real_sysroot(
    ostree_hosts: Path, image_registry: Registry, pull_url: str
) -> None:
    host = await install(ostree_hosts, image_registry, pull_url)
    stock = host.booted_image()
    [d] = host.deployments()
    assert d.checksum == host.stock_commit
    assert stock is not None and d.digest == stock.partition("@")[2]
    assert d.path.parent == ostree_hosts / "node/sysroot/ostree/deploy/fcos/deploy"
    assert host.kargs() == ["root=/dev/vda4", "rw"]
    # The image's /etc is the commit's default /usr/etc, and the deployment's /etc is made from it.
    assert (d.path / "usr/etc/motd").read_text() == "stock motd\n"
    assert host.read("/etc/motd") == b"stock motd\n"
    assert host.read("/etc/os-release") == b"ID=imagekit\n"
    files = host.files()
    assert files["/home"] == (b"-> var/home", 0o120777)
    assert "/var/home" not in files and (host.rootfs / "var/home").is_dir()

    booted, staged = await daemon_view(host).deployments()
    assert staged is None and booted is not None
    assert (booted.image, booted.digest, booted.kargs) == (stock, d.digest, ("root=/dev/vda4", "rw"))

    # Deployments are immutable on disk, as ostree leaves them; make_removable undoes that.
    with pytest.raises(PermissionError):
        (d.path / "stray").write_text("x")
    make_removable(ostree_hosts)
    shutil.rmtree(ostree_hosts / "node")


async def test_rebase_stages_and_reboot_deploys_the_images_layers_with_the_etc_merge(
    ostree_hosts: Path, image_registry: Registry, pull_url: str
) -> None:
    host = await install(ostree_hosts, image_registry, pull_url)
    stock = host.booted_image()
    assert stock is not None
    layered = await asyncio.to_thread(
        push_image,
        image_registry,
        "os/layered",
        [
            BOOTABLE,
            STOCK_EXTRA,
            {
                "usr/share/doc": OPAQUE,  # a (lower layers' content of the) directory emptied
                "usr/share/doc/c": "c\n",
                "usr/lib/tools/x": WHITEOUT,  # a file deleted
                "etc/motd": "image motd\n",
                "etc/chrony.conf": "pool image\n",
                "etc/image-only": ("from the image\n", 0o600),
                "usr/bin/tool": Link("../lib/tools/y"),
            },
        ],
    )
    view = daemon_view(host)
    boot_id = view.boot_id()
    view.write_file("/etc/local.conf", b"local\n", 0o640)  # only the booted /etc has it
    view.write_file("/etc/chrony.conf", b"pool local\n", 0o644)  # changed locally: wins the merge
    await view.rebase(layered)

    booted, staged = await view.deployments()
    assert booted is not None and booted.image == stock
    assert staged is not None and (staged.image, staged.digest) == (layered, layered.partition("@")[2])
    assert len(host.deployments()) == 1, "staged, not deployed: the deployment is made at shutdown"
    # Written after staging and before the reboot (the daemon's journal is): it reaches the new /etc.
    view.write_file("/etc/mco/after-staging", b"journal\n", 0o600)

    await view.reboot()
    assert view.boot_id() != boot_id
    first, second = host.deployments()
    assert (first.image, second.image) == (layered, stock)  # the stock one stays, as rollback
    files = host.files()
    assert sorted(p for p in files if p.startswith("/usr/share/doc/")) == ["/usr/share/doc/c"]
    assert "/usr/lib/tools/x" not in files
    assert files["/usr/bin/tool"] == (b"-> ../lib/tools/y", 0o120777)
    assert files["/etc/motd"] == (b"image motd\n", 0o644)  # unchanged locally: the new default
    assert files["/etc/image-only"] == (b"from the image\n", 0o600)
    assert files["/etc/chrony.conf"] == (b"pool local\n", 0o644)  # changed locally: kept
    assert files["/etc/local.conf"] == (b"local\n", 0o640)
    assert files["/etc/mco/after-staging"] == (b"journal\n", 0o600)
    booted, staged = await view.deployments()
    assert staged is None and booted is not None and booted.image == layered

    # Back to the stock image (already in the repository: no pull) — the image's files go.
    await view.rebase(stock)
    await view.reboot()
    assert host.booted().checksum == host.stock_commit
    files = host.files()
    assert "/etc/image-only" not in files and "/usr/share/doc/c" not in files
    assert files["/usr/share/doc/a"] == (b"a\n", 0o644)
    assert files["/etc/motd"] == (b"stock motd\n", 0o644)
    assert files["/etc/local.conf"] == (b"local\n", 0o640)


async def test_kernel_arguments_live_in_the_deployments(
    ostree_hosts: Path, image_registry: Registry, pull_url: str
) -> None:
    host = await install(ostree_hosts, image_registry, pull_url)
    view = daemon_view(host)
    await view.kargs(append=["console=ttyS0"], delete=["rw"])
    _, staged = await view.deployments()
    assert staged is not None and staged.kargs == ("root=/dev/vda4", "console=ttyS0")
    assert host.kargs() == ["root=/dev/vda4", "rw"], "the booted deployment keeps its arguments"
    await view.kargs(append=["console=ttyS0"], delete=["rw"])  # idempotent on the pending deployment
    await view.reboot()
    first, second = host.deployments()
    assert first.checksum == second.checksum == host.stock_commit  # same commit, a new deployment
    assert first.kargs == ("root=/dev/vda4", "console=ttyS0")
    assert second.kargs == ("root=/dev/vda4", "rw")


async def test_bootc_switch_stages_and_status_shows_rollback(
    ostree_hosts: Path, image_registry: Registry, pull_url: str
) -> None:
    host = await install(ostree_hosts, image_registry, pull_url)
    stock = host.booted_image()
    other = await asyncio.to_thread(
        push_image, image_registry, "os/other", [BOOTABLE, STOCK_EXTRA, {"etc/motd": "other\n"}]
    )
    view = daemon_view(host, "bootc")
    await view.rebase(other)
    booted, staged = await view.deployments()
    assert booted is not None and booted.image == stock
    assert staged is not None and staged.image == other
    await view.reboot()
    booted, staged = await view.deployments()
    assert booted is not None and booted.image == other and staged is None
    status = await view.run("bootc", "status", "--json")
    assert f'"rollback": {{"image": {{"image": {{"image": "{stock}"' in status
    assert host.read("/etc/motd") == b"other\n"


async def test_images_it_cannot_trust_or_boot_are_refused_with_the_reason(
    ostree_hosts: Path, image_registry: Registry, pull_url: str
) -> None:
    host = await install(ostree_hosts, image_registry, pull_url)
    view = daemon_view(host)
    no_kernel = await asyncio.to_thread(
        push_image, image_registry, "os/nokernel", [{"usr/lib/os-release": "ID=x\n", "etc/motd": "m\n"}]
    )
    with pytest.raises(
        HostError, match=r"not a bootable OS image: it lacks /usr/lib/modules/<version>/vmlinuz"
    ):
        await view.rebase(no_kernel)
    missing = no_kernel.rpartition("@")[0] + "@sha256:" + "1" * 64
    with pytest.raises(HostError, match="HTTP 404"):
        await view.rebase(missing)
    with pytest.raises(HostError, match="this node pulls from"):
        await view.rebase("quay.io/other/os@sha256:" + "2" * 64)
    escape = await asyncio.to_thread(
        push_image,
        image_registry,
        "os/escape",
        [BOOTABLE, {"etc/evil": Link("/tmp")}, {"etc/evil/planted": "x\n"}],
    )
    with pytest.raises(HostError, match="lies under symlink /etc/evil"):
        await view.rebase(escape)
    assert not await asyncio.to_thread(os.path.lexists, "/tmp/planted")
    # Nothing was staged by any of these.
    booted, staged = await view.deployments()
    assert staged is None and booted is not None and booted.image == host.booted_image()
    assert [d.checksum for d in host.deployments()] == [host.stock_commit]


async def test_the_clusters_stock_image_runs_the_services_a_fake_host_has(
    ostree_hosts: Path, image_registry: Registry, pull_url: str, tmp_path: Path
) -> None:
    # The demo's disruption policy reloads crio.service: on either kind of host the unit must exist.
    stock = await build_base_image(image_registry, "os/stock")
    host = await asyncio.to_thread(OstreeHost, ostree_hosts / "node", image=stock, registry=pull_url)
    fake = FakeHost(tmp_path / "fake")

    def services(h: FakeHost) -> set[str]:
        return {p for p in h.files() if p.startswith("/usr/lib/systemd/system/") and p.endswith(".service")}

    assert services(host) == services(fake)
    await daemon_view(host).run("systemctl", "reload", "crio.service")
    assert host.service_actions() == ["reload crio.service"]


def test_demo_on_the_ostree_host_names_what_is_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("buildah", "docker-registry"):  # what the demo needs anyway; ostree left out
        found = shutil.which(tool)
        assert found is not None, f"{tool} is not installed"
        (bin_dir / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(bin_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "mcosup", "demo", "--host", "ostree"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "mcosup demo --host ostree: ostree is not installed: apt-get install -y ostree" in done.stderr
