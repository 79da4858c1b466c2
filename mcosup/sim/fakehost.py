"""A fake image-based host for real daemon processes (contract section 10).

Layout of a :class:`FakeHost` directory:

- ``rootfs/`` — the host tree the daemon gets as ``--root`` (``/etc``, ``/home/core``, ...);
- ``bin/`` — fake ``rpm-ostree``, ``bootc``, ``systemctl`` and ``update-ca-trust`` executables (tiny
  Python scripts run by this interpreter), prepended to the daemon's ``PATH``;
- ``host.json`` — what the real tools keep in the OS: the booted and staged deployments (image
  reference, digest, kernel arguments), unit enablement, the boot id, counters and a command log.

A rebase stages a deployment; ``systemctl reboot`` makes the staged deployment the booted one and
changes the boot id, and the daemon exits to be started again by :func:`run_daemon` (as the kubelet
restarts a DaemonSet pod). When a registry URL is configured, a rebase first checks that the image's
manifest exists there. Tests can make a command fail (:meth:`FakeHost.fail`) or have it kill the daemon
that ran it with SIGKILL (:meth:`FakeHost.kill_daemon_at`), before or after doing its work.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import signal
import stat
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

#: Mirrors mcosup.daemon.command.REBOOT_EXIT_CODE (the sim must not import product code's internals,
#: and the product must not import the sim; the e2e tests check both agree).
REBOOT_EXIT_CODE = 75
STOCK_IMAGE = "quay.io/mcosup/stock-os@sha256:" + "0" * 64
COMMANDS = ("rpm-ostree", "bootc", "systemctl", "update-ca-trust")
_UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system")
_MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
_TRANSPORTS = ("ostree-unverified-registry:", "ostree-remote-registry:", "ostree-image-signed:docker://")
Json = dict[str, Any]


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
        boot_id = str(uuid.uuid4())
        (self.rootfs / "proc/sys/kernel/random/boot_id").write_text(boot_id + "\n")
        state: Json = {
            "booted": _deployment(image, kargs),
            "staged": None,
            "bootId": boot_id,
            "registry": registry,
            "enabled": [],
            "masked": [],
            "reboots": 0,
            "daemonReloads": 0,
            "caTrustUpdates": 0,
            "log": [],
            "fail": {},
            "kill": [],
        }
        _write_json(self.state_path, state)
        self.bin_dir.mkdir(exist_ok=True)
        for name in COMMANDS:
            script = self.bin_dir / name
            script.write_text(
                f"#!{sys.executable}\n"
                "import sys\n"
                "from mcosup.sim.fakehost import command_main\n"
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
        with _locked(self.root):
            return _read_json(self.state_path)

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

    def set_registry(self, url: str | None) -> None:
        with self._update() as state:
            state["registry"] = url

    @contextlib.contextmanager
    def _update(self) -> Iterator[Json]:
        with _locked(self.root):
            state = _read_json(self.state_path)
            yield state
            _write_json(self.state_path, state)


def _deployment(image: str | None, kargs: list[str], digest: str | None = None) -> Json:
    if image is not None and digest is None:
        _, sep, tail = image.rpartition("@")
        digest = tail if sep else "sha256:" + hashlib.sha256(image.encode()).hexdigest()
    checksum = hashlib.sha256(f"{image}|{' '.join(kargs)}".encode()).hexdigest()
    return {"image": image, "digest": digest, "kargs": kargs, "checksum": checksum}


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with (root / "host.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_json(path: Path) -> Json:
    data: Json = json.loads(path.read_text())
    return data


def _write_json(path: Path, data: Json) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


# The fake commands.


class _Fail(Exception):
    pass


def command_main(name: str, argv: list[str], host_dir: str) -> int:
    """Entry point of the fake executables in ``bin/``."""
    root = Path(host_dir)
    words = [a for a in argv if not a.startswith("-")]
    what = f"{name} {words[0]}" if words else name
    with _locked(root):
        state = _read_json(root / "host.json")
        state["log"].append([name, *argv])
        # Matched without systemctl's --root=..., so rules read like the command a person would type.
        kill = _take_kill(state, " ".join([name, *(a for a in argv if not a.startswith("--root="))]))
        _write_json(root / "host.json", state)
    if kill == "before":
        os.kill(os.getppid(), signal.SIGKILL)
        return 1
    try:
        with _locked(root):
            state = _read_json(root / "host.json")
            if what in state["fail"]:
                raise _Fail(state["fail"][what])
            out = _COMMANDS[name](state, argv, root / "rootfs")
            _write_json(root / "host.json", state)
        status = 0
    except _Fail as exc:
        print(f"error: {exc}", file=sys.stderr)
        out, status = "", 1
    if out:
        sys.stdout.write(out)
        sys.stdout.flush()
    if kill == "after":
        os.kill(os.getppid(), signal.SIGKILL)
    return status


def _take_kill(state: Json, command_line: str) -> str | None:
    for rule in state["kill"]:
        if command_line == rule["match"] or command_line.startswith(rule["match"] + " "):
            if rule["skip"] > 0:
                rule["skip"] -= 1
                return None
            state["kill"].remove(rule)
            return str(rule["when"])
    return None


def _next_boot(state: Json) -> Json:
    nxt: Json = state["staged"] or state["booted"]
    return nxt


def _stage(state: Json, image: str | None, kargs: list[str], digest: str | None = None) -> None:
    state["staged"] = _deployment(image, kargs, digest)


def _check_registry(state: Json, image: str) -> str | None:
    """The manifest digest from the configured registry (None when none is configured)."""
    registry = state.get("registry")
    if not registry:
        return None
    first, _, rest = image.partition("/")
    repo_ref = rest if rest and ("." in first or ":" in first or first == "localhost") else image
    if "@" in repo_ref:
        repo, _, ref = repo_ref.partition("@")
    else:
        repo, _, ref = (
            repo_ref.rpartition(":") if ":" in repo_ref.rsplit("/", 1)[-1] else (repo_ref, "", "latest")
        )
    url = f"{registry.rstrip('/')}/v2/{repo}/manifests/{ref}"
    request = urllib.request.Request(url, method="HEAD", headers={"Accept": _MANIFEST_TYPES})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            digest: str | None = resp.headers.get("Docker-Content-Digest")
            return digest
    except urllib.error.HTTPError as exc:
        raise _Fail(
            f"Creating importer: failed to invoke method OpenImage: reading manifest {ref} in "
            f"{first}/{repo}: manifest unknown (HTTP {exc.code})"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise _Fail(f"pinging container registry {registry}: {exc}") from None


def _rpm_ostree(state: Json, argv: list[str], rootfs: Path) -> str:
    words = [a for a in argv if not a.startswith("-")]
    sub = words[0] if words else ""
    if sub == "status":
        if "--json" not in argv:
            booted = state["booted"]
            return f"State: idle\nDeployments:\n* {booted['image']}\n"
        deployments = []
        for key in ("staged", "booted"):
            d = state[key]
            if d is None:
                continue
            entry: Json = {"booted": key == "booted", "staged": key == "staged", "checksum": d["checksum"]}
            if d["image"]:
                entry["container-image-reference"] = "ostree-unverified-registry:" + d["image"]
                entry["container-image-reference-digest"] = d["digest"]
            else:
                entry["origin"] = "fedora:fedora/x86_64/coreos/stable"
            deployments.append(entry)
        return json.dumps({"deployments": deployments, "transactions": None}) + "\n"
    if sub == "kargs":
        nxt = _next_boot(state)
        kargs = list(nxt["kargs"])
        changed = False
        for arg in argv[1:]:
            opt, _, value = arg.partition("=")
            if opt in ("--append", "--append-if-missing"):
                if opt == "--append" or value not in kargs:
                    kargs.append(value)
                    changed = True
            elif opt in ("--delete", "--delete-if-present"):
                if value not in kargs:
                    if opt == "--delete":
                        raise _Fail(f"No karg '{value}' found")
                    continue
                kargs.remove(value)
                changed = True
            else:
                raise _Fail(f"rpm-ostree kargs: unknown option {arg}")
        if changed:
            _stage(state, nxt["image"], kargs, nxt["digest"])
            return ""
        return " ".join(kargs) + "\n"
    if sub == "rebase":
        if len(words) != 2:
            raise _Fail("rpm-ostree rebase takes exactly one REFSPEC")
        ref = words[1]
        transport = next((t for t in _TRANSPORTS if ref.startswith(t)), None)
        if transport is None:
            raise _Fail(f"Unsupported refspec {ref!r}: use ostree-unverified-registry:<pullspec>")
        image = ref[len(transport) :]
        digest = _check_registry(state, image)
        _stage(state, image, list(_next_boot(state)["kargs"]), digest)
        return 'Staging deployment...done\nRun "systemctl reboot" to start a reboot\n'
    raise _Fail(f"rpm-ostree: unknown command {sub!r}")


def _bootc(state: Json, argv: list[str], rootfs: Path) -> str:
    words = [a for a in argv if not a.startswith("-") and a != "registry"]
    sub = words[0] if words else ""
    if sub == "status":

        def entry(d: Json | None) -> Json | None:
            if d is None or not d["image"]:
                return None
            return {
                "image": {
                    "image": {"image": d["image"], "transport": "registry"},
                    "imageDigest": d["digest"],
                },
                "ostree": {"checksum": d["checksum"]},
            }

        spec_image = _next_boot(state)["image"]
        return (
            json.dumps(
                {
                    "apiVersion": "org.containers.bootc/v1",
                    "kind": "BootcHost",
                    "spec": {"image": {"image": spec_image, "transport": "registry"} if spec_image else None},
                    "status": {
                        "staged": entry(state["staged"]),
                        "booted": entry(state["booted"]),
                        "rollback": None,
                    },
                }
            )
            + "\n"
        )
    if sub == "switch":
        if len(words) != 2:
            raise _Fail("bootc switch takes exactly one IMAGE")
        image = words[1]
        digest = _check_registry(state, image)
        _stage(state, image, list(_next_boot(state)["kargs"]), digest)
        return "Queued for next boot\n"
    raise _Fail(f"bootc: unknown command {sub!r}")


def _systemctl(state: Json, argv: list[str], rootfs: Path) -> str:
    args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--root"):
            given = arg.partition("=")[2] if "=" in arg else argv[i + 1]
            i += 0 if "=" in arg else 1
            if Path(given).resolve() != rootfs.resolve():
                raise _Fail(f"--root={given} is not this host's root {rootfs}")
        elif not arg.startswith("-"):
            args.append(arg)
        i += 1
    sub, units = (args[0], args[1:]) if args else ("", [])
    if sub == "daemon-reload":
        state["daemonReloads"] += 1
        return ""
    if sub == "reboot":
        if state["staged"] is not None:
            state["booted"], state["staged"] = state["staged"], None
        state["bootId"] = str(uuid.uuid4())
        (rootfs / "proc/sys/kernel/random/boot_id").write_text(state["bootId"] + "\n")
        state["reboots"] += 1
        return ""
    if sub in ("enable", "disable", "mask", "unmask", "is-enabled"):
        if not units:
            raise _Fail(f"Too few arguments for systemctl {sub}")
        out = []
        for unit in units:
            exists = any((rootfs / d / unit).is_file() for d in _UNIT_DIRS)
            if sub == "enable":
                if not exists:
                    raise _Fail(f"Failed to enable unit: Unit file {unit} does not exist.")
                if unit in state["masked"]:
                    raise _Fail(f"Failed to enable unit: Unit file /etc/systemd/system/{unit} is masked.")
                if unit not in state["enabled"]:
                    state["enabled"].append(unit)
            elif sub == "disable":
                if unit in state["enabled"]:
                    state["enabled"].remove(unit)
            elif sub == "mask":
                if unit not in state["masked"]:
                    state["masked"].append(unit)
            elif sub == "unmask":
                if unit in state["masked"]:
                    state["masked"].remove(unit)
            else:
                out.append(
                    "masked"
                    if unit in state["masked"]
                    else "enabled"
                    if unit in state["enabled"]
                    else "disabled"
                )
        return "".join(o + "\n" for o in out)
    raise _Fail(f"systemctl: unknown command {sub!r}")


def _update_ca_trust(state: Json, argv: list[str], rootfs: Path) -> str:
    anchors = rootfs / "etc/pki/ca-trust/source/anchors"
    bundle = (
        b"".join(p.read_bytes() for p in sorted(anchors.glob("*")) if p.is_file())
        if anchors.is_dir()
        else b""
    )
    out = rootfs / "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bundle)
    state["caTrustUpdates"] += 1
    return ""


_COMMANDS = {
    "rpm-ostree": _rpm_ostree,
    "bootc": _bootc,
    "systemctl": _systemctl,
    "update-ca-trust": _update_ca_trust,
}


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
