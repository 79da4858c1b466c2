"""A node's OS on a real libostree sysroot: what stands in for ``rpm-ostree`` / ``bootc`` on an ostree host.

Layout under a host directory (see :class:`mcosup.sim.ostreehost.OstreeHost`):

- ``sysroot/`` — a real sysroot (``ostree admin init-fs``, stateroot :data:`OSNAME`, no bootloader);
  deployments in ``sysroot/ostree/deploy/<os>/deploy/<checksum>.<serial>``, the stateroot's ``/var``
  in ``sysroot/ostree/deploy/<os>/var``;
- ``rootfs/`` — the tree the daemon gets as its root: one symlink per top-level entry of the **booted**
  deployment (``/etc``, ``/usr``, ...), ``/var`` to the stateroot's, ``/proc`` to ``proc/`` (the boot id);
  re-pointed at every boot.

What the real tools do, here:

- **pull** (``rpm-ostree rebase ostree-unverified-registry:<image>`` / ``bootc switch``): the image is
  fetched from the registry **by digest** (a tag is first resolved to one) over the registry HTTP API,
  every blob checked against its digest, its layers unpacked in order with whiteouts honoured, ``/etc``
  moved to ``/usr/etc``, and the tree committed (branch ``mcosup/image/<digest hex>``, the manifest digest
  in the commit's ``ostree.manifest-digest`` metadata, as ostree-rs-ext records it). A digest already
  committed is not fetched again (content-addressed, as the real layer cache).
- **stage**: the pulled commit, its image reference and the next boot's kernel arguments are recorded as
  the pending deployment. ``ostree admin deploy --stage`` needs a booted sysroot and systemd's
  ``ostree-finalize-staged.service``; neither exists on a plain directory, so the finalisation that
  service runs at shutdown runs at ``systemctl reboot`` instead: ``ostree admin deploy`` with the real
  three-way ``/etc`` merge from the booted deployment. That is also when it happens on a real host, so
  ``/etc`` changes made between staging and reboot (the daemon's journal) reach the new deployment.
- **boot**: the first deployment in ``ostree admin status`` is the booted one (``admin deploy`` puts a
  new deployment first and keeps the previous one second, as rollback material); its kernel arguments
  are its boot entry's ``options`` line.

Imported by every fake command (a fresh interpreter per command): standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

#: The stateroot every simulated node uses (FCOS's name).
OSNAME = "fcos"
TRANSPORT = "ostree-unverified-registry:"
OPAQUE = ".wh..wh..opq"
WHITEOUT = ".wh."
_MANIFEST = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
_INDEX = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"
_STATUS_LINE = re.compile(r"^[* ] (\S+) ([0-9a-f]{64})\.(\d+)")


class OstreeError(Exception):
    """An ostree operation or an image pull failed; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class OstreeDeployment:
    checksum: str
    serial: int
    path: Path
    #: The image reference from the deployment's origin (without transport); None for a non-image origin.
    image: str | None
    digest: str | None
    kargs: tuple[str, ...]


def run_ostree(*args: str) -> str:
    try:
        proc = subprocess.run(["ostree", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise OstreeError("ostree is not installed: apt-get install -y ostree") from None
    if proc.returncode != 0:
        raise OstreeError(f"ostree {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def repo_args(sysroot: Path) -> str:
    return f"--repo={sysroot / 'ostree' / 'repo'}"


def init_sysroot(sysroot: Path) -> None:
    """A fresh sysroot with stateroot :data:`OSNAME`, no bootloader to update and no fsync."""
    sysroot.mkdir(parents=True, exist_ok=True)
    run_ostree("admin", "init-fs", str(sysroot))
    run_ostree("admin", "os-init", f"--sysroot={sysroot}", OSNAME)
    run_ostree(repo_args(sysroot), "config", "set", "sysroot.bootloader", "none")
    # Simulated nodes die with the test: durability is not worth a sync per object.
    run_ostree(repo_args(sysroot), "config", "set", "core.fsync", "false")


# Images.


@dataclasses.dataclass(frozen=True)
class ImageRef:
    registry: str  # host[:port]
    repo: str
    reference: str  # a tag or a digest

    @classmethod
    def parse(cls, image: str) -> ImageRef:
        if image.startswith(TRANSPORT):
            image = image[len(TRANSPORT) :]
        first, sep, rest = image.partition("/")
        if not sep or not ("." in first or ":" in first or first == "localhost"):
            raise OstreeError(f"image {image!r} names no registry host; give <host>/<repo>@sha256:<digest>")
        if "@" in rest:
            repo, _, ref = rest.partition("@")
        elif ":" in rest.rsplit("/", 1)[-1]:
            repo, _, ref = rest.rpartition(":")
        else:
            repo, ref = rest, "latest"
        return cls(first, repo, ref)


class RegistryClient:
    """The registry HTTP API (v2), plain HTTP, credentials from the registry URL (a node's pull secret)."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        self.headers: dict[str, str] = {}
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            self.headers["Authorization"] = (
                "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            )
        host = parts.hostname or ""
        self.base = urllib.parse.urlunsplit(
            parts._replace(netloc=host + (f":{parts.port}" if parts.port else ""))
        )
        self.host = host + (f":{parts.port}" if parts.port else "")

    def get(self, ref: ImageRef, path: str, accept: str | None = None) -> bytes:
        url = f"{self.base}/v2/{ref.repo}/{path}"
        headers = dict(self.headers)
        if accept:
            headers["Accept"] = accept
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as resp:
                body: bytes = resp.read()
                return body
        except urllib.error.HTTPError as exc:
            raise OstreeError(
                f"reading {path} of {ref.registry}/{ref.repo}: HTTP {exc.code} ({exc.reason})"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise OstreeError(f"pinging container registry {self.base}: {exc}") from None

    def manifest(self, ref: ImageRef) -> tuple[dict[str, object], str]:
        """The image manifest and its digest, checked against the reference when that is a digest."""
        body = self.get(ref, f"manifests/{ref.reference}", f"{_MANIFEST}, {_INDEX}")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.reference.startswith("sha256:") and digest != ref.reference:
            raise OstreeError(f"manifest of {ref.repo}@{ref.reference} has digest {digest}: refusing it")
        data = json.loads(body)
        if "manifests" in data:  # an index: take the linux/amd64 (or only) image, by digest
            choices = data["manifests"]
            pick = next(
                (
                    m
                    for m in choices
                    if (m.get("platform") or {}).get("os") == "linux"
                    and (m.get("platform") or {}).get("architecture") == "amd64"
                ),
                choices[0] if len(choices) == 1 else None,
            )
            if pick is None:
                raise OstreeError(f"image index {ref.repo}@{digest} has no linux/amd64 image")
            return self.manifest(dataclasses.replace(ref, reference=pick["digest"]))
        return data, digest

    def blob(self, ref: ImageRef, digest: str) -> bytes:
        body = self.get(ref, f"blobs/{digest}")
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise OstreeError(f"blob {digest} of {ref.repo} does not match its digest")
        return body


def _safe_name(name: str, image: str) -> PurePosixPath:
    pure = PurePosixPath(name.lstrip("/"))
    if ".." in pure.parts:
        raise OstreeError(f"image {image} has a layer entry {name!r} leaving the root: refusing it")
    return pure


def _check_parents(tree: Path, rel: PurePosixPath, image: str) -> None:
    """Refuse writing through a symlink the image planted (it would escape the tree)."""
    cur = tree
    for part in rel.parts[:-1]:
        cur = cur / part
        if cur.is_symlink():
            raise OstreeError(
                f"image {image}: layer entry /{rel} lies under symlink /{cur.relative_to(tree)}"
            )


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path)


def apply_layer(tree: Path, blob: bytes, image: str) -> None:
    """Apply one layer on ``tree``: its whiteouts on what lower layers left, then its entries."""
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        raise OstreeError(f"image {image} has a zstd layer; this host reads gzip and plain tar layers only")
    if blob[:2] == b"\x1f\x8b":
        blob = gzip.decompress(blob)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
        members = tar.getmembers()
        entries: list[tuple[PurePosixPath, tarfile.TarInfo]] = []
        for member in members:
            rel = _safe_name(member.name, image)
            if not rel.parts:
                continue
            base = rel.name
            if base == OPAQUE:
                target = tree / rel.parent
                if target.is_dir() and not target.is_symlink():
                    for child in target.iterdir():
                        _remove(child)
            elif base.startswith(WHITEOUT):
                _check_parents(tree, rel, image)
                _remove(tree / rel.parent / base[len(WHITEOUT) :])
            else:
                entries.append((rel, member))
        for rel, member in entries:
            _check_parents(tree, rel, image)
            dest = tree / rel
            if member.islnk():
                _safe_name(member.linkname, image)
            exists = dest.is_symlink() or dest.exists()
            if exists and not (member.isdir() and dest.is_dir() and not dest.is_symlink()):
                _remove(dest)
            member.name = str(rel)
            tar.extract(member, tree, numeric_owner=True, filter="fully_trusted")


def pull(sysroot: Path, registry_url: str, image: str, work: Path) -> tuple[str, str]:
    """Commit ``image`` into the sysroot's repository; (commit checksum, manifest digest)."""
    ref = ImageRef.parse(image)
    client = RegistryClient(registry_url)
    if ref.registry != client.host:
        raise OstreeError(
            f"image {image} is on registry {ref.registry}, but this node pulls from {client.host} only"
        )
    manifest, digest = client.manifest(ref)
    branch = "mcosup/image/" + digest.removeprefix("sha256:")
    have = subprocess.run(
        ["ostree", repo_args(sysroot), "rev-parse", branch], capture_output=True, text=True, check=False
    )
    if have.returncode == 0:
        return have.stdout.strip(), digest
    tree = work / digest.removeprefix("sha256:")
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    try:
        layers = manifest.get("layers")
        if not isinstance(layers, list):
            raise OstreeError(f"manifest {ref.repo}@{digest} lists no layers")
        for layer in layers:
            apply_layer(tree, client.blob(ref, str(layer["digest"])), image)
        prepare_tree(tree, image)
        out = run_ostree(
            repo_args(sysroot),
            "commit",
            f"--branch={branch}",
            f"--tree=dir={tree}",
            f"--subject={image}",
            f"--add-metadata-string=ostree.manifest-digest={digest}",
        )
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return out.strip(), digest


def prepare_tree(tree: Path, image: str) -> None:
    """A container's root made an ostree commit: ``/etc`` becomes the default ``/usr/etc``."""
    etc, usr_etc = tree / "etc", tree / "usr" / "etc"
    if etc.is_dir() and not etc.is_symlink():
        if usr_etc.exists():
            raise OstreeError(f"image {image} carries both /etc and /usr/etc; an OS image carries /etc only")
        (tree / "usr").mkdir(exist_ok=True)
        etc.rename(usr_etc)
    missing = [p for p in ("usr/lib/os-release", "usr/etc") if not (tree / p).exists()]
    if not list(tree.glob("usr/lib/modules/*/vmlinuz")):
        missing.append("usr/lib/modules/<version>/vmlinuz")
    if missing:
        raise OstreeError(
            f"image {image} is not a bootable OS image: it lacks {', '.join('/' + m for m in missing)}"
        )


# Deployments.


def deployments(sysroot: Path) -> list[OstreeDeployment]:
    """Every deployment of the stateroot, in boot order (``ostree admin status``)."""
    out = run_ostree("admin", "status", f"--sysroot={sysroot}")
    found = []
    for line in out.splitlines():
        m = _STATUS_LINE.match(line)
        if m and m.group(1) == OSNAME:
            found.append((m.group(2), int(m.group(3))))
    kargs = _boot_entries(sysroot)
    result = []
    for checksum, serial in found:
        path = sysroot / "ostree" / "deploy" / OSNAME / "deploy" / f"{checksum}.{serial}"
        image = _origin_image(path.with_name(path.name + ".origin"))
        digest = _metadata(sysroot, checksum, "ostree.manifest-digest")
        result.append(OstreeDeployment(checksum, serial, path, image, digest, kargs.get(path.resolve(), ())))
    return result


def _origin_image(origin: Path) -> str | None:
    try:
        text = origin.read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "container-image-reference":
            value = value.strip()
            return value[len(TRANSPORT) :] if value.startswith(TRANSPORT) else value
    return None


def _metadata(sysroot: Path, checksum: str, key: str) -> str | None:
    proc = subprocess.run(
        ["ostree", repo_args(sysroot), "show", f"--print-metadata-key={key}", checksum],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.strip().strip("'") or None


def _boot_entries(sysroot: Path) -> dict[Path, tuple[str, ...]]:
    """Deployment directory -> kernel arguments, from the boot entries (``ostree=`` left out)."""
    out: dict[Path, tuple[str, ...]] = {}
    for entry in sorted((sysroot / "boot" / "loader" / "entries").glob("*.conf")):
        options: list[str] = []
        for line in entry.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "options":
                options = value.split()
        link = next((o.partition("=")[2] for o in options if o.startswith("ostree=")), None)
        if link is None:
            continue
        target = (sysroot / link.lstrip("/")).resolve()
        out[target] = tuple(o for o in options if not o.startswith("ostree="))
    return out


def deploy(sysroot: Path, checksum: str, image: str | None, kargs: list[str], work: Path) -> None:
    """``ostree admin deploy``: the new first deployment, ``/etc`` merged from the current first one."""
    work.mkdir(parents=True, exist_ok=True)
    argv = ["admin", "deploy", f"--sysroot={sysroot}", f"--os={OSNAME}", "--karg-none"]
    argv += [f"--karg-append={k}" for k in kargs]
    if image is not None:
        origin = work / "next.origin"
        origin.write_text(f"[origin]\ncontainer-image-reference={TRANSPORT}{image}\n")
        argv.append(f"--origin-file={origin}")
    run_ostree(*argv, checksum)


def point_root(rootfs: Path, booted: OstreeDeployment, sysroot: Path, proc: Path) -> None:
    """Make ``rootfs`` show the booted deployment, the stateroot's ``/var`` and the host's ``/proc``."""
    rootfs.mkdir(exist_ok=True)
    want: dict[str, str] = {}
    for entry in booted.path.iterdir():
        if entry.name in ("var", "proc"):
            continue
        # A top-level symlink of the deployment (home -> var/home) is kept as it is, so it resolves in
        # the root the daemon sees (to the stateroot's /var), as it does on a booted host.
        want[entry.name] = os.readlink(entry) if entry.is_symlink() else str(entry)
    want["var"] = str(sysroot / "ostree" / "deploy" / OSNAME / "var")
    want["proc"] = str(proc)
    for name, target in want.items():
        tmp = rootfs / f".{name}.next"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, rootfs / name)
    for entry in rootfs.iterdir():
        if entry.name not in want:
            _remove(entry)
