"""The host interface: every change the daemon makes to a node goes through a :class:`Host`.

:class:`LocalHost` is the real one: files under a root directory (the host's ``/`` mounted at ``/rootfs``
in the DaemonSet), OS deployments through ``rpm-ostree`` or ``bootc``, units through ``systemctl``, the
trust store through ``update-ca-trust``. Commands are found on ``PATH`` under configurable names, so the
emulator's fake host substitutes its own executables without the daemon knowing.

Nothing here decides what to do; :mod:`mcosup.daemon.plan` does, :mod:`mcosup.daemon.executor` calls
these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from mcosup.daemon.hostfacts import Deployment, DiskFile, strip_transport

log = logging.getLogger(__name__)

Backend = Literal["rpm-ostree", "bootc"]
BACKENDS: tuple[Backend, ...] = ("rpm-ostree", "bootc")

#: Transport rpm-ostree needs for a container image it does not verify signatures of (contract 6.2).
UNVERIFIED_REGISTRY = "ostree-unverified-registry:"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
#: The host's boot-complete check (greenboot's, or any unit an image orders before it): when the host
#: carries the target, the daemon's health gate waits for it to be active (contract 12.3).
BOOT_COMPLETE = "boot-complete.target"
_UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system")


class HostError(Exception):
    """A host operation failed; the message says what ran, what it said and where."""


class Host(Protocol):
    root: Path

    def read_file(self, path: str) -> DiskFile | None: ...
    def write_file(
        self, path: str, contents: bytes, mode: int, user: str | None = None, group: str | None = None
    ) -> None: ...
    def remove_file(self, path: str) -> None: ...
    def remove_dir(self, path: str) -> None: ...
    def list_dir(self, path: str) -> list[str]: ...
    def make_dir(self, path: str, mode: int, user: str | None = None, group: str | None = None) -> None: ...
    def set_password_hash(self, user: str, password_hash: str | None) -> None: ...
    def boot_id(self) -> str: ...
    async def deployments(self) -> tuple[Deployment | None, Deployment | None]: ...
    async def rebase(self, image: str) -> None: ...
    async def pull(self, image: str) -> None: ...
    async def rollback(self) -> None: ...
    async def boot_complete(self) -> str | None: ...
    async def kargs(self, append: Sequence[str], delete: Sequence[str]) -> None: ...
    async def systemctl(self, action: str, units: Sequence[str]) -> None: ...
    async def daemon_reload(self) -> None: ...
    async def service(self, action: str, unit: str) -> None: ...
    async def update_ca_trust(self) -> None: ...
    async def reboot(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class Commands:
    """Executable names (looked up on PATH) for each host tool."""

    rpm_ostree: str = "rpm-ostree"
    bootc: str = "bootc"
    systemctl: str = "systemctl"
    update_ca_trust: str = "update-ca-trust"


class LocalHost:
    def __init__(
        self,
        root: Path | str = "/rootfs",
        *,
        backend: Backend = "rpm-ostree",
        commands: Commands = Commands(),
        env: Mapping[str, str] | None = None,
        command_timeout: float = 900.0,
        exec_prefix: Sequence[str] = (),
    ):
        if backend not in BACKENDS:
            raise ValueError(f"host backend {backend!r} unknown; use one of {', '.join(BACKENDS)}")
        self.root = Path(root)
        self.backend = backend
        self.commands = commands
        self.env = dict(env) if env is not None else None
        #: Seconds a host command may run (a rebase pulls an OS image: minutes, not hours).
        self.command_timeout = command_timeout
        #: Run host tools through this (e.g. ``chroot /rootfs`` or ``nsenter --target 1 --mount --``) so
        #: the host's own binaries act on the host, as the MCO's daemon chroots; empty = from PATH here.
        self.exec_prefix = tuple(exec_prefix)

    # Paths.

    def _abs(self, path: str) -> Path:
        pure = PurePosixPath(path)
        if not pure.is_absolute() or ".." in pure.parts:
            raise HostError(f"refusing host path {path!r}: it must be absolute and free of '..'")
        return self.root / pure.relative_to("/")

    def read_file(self, path: str) -> DiskFile | None:
        target = self._abs(path)
        try:
            with target.open("rb") as f:
                return DiskFile(f.read(), stat.S_IMODE(os.fstat(f.fileno()).st_mode))
        except (FileNotFoundError, NotADirectoryError):
            # Absent (a parent being a file means absent too; writing it is what fails, with a reason).
            return None
        except IsADirectoryError:
            return DiskFile(b"", -1)
        except OSError as exc:
            raise HostError(f"cannot read {path} under {self.root}: {exc.strerror}") from exc

    def write_file(
        self, path: str, contents: bytes, mode: int, user: str | None = None, group: str | None = None
    ) -> None:
        """Atomic: a temp file in the same directory, mode and owner set, fsync, rename over."""
        target = self._abs(path)
        uid, gid = self._owner(user, group, path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            blocker = next(
                p for p in (target.parent, *target.parent.parents) if p.exists() and not p.is_dir()
            )
            raise HostError(
                f"cannot write {path}: /{blocker.relative_to(self.root)} on the host is not a directory"
            ) from None
        except OSError as exc:
            raise HostError(f"cannot write {path}: {exc.strerror} ({exc.filename})") from exc
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".mcosup")
        except OSError as exc:
            raise HostError(f"cannot write {path}: {exc.strerror} ({exc.filename or target.parent})") from exc
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(contents)
                os.fchmod(f.fileno(), mode)
                self._chown(f.fileno(), uid, gid, path)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise HostError(f"cannot write {path}: {exc.strerror}") from exc

    def _owner(self, user: str | None, group: str | None, path: str) -> tuple[int, int]:
        uid = 0 if user is None else self._lookup("passwd", user, path)
        if group is not None:
            gid = self._lookup("group", group, path)
        elif user is None:
            gid = 0
        else:
            gid = self._primary_gid(uid)
        return uid, gid

    def _lookup(self, db: str, name: str, path: str) -> int:
        if name.isdigit():
            return int(name)
        for fields in self._db(db):
            if fields[0] == name:
                return int(fields[2])
        raise HostError(
            f"cannot own {path} by {'user' if db == 'passwd' else 'group'} {name!r}: not in /etc/{db} "
            "on the host; create it or give a numeric id in the MachineConfig"
        )

    def _primary_gid(self, uid: int) -> int:
        for fields in self._db("passwd"):
            if len(fields) > 3 and fields[2] == str(uid):
                return int(fields[3])
        return uid

    def _db(self, db: str) -> list[list[str]]:
        try:
            text = self._abs(f"/etc/{db}").read_text()
        except FileNotFoundError:
            return []
        return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]

    @staticmethod
    def _chown(fd: int, uid: int, gid: int, path: str) -> None:
        try:
            os.fchown(fd, uid, gid)
        except PermissionError:
            # Unprivileged (tests, the fake host): ownership cannot be given away; mode and content still
            # are right. As root on a real host this never happens.
            if os.geteuid() == 0:
                raise
            log.debug("not owner-changing %s to %d:%d: unprivileged", path, uid, gid)

    def remove_file(self, path: str) -> None:
        target = self._abs(path)
        try:
            target.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise HostError(f"cannot remove {path}: {exc.strerror}") from exc
        _fsync_dir(target.parent)

    def remove_dir(self, path: str) -> None:
        target = self._abs(path)
        try:
            shutil.rmtree(target)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise HostError(f"cannot remove directory {path}: {exc.strerror}") from exc

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(p.name for p in self._abs(path).iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    def make_dir(self, path: str, mode: int, user: str | None = None, group: str | None = None) -> None:
        """Create ``path`` (and parents) if missing, then give it ``mode`` and owner."""
        target = self._abs(path)
        uid, gid = self._owner(user, group, path)
        try:
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, mode)
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
            try:
                self._chown(fd, uid, gid, path)
            finally:
                os.close(fd)
        except OSError as exc:
            raise HostError(f"cannot create directory {path}: {exc.strerror}") from exc

    def set_password_hash(self, user: str, password_hash: str | None) -> None:
        """Edit the user's line of /etc/shadow (what ``usermod -p`` does), keeping its mode."""
        shadow = "/etc/shadow"
        current = self.read_file(shadow)
        if current is None:
            raise HostError(f"cannot set the password of {user}: {shadow} does not exist on the host")
        lines = current.contents.decode().splitlines()
        for i, line in enumerate(lines):
            fields = line.split(":")
            if fields[0] == user and len(fields) > 1:
                fields[1] = password_hash or "*"
                lines[i] = ":".join(fields)
                break
        else:
            raise HostError(f"cannot set the password of {user}: no such user in {shadow} on the host")
        self.write_file(shadow, ("\n".join(lines) + "\n").encode(), current.mode)

    def boot_id(self) -> str:
        for candidate in (self._abs(BOOT_ID), Path(BOOT_ID)):
            try:
                return candidate.read_text().strip()
            except FileNotFoundError:
                continue
        raise HostError(f"cannot tell the boot id: {BOOT_ID} missing under {self.root} and in this process")

    # Commands.

    async def run(self, *argv: str) -> str:
        """Run a host command; its stdout, or HostError with its exit status and last stderr lines."""
        argv = (*self.exec_prefix, *argv)
        log.info("running %s", " ".join(argv))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
            )
        except FileNotFoundError:
            raise HostError(f"{argv[0]} is not installed (not found on PATH)") from None
        try:
            async with asyncio.timeout(self.command_timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise HostError(f"{' '.join(argv)} did not finish in {self.command_timeout:.0f}s") from None
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.kill()
                await asyncio.shield(proc.wait())
            raise
        if proc.returncode != 0:
            tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-5:]) or "(no error output)"
            raise HostError(f"{' '.join(argv)} failed with exit status {proc.returncode}: {tail}")
        return out.decode(errors="replace")

    async def deployments(self) -> tuple[Deployment | None, Deployment | None]:
        """(booted, staged) as the OS backend reports them; kargs are the next boot's."""
        if self.backend == "bootc":
            booted, staged = parse_bootc_status(await self.run(self.commands.bootc, "status", "--json"))
        else:
            booted, staged = parse_rpm_ostree_status(
                await self.run(self.commands.rpm_ostree, "status", "--json")
            )
        kargs = tuple((await self.run(self.commands.rpm_ostree, "kargs")).split())
        if staged is not None:
            staged = dataclasses.replace(staged, kargs=kargs)
        elif booted is not None:
            booted = dataclasses.replace(booted, kargs=kargs)
        return booted, staged

    async def rebase(self, image: str) -> None:
        image = strip_transport(image)
        if self.backend == "bootc":
            await self.run(self.commands.bootc, "switch", "--transport", "registry", image)
        else:
            await self.run(self.commands.rpm_ostree, "rebase", "--experimental", UNVERIFIED_REGISTRY + image)

    async def pull(self, image: str) -> None:
        """Download ``image`` without deploying it (contract 12.1), so the later rebase is quick and
        nothing new boots meanwhile. ``rpm-ostree rebase --download-only`` on bootc hosts too (they ship
        rpm-ostree; ``bootc switch`` would stage a deployment the next reboot boots)."""
        await self.run(
            self.commands.rpm_ostree,
            "rebase",
            "--experimental",
            "--download-only",
            UNVERIFIED_REGISTRY + strip_transport(image),
        )

    async def rollback(self) -> None:
        """Boot the previous deployment next (``rpm-ostree rollback`` / ``bootc rollback``)."""
        if self.backend == "bootc":
            await self.run(self.commands.bootc, "rollback")
        else:
            await self.run(self.commands.rpm_ostree, "rollback")

    async def boot_complete(self) -> str | None:
        """None when the host's boot-complete check passed or it has none; else why it has not."""
        if not any(self._abs(f"{d}/{BOOT_COMPLETE}").exists() for d in _UNIT_DIRS):
            return None
        try:
            await self.run(self.commands.systemctl, "is-active", BOOT_COMPLETE)
        except HostError as exc:
            return f"{BOOT_COMPLETE} is not active ({exc})"
        return None

    async def kargs(self, append: Sequence[str], delete: Sequence[str]) -> None:
        # bootc hosts (FCOS/RHCOS) ship rpm-ostree too; bootc itself only takes kargs from the image.
        # The -if-present/-if-missing forms act on the deployment rpm-ostree modifies (the pending one
        # when there is one), so running this twice never duplicates or fails on an argument.
        argv = [self.commands.rpm_ostree, "kargs"]
        argv += [f"--delete-if-present={a}" for a in delete]
        argv += [f"--append-if-missing={a}" for a in append]
        await self.run(*argv)

    async def systemctl(self, action: str, units: Sequence[str]) -> None:
        # --root: enable/disable/mask only edit symlinks, which works on the mounted host tree from
        # inside the daemon's container without reaching the host's systemd (under a chroot/nsenter
        # prefix the host's / is already the root).
        root = () if self.exec_prefix else (f"--root={self.root}",)
        await self.run(self.commands.systemctl, *root, action, *units)

    async def daemon_reload(self) -> None:
        await self.run(self.commands.systemctl, "daemon-reload")

    async def service(self, action: str, unit: str) -> None:
        """``reload`` or ``restart`` a running unit: the host's systemd, as ``daemon-reload``."""
        if action not in ("reload", "restart"):
            raise HostError(f"systemctl {action} is not a service action; use reload or restart")
        await self.run(self.commands.systemctl, action, unit)

    async def update_ca_trust(self) -> None:
        await self.run(self.commands.update_ca_trust)

    async def reboot(self) -> None:
        await self.run(self.commands.systemctl, "reboot")


def parse_rpm_ostree_status(text: str) -> tuple[Deployment | None, Deployment | None]:
    """(booted, staged) from ``rpm-ostree status --json``."""
    data = _json(text, "rpm-ostree status --json")
    booted = staged = None
    for d in data.get("deployments") or []:
        image = d.get("container-image-reference")
        dep = Deployment(
            image=strip_transport(image) if image else None,
            digest=d.get("container-image-reference-digest"),
        )
        if d.get("booted"):
            booted = dep
        elif d.get("staged"):
            staged = dep
    return booted, staged


def parse_bootc_status(text: str) -> tuple[Deployment | None, Deployment | None]:
    """(booted, staged) from ``bootc status --json``."""
    data = _json(text, "bootc status --json")
    status = data.get("status") or {}

    def one(entry: Any) -> Deployment | None:
        if not entry:
            return None
        image = entry.get("image") or {}
        ref = (image.get("image") or {}).get("image")
        return Deployment(image=ref, digest=image.get("imageDigest"))

    return one(status.get("booted")), one(status.get("staged"))


def _json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise HostError(f"{what} printed something that is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HostError(f"{what} printed {type(data).__name__}, not a JSON object")
    return data


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)
