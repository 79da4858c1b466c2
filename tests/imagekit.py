"""Push hand-made OS images to the local registry over its HTTP API, layer by layer.

Tests of the ostree host need images whose layers say exactly what they mean (a whiteout, an opaque
directory, a file replacing a directory), which a Containerfile FROM scratch cannot express without a
shell. ``Layer`` maps a path to its entry: text (a 0644 file), ``(text, mode)``, ``Link(target)``,
``Dir()``, ``WHITEOUT`` (deletes the path from lower layers) or ``OPAQUE`` (empties a directory).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
import urllib.request
from collections.abc import Mapping, Sequence

from mcosup.builder.buildplan import build_context
from mcosup.sim.registry import Registry


@dataclasses.dataclass(frozen=True)
class Link:
    target: str


@dataclasses.dataclass(frozen=True)
class Dir:
    mode: int = 0o755


WHITEOUT = "whiteout"
OPAQUE = "opaque"
Entry = str | tuple[str, int] | Link | Dir
Layer = Mapping[str, Entry]

#: What the stock image of :func:`mcosup.sim.registry.build_base_image` carries, as one layer.
BOOTABLE: Layer = {
    "usr/lib/os-release": "ID=imagekit\n",
    "usr/lib/modules/6.1.0/vmlinuz": ("kernel\n", 0o755),
    "usr/lib/modules/6.1.0/initramfs.img": "initramfs\n",
    "etc/os-release": Link("../usr/lib/os-release"),
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\ncore:x:1000:1000::/var/home/core:/bin/bash\n",
    "etc/group": "root:x:0:\ncore:x:1000:\n",
    "etc/shadow": ("root:*:19000:0:99999:7:::\ncore:*:19000:0:99999:7:::\n", 0o640),
    "usr/lib/systemd/system/docker.service": "[Install]\nWantedBy=multi-user.target\n",
    "home": Link("var/home"),
}


def config_layer(machineconfig: Mapping[str, object]) -> dict[str, Entry]:
    """The layer the builder adds for a rendered MachineConfig: its own build context (files, unit
    files, drop-ins, enablement and mask links), owned by root."""
    spec = machineconfig["spec"]
    assert isinstance(spec, Mapping)
    layer: dict[str, Entry] = {}
    for entry in build_context(str(machineconfig["metadata"]["name"]), spec):  # type: ignore[index]
        path = entry.path.lstrip("/")
        layer[path] = Link(entry.link) if entry.link is not None else (entry.data.decode(), entry.mode)
    return layer


def layer_tar(layer: Layer) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, entry in layer.items():
            name = path.lstrip("/")
            if entry == WHITEOUT:
                parent, _, base = name.rpartition("/")
                name, entry = f"{parent}/.wh.{base}".lstrip("/"), ""
            elif entry == OPAQUE:
                name, entry = f"{name}/.wh..wh..opq", ""
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if isinstance(entry, Link):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.target, 0o777
                tar.addfile(info)
            elif isinstance(entry, Dir):
                info.type, info.mode = tarfile.DIRTYPE, entry.mode
                tar.addfile(info)
            else:
                text, mode = (entry, 0o644) if isinstance(entry, str) else entry
                data = text.encode()
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def _request(registry: Registry, method: str, url: str, body: bytes = b"", ctype: str = "") -> str:
    headers = {**registry.auth_header, **({"Content-Type": ctype} if ctype else {})}
    req = urllib.request.Request(url, data=body if method != "POST" else b"", method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.headers.get("Location") or ""


def push_blob(registry: Registry, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    location = _request(registry, "POST", f"{registry.url}/v2/{repo}/blobs/uploads/")
    if location.startswith("/"):
        location = registry.url + location
    sep = "&" if "?" in location else "?"
    _request(registry, "PUT", f"{location}{sep}digest={digest}", data, "application/octet-stream")
    return digest


def push_image(registry: Registry, repo: str, layers: Sequence[Layer], tag: str = "latest") -> str:
    """Push an image of ``layers`` (lowest first); ``<host>/<repo>@<manifest digest>``."""
    blobs = [layer_tar(layer) for layer in layers]
    diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(b)).hexdigest() for b in blobs]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    layer_descs = [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": push_blob(registry, repo, b),
            "size": len(b),
        }
        for b in blobs
    ]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": push_blob(registry, repo, config),
                "size": len(config),
            },
            "layers": layer_descs,
        }
    ).encode()
    _request(
        registry,
        "PUT",
        f"{registry.url}/v2/{repo}/manifests/{tag}",
        manifest,
        "application/vnd.oci.image.manifest.v1+json",
    )
    return f"{registry.host}/{repo}@sha256:{hashlib.sha256(manifest).hexdigest()}"
