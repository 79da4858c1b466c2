"""A real local image registry for tests and the demo: Debian's ``docker-registry`` on loopback.

``Registry`` runs ``/usr/bin/docker-registry serve <config>`` on ``127.0.0.1:<free port>`` with its
storage in a directory the caller owns (plain HTTP, no auth: clients use ``--tls-verify=false``).
``build_base_image`` builds a tiny OS image FROM scratch with buildah (:data:`BASE_FILES`: enough for an
ostree deployment — a kernel, ``/usr/lib/os-release``, ``/etc`` defaults) and pushes it there, so builds
have a real base to start from.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

REGISTRY_BINARY = "/usr/bin/docker-registry"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


#: Ports handed out for listeners: below Linux's ephemeral range (32768-60999), so that no outgoing
#: connection takes a listener's port while its process restarts (a supervisor killed and started
#: again must bind its webhook port anew).
LISTENER_PORTS = range(20000, 32768)


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now, outside the ephemeral range."""
    pick = random.SystemRandom()
    while True:
        port = pick.choice(LISTENER_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class Registry:
    """``async with Registry(directory) as reg:`` — ``reg.host`` is ``127.0.0.1:<port>``."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int = 0,
        binary: str = REGISTRY_BINARY,
        credentials: tuple[str, str] | None = None,
        delete_enabled: bool = True,
    ) -> None:
        """``credentials``: require HTTP Basic auth with this user and password (htpasswd, bcrypt).

        ``delete_enabled``: ``storage.delete.enabled``; when False the registry answers 405 to every
        delete, as a registry whose admin left deletion off (the distribution registry's default) does.
        """
        self.directory = Path(directory)
        self.port = port or free_port()
        self.binary = binary
        self.credentials = credentials
        self.delete_enabled = delete_enabled
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def auth_header(self) -> dict[str, str]:
        if self.credentials is None:
            return {}
        token = base64.b64encode(":".join(self.credentials).encode()).decode()
        return {"Authorization": f"Basic {token}"}

    @property
    def creds_args(self) -> list[str]:
        """``--creds user:password`` for buildah/skopeo, when the registry wants credentials."""
        return ["--creds", ":".join(self.credentials)] if self.credentials else []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    async def start(self, startup_seconds: float = 20.0) -> None:
        storage = self.directory / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.directory / "config.yml"
        settings: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(storage)},
                "delete": {"enabled": self.delete_enabled},
            },
            "http": {"addr": self.host},
        }
        if self.credentials is not None:
            import bcrypt  # only registries with credentials need it (dev dependency)

            user, password = self.credentials
            htpasswd = self.directory / "htpasswd"
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            htpasswd.write_text(f"{user}:{hashed}\n")
            settings["auth"] = {"htpasswd": {"realm": "mcosup-test", "path": str(htpasswd)}}
        # JSON is YAML: no YAML writer needed for a five-key config.
        config.write_text(json.dumps(settings))
        log = (self.directory / "registry.log").open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self.binary, "serve", str(config), stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
            )
        finally:
            log.close()
        deadline = time.monotonic() + startup_seconds
        while not await asyncio.to_thread(self._answers):
            if self._proc.returncode is not None or time.monotonic() > deadline:
                await self.stop()
                tail = (self.directory / "registry.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"docker-registry did not come up on {self.host}: {tail}")
            await asyncio.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/v2/", timeout=1) as resp:
                return bool(resp.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for the credentials it was configured with
        except (OSError, urllib.error.URLError):
            return False

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def __aenter__(self) -> Registry:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # Blocking helpers for tests (run them with asyncio.to_thread from async code).

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest the registry serves for ``repo:reference``, or None when it has no such manifest."""
        req = urllib.request.Request(
            f"{self.url}/v2/{repo}/manifests/{reference}",
            method="HEAD",
            headers={"Accept": MANIFEST_TYPES, **self.auth_header},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                digest: str | None = resp.headers.get("Docker-Content-Digest")
                return digest
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def tags(self, repo: str) -> list[str]:
        try:
            req = urllib.request.Request(f"{self.url}/v2/{repo}/tags/list", headers=self.auth_header)
            with urllib.request.urlopen(req, timeout=5) as resp:
                return list(json.load(resp).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise


async def run(*argv: str, cwd: Path | None = None) -> str:
    """Run a command; return its stdout, or raise RuntimeError with its output."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {text[-2000:]}")
    return text


def buildah_storage_args(root: Path) -> list[str]:
    """Private vfs storage, so concurrent builds (and other users of buildah) never share a lock."""
    return ["--storage-driver", "vfs", "--root", str(root / "storage"), "--runroot", str(root / "run")]


#: The stock OS image's files: path -> (text, mode), or the target of a symlink (``"-> target"``). It
#: carries what an ostree deployment needs (a kernel and initramfs under ``/usr/lib/modules/<version>``,
#: ``/usr/lib/os-release``), the users the daemon owns files by, stock units, and ``/home`` on ``/var``
#: as on every ostree host (``/home/core`` lives in the stateroot's ``/var``, surviving deployments).
BASE_FILES: dict[str, tuple[str, int] | str] = {
    "usr/lib/os-release": ('NAME="mcosup test OS"\nID=mcosup-test\nVERSION_ID=1\n', 0o644),
    "etc/os-release": "-> ../usr/lib/os-release",
    "usr/lib/modules/6.1.0-mcosup/vmlinuz": ("mcosup test kernel\n", 0o755),
    "usr/lib/modules/6.1.0-mcosup/initramfs.img": ("mcosup test initramfs\n", 0o644),
    "etc/passwd": (
        "root:x:0:0:root:/root:/bin/bash\ncore:x:1000:1000:CoreOS:/var/home/core:/bin/bash\n",
        0o644,
    ),
    "etc/group": ("root:x:0:\ncore:x:1000:\n", 0o644),
    "etc/shadow": ("root:*:19000:0:99999:7:::\ncore:*:19000:0:99999:7:::\n", 0o640),
    "home": "-> var/home",
    "usr/lib/systemd/system/docker.service": (
        "[Unit]\nDescription=stand-in\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    ),
    "usr/lib/systemd/system/sshd.service": (
        "[Unit]\nDescription=stand-in\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    ),
    # A node's OS runs the kubelet and CRI-O (a disruption policy reloads crio.service), as FakeHost has.
    "usr/lib/systemd/system/kubelet.service": (
        "[Unit]\nDescription=stand-in\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    ),
    "usr/lib/systemd/system/crio.service": (
        "[Unit]\nDescription=stand-in\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    ),
}


async def build_base_image(
    registry: Registry, repo: str = "os/base", tag: str = "stock", *, filler_bytes: int = 0
) -> str:
    """Build a tiny OS image FROM scratch, push it to ``registry``; return ``<host>/<repo>@<digest>``.

    ``filler_bytes`` adds an incompressible ``/usr/lib/filler`` of that size, for a base as heavy as a
    real OS image's layers (benchmarks).
    """
    work = Path(tempfile.mkdtemp(prefix="mcosup-base-"))
    try:
        ctx = work / "ctx"
        for rel, spec in BASE_FILES.items():
            path = ctx / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(spec, str):
                path.symlink_to(spec.removeprefix("-> "))
            else:
                path.write_text(spec[0])
                path.chmod(spec[1])
        if filler_bytes:
            (ctx / "usr/lib/filler").write_bytes(os.urandom(filler_bytes))
        (work / "Containerfile").write_text(
            "FROM scratch\nCOPY . /\nLABEL org.opencontainers.image.title=mcosup-test-os\n"
        )
        image = f"{registry.host}/{repo}:{tag}"
        storage = buildah_storage_args(work)
        await run(
            "buildah",
            *storage,
            "bud",
            "--isolation",
            "chroot",
            "-f",
            str(work / "Containerfile"),
            "-t",
            image,
            str(ctx),
        )
        digestfile = work / "digest"
        await run(
            "buildah",
            *storage,
            "push",
            *registry.creds_args,
            "--tls-verify=false",
            "--digestfile",
            str(digestfile),
            image,
            f"docker://{image}",
        )
        return f"{registry.host}/{repo}@{digestfile.read_text().strip()}"
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(shutil.rmtree, work, True)


class ImageFile:
    """One entry of an image's merged filesystem, as its layers leave it."""

    def __init__(self, mode: int, data: bytes = b"", link: str | None = None, is_dir: bool = False) -> None:
        self.mode, self.data, self.link, self.is_dir = mode, data, link, is_dir

    def __repr__(self) -> str:
        kind = (
            "dir" if self.is_dir else f"link->{self.link}" if self.link is not None else f"{len(self.data)}B"
        )
        return f"ImageFile({oct(self.mode)}, {kind})"


def _get(
    url: str, accept: str | None = None, auth: Mapping[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers={**({"Accept": accept} if accept else {}), **(auth or {})})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read(), dict(resp.headers.items())


def read_image(registry: Registry, repo: str, reference: str) -> tuple[dict[str, str], dict[str, ImageFile]]:
    """``(labels, files)`` of ``repo@reference``: its config labels and its layers applied in order.

    Blocking; whiteouts are honoured so the result is what a host booting the image would see.
    """
    import gzip
    import io
    import tarfile

    auth = registry.auth_header
    raw, _ = _get(f"{registry.url}/v2/{repo}/manifests/{reference}", MANIFEST_TYPES, auth)
    manifest = json.loads(raw)
    config_raw, _ = _get(f"{registry.url}/v2/{repo}/blobs/{manifest['config']['digest']}", None, auth)
    labels: dict[str, str] = (json.loads(config_raw).get("config") or {}).get("Labels") or {}
    files: dict[str, ImageFile] = {}
    for layer in manifest["layers"]:
        blob, _ = _get(f"{registry.url}/v2/{repo}/blobs/{layer['digest']}", None, auth)
        if blob[:2] == b"\x1f\x8b":
            blob = gzip.decompress(blob)
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            for member in tar.getmembers():
                path = "/" + member.name.lstrip("./").rstrip("/")
                base = path.rsplit("/", 1)[-1]
                if base.startswith(".wh."):
                    gone = path.rsplit("/", 1)[0] + "/" + base[4:]
                    files = {p: f for p, f in files.items() if p != gone and not p.startswith(gone + "/")}
                    continue
                if member.isdir():
                    files[path] = ImageFile(member.mode, is_dir=True)
                elif member.issym():
                    files[path] = ImageFile(member.mode, link=member.linkname)
                elif member.isfile():
                    f = tar.extractfile(member)
                    files[path] = ImageFile(member.mode, data=f.read() if f else b"")
    return labels, files
