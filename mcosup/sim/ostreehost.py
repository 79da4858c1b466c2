"""A simulated node whose OS is a real libostree sysroot (issue 19; contract sections 6 and 10).

:class:`OstreeHost` is a :class:`~mcosup.sim.fakehost.FakeHost` (same ``bin/`` commands on the daemon's
``PATH``, same ``host.json`` for unit enablement, faults and the command log, same reboot = daemon exit
and restart) whose OS is real: at creation the stock OS image is pulled from the registry by digest and
committed into ``sysroot/`` (Debian's ``ostree``, run as root), then deployed and booted. From then on
``rpm-ostree rebase`` / ``bootc switch`` pull and stage real commits and ``systemctl reboot`` deploys
them with ostree's own three-way ``/etc`` merge and boots them (:mod:`mcosup.sim.fakebin.ostree` says
how). The daemon's root, ``rootfs/``, shows the booted deployment with the stateroot's ``/var``.

Deployment directories are immutable (``chattr +i``) as on a real host: call :func:`make_removable`
on a host (or any directory holding hosts) before deleting it.

Needs root and ``ostree`` (``apt-get install -y ostree``); :func:`missing_ostree` says what is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from mcosup.sim.fakebin import Json, base_state, ostreecmd, write_json
from mcosup.sim.fakebin import ostree as ot
from mcosup.sim.fakehost import FakeHost

DEFAULT_KARGS = ("root=/dev/vda4", "rw")


def missing_ostree() -> str | None:
    """Why an ostree host cannot run here, or None."""
    if shutil.which("ostree") is None:
        return "ostree is not installed: apt-get install -y ostree"
    if shutil.which("chattr") is None:
        return "chattr is not installed: apt-get install -y e2fsprogs"
    if os.geteuid() != 0:
        return "an ostree host needs root (ostree admin deploy chowns, chattrs and relabels)"
    return None


def make_removable(path: Path | str) -> None:
    """Clear the immutable bit ostree sets on deployments, everywhere under ``path``."""
    if Path(path).exists():
        # -f: symlinks and special files have no flags to clear; that is not an error here.
        subprocess.run(["chattr", "-R", "-f", "-i", str(path)], check=False)


def remove_host(path: Path | str) -> None:
    make_removable(path)
    shutil.rmtree(path, ignore_errors=True)


class OstreeHost(FakeHost):
    def __init__(
        self,
        root: Path | str,
        *,
        image: str,
        registry: str,
        kargs: Sequence[str] = DEFAULT_KARGS,
    ):
        """``image``: the stock OS as ``<registry host>/<repo>@sha256:<digest>``; ``registry``: the URL
        the node pulls from, with its pull credentials (``http://user:password@host:port``)."""
        self.sysroot = Path(root) / "sysroot"
        super().__init__(root, image=image, kargs=kargs, registry=registry)

    def _create(self, image: str | None, kargs: list[str], registry: str | None) -> None:
        if not image or not registry:
            raise ValueError("an OstreeHost needs the stock image (by digest) and the registry URL")
        if why := missing_ostree():
            raise ot.OstreeError(why)
        self.root.mkdir(parents=True, exist_ok=True)
        if self.sysroot.exists():  # a creation that died half-way
            remove_host(self.sysroot)
        ot.init_sysroot(self.sysroot)
        work = self.root / "pull"
        checksum, digest = ot.pull(self.sysroot, registry, image, work)
        ot.deploy(self.sysroot, checksum, image, kargs, work)
        boot_id = ostreecmd.boot(self.rootfs)
        state: Json = {
            **base_state(registry),
            "ostree": {"os": ot.OSNAME, "stock": checksum, "stockDigest": digest},
            "booted": None,  # the sysroot says: the first deployment of `ostree admin status`
            # "staged": the pending deployment, made at the next `systemctl reboot`
            "bootId": boot_id,
        }
        write_json(self.state_path, state)
        self._install_commands()

    # What tests look at.

    def deployments(self) -> list[ot.OstreeDeployment]:
        """The sysroot's deployments, booted first."""
        return ot.deployments(self.sysroot)

    def booted(self) -> ot.OstreeDeployment:
        return self.deployments()[0]

    @property
    def stock_commit(self) -> str:
        """The commit the node was installed from (the stock OS image)."""
        return str(self.state()["ostree"]["stock"])

    def booted_image(self) -> str | None:
        return self.booted().image

    def kargs(self) -> list[str]:
        return list(self.booted().kargs)

    def files(self, *, exclude: Sequence[str] = ("/proc",)) -> dict[str, tuple[bytes, int]]:
        """Every regular file and symlink of the booted root (its ``/var`` included): path -> (contents,
        mode); a symlink is ``(b"-> " + target, 0o120777)``, so trees compare links too."""
        out: dict[str, tuple[bytes, int]] = {}
        for top in sorted(self.rootfs.iterdir()):
            if top.name.startswith("."):
                continue
            base = "/" + top.name
            if any(base == e or base.startswith(e.rstrip("/") + "/") for e in exclude):
                continue
            link = os.readlink(top) if top.is_symlink() else None
            if link is None or not link.startswith("/") or not top.is_dir():
                # A top-level link of the image itself (home -> var/home): a link, as on the host.
                out[base] = (b"-> " + (link or "").encode(), 0o120777)
                continue
            real_top = top.resolve()
            for dirpath, dirnames, filenames in os.walk(real_top):
                for name in [*filenames, *dirnames]:
                    full = Path(dirpath) / name
                    path = base + "/" + str(full.relative_to(real_top))
                    if any(path == e or path.startswith(e.rstrip("/") + "/") for e in exclude):
                        continue
                    st = full.lstat()
                    if stat.S_ISLNK(st.st_mode):
                        out[path] = (b"-> " + os.readlink(full).encode(), 0o120777)
                    elif stat.S_ISREG(st.st_mode):
                        out[path] = (full.read_bytes(), stat.S_IMODE(st.st_mode))
        return out


HostKind = Literal["fake", "ostree"]
HOST_KINDS: tuple[HostKind, ...] = ("fake", "ostree")


async def create_host(kind: str, root: Path, *, image: str, registry: str) -> FakeHost:
    """A new host of ``kind`` (``ClusterConfig.host``) under ``root``, installed from ``image``."""
    if kind == "ostree":
        if not image:
            raise ValueError("an ostree host is installed from the stock image: build and push it first")
        # Pulling and deploying the stock image takes a second or two: not on the event loop.
        return await asyncio.to_thread(OstreeHost, root, image=image, registry=registry)
    if kind == "fake":
        # The fake rebase checks the image exists in the registry, with the node's pull credentials.
        return FakeHost(root, image=image or None, registry=registry)
    raise ValueError(f"host kind {kind!r} unknown: use one of {', '.join(HOST_KINDS)}")
