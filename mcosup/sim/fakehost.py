"""A fake image-based host for real daemon processes (contract section 10).

Layout of a :class:`FakeHost` directory:

- ``rootfs/`` — the host tree the daemon gets as ``--root`` (``/etc``, ``/home/core``, ...);
- ``bin/`` — fake ``rpm-ostree``, ``bootc``, ``systemctl`` and ``update-ca-trust`` executables (tiny
  Python scripts run by this interpreter), prepended to the daemon's ``PATH``;
- ``host.json`` — what the real tools keep in the OS: the booted and staged deployments (image
  reference, digest, kernel arguments), unit enablement, the boot id, counters and a command log.

A rebase stages a deployment; ``systemctl reboot`` makes the staged deployment the booted one (the one
booted before is kept for ``rollback``) and changes the boot id, and the daemon exits to be started
again by :func:`run_daemon` (as the kubelet restarts a DaemonSet pod). When a registry URL is
configured, a rebase first checks that the image's manifest exists there. Tests can make a command fail
(:meth:`FakeHost.fail`) or have it kill the daemon that ran it with SIGKILL
(:meth:`FakeHost.kill_daemon_at`), before or after doing its work. The host carries a boot-complete
check (``boot-complete.target``) that fails on an image a test names (:meth:`FakeHost.boots_unhealthy`)
or whose config carries the label ``io.mcosup.sim.boot-unhealthy`` (a bad image a real build makes, e.g.
from a containerFile ``LABEL``; read from the registry when the host has one).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import stat
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

from mcosup.sim.fakebin import Json, base_state, deployment, locked, read_json, write_json

#: Mirrors mcosup.daemon.command.REBOOT_EXIT_CODE (the sim must not import product code's internals,
#: and the product must not import the sim; the e2e tests check both agree).
REBOOT_EXIT_CODE = 75
STOCK_IMAGE = "quay.io/mcosup/stock-os@sha256:" + "0" * 64
COMMANDS = ("rpm-ostree", "bootc", "systemctl", "update-ca-trust")


class FakeHost:
    def __init__(
        self,
        root: Path | str,
        *,
        image: str | None = STOCK_IMAGE,
        kargs: Sequence[str] = ("root=/dev/vda4", "rw"),
        registry: str | None = None,
    ):
        self.root = Path(root)
        self.rootfs = self.root / "rootfs"
        self.bin_dir = self.root / "bin"
        self.state_path = self.root / "host.json"
        self.log_path = self.root / "daemon.log"
        if not self.state_path.exists():
            self._create(image, list(kargs), registry)

    # Set-up.

    def _create(self, image: str | None, kargs: list[str], registry: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        etc = self.rootfs / "etc"
        for d in (
            "etc/systemd/system",
            "usr/lib/systemd/system",
            "home/core",
            "var",
            "proc/sys/kernel/random",
        ):
            (self.rootfs / d).mkdir(parents=True, exist_ok=True)
        (etc / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/bash\ncore:x:1000:1000:CoreOS:/home/core:/bin/bash\n"
        )
        (etc / "group").write_text("root:x:0:\ncore:x:1000:\n")
        (etc / "shadow").write_text("root:*:19000:0:99999:7:::\ncore:*:19000:0:99999:7:::\n")
        (etc / "shadow").chmod(0o640)
        (etc / "os-release").write_text('NAME="Fake CoreOS"\nID=fcos\n')
        for unit in ("sshd.service", "docker.service", "kubelet.service", "crio.service"):
            (self.rootfs / "usr/lib/systemd/system" / unit).write_text(
                f"[Unit]\nDescription=stock {unit}\n[Service]\nExecStart=/bin/true\n"
                "[Install]\nWantedBy=multi-user.target\n"
            )
        # A boot-complete check, as greenboot gives a host: the daemon's health gate waits for it.
        (self.rootfs / "usr/lib/systemd/system/boot-complete.target").write_text(
            "[Unit]\nDescription=Boot Completion Check\n"
        )
        boot_id = str(uuid.uuid4())
        (self.rootfs / "proc/sys/kernel/random/boot_id").write_text(boot_id + "\n")
        state: Json = {**base_state(registry), "booted": deployment(image, kargs), "bootId": boot_id}
        write_json(self.state_path, state)
        self._install_commands()

    def _install_commands(self) -> None:
        self.bin_dir.mkdir(exist_ok=True)
        for name in COMMANDS:
            script = self.bin_dir / name
            script.write_text(
                f"#!{sys.executable}\n"
                "import sys\n"
                "from mcosup.sim.fakebin import command_main\n"
                f"sys.exit(command_main({name!r}, sys.argv[1:], {str(self.root)!r}))\n"
            )
            script.chmod(0o755)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a daemon on this host: fake commands first on PATH, instant reboots."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["MCOSUP_DAEMON_REBOOT_GRACE"] = "0"
        return env

    # What tests look at.

    def state(self) -> Json:
        with locked(self.root):
            return read_json(self.state_path)

    def booted_image(self) -> str | None:
        image: str | None = (self.state()["booted"] or {}).get("image")
        return image

    def staged_image(self) -> str | None:
        image: str | None = (self.state()["staged"] or {}).get("image")
        return image

    def kargs(self) -> list[str]:
        """Kernel arguments of the booted deployment."""
        return list(self.state()["booted"]["kargs"])

    def unit_enabled(self, name: str) -> bool:
        return name in self.state()["enabled"]

    def unit_masked(self, name: str) -> bool:
        return name in self.state()["masked"]

    def reboots(self) -> int:
        return int(self.state()["reboots"])

    def service_actions(self) -> list[str]:
        """Every ``daemon-reload``, ``reload <unit>`` and ``restart <unit>`` run on the host, in order."""
        return [str(a) for a in self.state().get("actions", [])]

    def command_log(self) -> list[list[str]]:
        return [list(entry) for entry in self.state()["log"]]

    def files(self, *, exclude: Sequence[str] = ("/proc",)) -> dict[str, tuple[bytes, int]]:
        """Every regular file of the host tree: path -> (contents, mode)."""
        out: dict[str, tuple[bytes, int]] = {}
        for dirpath, _, filenames in os.walk(self.rootfs):
            for filename in filenames:
                full = Path(dirpath) / filename
                path = "/" + str(full.relative_to(self.rootfs))
                if any(path == e or path.startswith(e.rstrip("/") + "/") for e in exclude):
                    continue
                st = full.lstat()
                if stat.S_ISREG(st.st_mode):
                    out[path] = (full.read_bytes(), stat.S_IMODE(st.st_mode))
        return out

    def read(self, path: str) -> bytes | None:
        try:
            return (self.rootfs / path.lstrip("/")).read_bytes()
        except FileNotFoundError:
            return None

    def mode(self, path: str) -> int:
        return stat.S_IMODE((self.rootfs / path.lstrip("/")).stat().st_mode)

    # Faults.

    def fail(self, command: str, message: str | None) -> None:
        """Make ``command`` (e.g. ``"rpm-ostree rebase"``) fail with ``message``; None clears it."""
        with self._update() as state:
            if message is None:
                state["fail"].pop(command, None)
            else:
                state["fail"][command] = message

    def kill_daemon_at(
        self, command: str, when: Literal["before", "after"] = "before", skip: int = 0
    ) -> None:
        """SIGKILL the daemon running ``command`` (once), before or after the command does its work.

        ``command`` is the start of the command line, words complete: ``"rpm-ostree kargs --append=x"``
        or ``"rpm-ostree rebase"``; ``skip`` lets that many matching runs go by first.
        """
        with self._update() as state:
            state["kill"].append({"match": command, "when": when, "skip": skip})

    def kills_pending(self) -> int:
        return len(self.state()["kill"])

    def forget_kills(self) -> int:
        """Drop the kills :meth:`kill_daemon_at` armed that have not fired; returns how many."""
        with self._update() as state:
            pending = len(state["kill"])
            state["kill"] = []
        return pending

    def set_pull_seconds(self, seconds: float) -> None:
        """How long a rebase takes to download an image the host has not downloaded yet."""
        with self._update() as state:
            state["pullSeconds"] = seconds

    def pulled(self) -> list[str]:
        """Images downloaded so far, in order."""
        return [str(i) for i in self.state().get("pulled", [])]

    def boots_unhealthy(self, image: str) -> None:
        """Booted, ``image`` fails the host's boot-complete check (``boot-complete.target``)."""
        with self._update() as state:
            state["unhealthy"].append(image)

    def rollback_image(self) -> str | None:
        """The image of the deployment a rollback would boot."""
        image: str | None = (self.state()["rollback"] or {}).get("image")
        return image

    def set_registry(self, url: str | None) -> None:
        with self._update() as state:
            state["registry"] = url

    @contextlib.contextmanager
    def _update(self) -> Iterator[Json]:
        with locked(self.root):
            state = read_json(self.state_path)
            yield state
            write_json(self.state_path, state)


# The kubelet stand-in for daemons.


@dataclasses.dataclass
class DaemonHandle:
    """A daemon kept running on a fake host: restarted whenever it exits, as a DaemonSet pod is."""

    host: FakeHost
    node_name: str
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    exit_codes: list[int] = dataclasses.field(default_factory=list)

    def kill(self) -> None:
        """SIGKILL the running daemon (it is started again)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    def log(self) -> str:
        try:
            return self.host.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


async def run_daemon(
    handle: DaemonHandle,
    *,
    kubeconfig: Path | str,
    namespace: str | None = None,
    backend: str = "rpm-ostree",
    env: Mapping[str, str] | None = None,
    crash_backoff_max: float = 5.0,
) -> None:
    """Start ``python -m mcosup daemon`` for the handle's node and restart it after every exit.

    Runs until cancelled; then the current daemon gets SIGTERM (SIGKILL after 10s).
    """
    host = handle.host
    proc_env = host.env(env)
    proc_env.setdefault("MCOSUP_DAEMON_BACKOFF", "0.2")
    proc_env.setdefault("MCOSUP_DAEMON_BACKOFF_MAX", "2")
    if namespace:
        proc_env["MCOSUP_NAMESPACE"] = namespace
    argv = [
        sys.executable,
        "-m",
        "mcosup",
        "daemon",
        "--node-name",
        handle.node_name,
        "--root",
        str(host.rootfs),
        "--kubeconfig",
        str(kubeconfig),
        "--backend",
        backend,
    ]
    crashes = 0
    while True:
        with host.log_path.open("ab") as log:
            log.write(f"--- start {handle.starts + 1}\n".encode())
            log.flush()
            handle.process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=proc_env
            )
        handle.starts += 1
        try:
            code = await handle.process.wait()
        except asyncio.CancelledError:
            await _stop(handle.process)
            raise
        handle.exit_codes.append(code)
        if code in (REBOOT_EXIT_CODE, -signal.SIGKILL):
            crashes = 0
            continue
        crashes += 1
        await asyncio.sleep(min(crash_backoff_max, 0.2 * 2**crashes))


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(10):
            await asyncio.shield(process.wait())
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def daemon(
    host: FakeHost,
    node_name: str,
    *,
    kubeconfig: Path | str,
    namespace: str | None = None,
    backend: str = "rpm-ostree",
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[DaemonHandle]:
    """``async with daemon(host, "worker-0", kubeconfig=...) as handle:`` — runs it for the block."""
    handle = DaemonHandle(host, node_name)
    task = asyncio.create_task(
        run_daemon(handle, kubeconfig=kubeconfig, namespace=namespace, backend=backend, env=env),
        name=f"daemon {node_name}",
    )
    try:
        yield handle
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
