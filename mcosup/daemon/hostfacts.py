"""What the daemon knows of its host: its OS deployments, the files a plan reads and what was applied.

Pure: plain frozen values the host module (:mod:`mcosup.daemon.host`) fills in and the plans read, and
the image-reference helpers both need (the transports rpm-ostree and bootc print in front of a pullspec).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mcosup.model.hostconfig import HostConfig

# Image references: the transports rpm-ostree and bootc print in front of a pullspec.
_TRANSPORTS = (
    "ostree-unverified-registry:",
    "ostree-unverified-image:registry:",
    "ostree-unverified-image:docker://",
    "ostree-remote-registry:",
    "ostree-image-signed:docker://",
    "ostree-image-signed:registry:",
    "docker://",
    "registry:",
)


# Host facts.


@dataclasses.dataclass(frozen=True)
class Deployment:
    """One OS deployment as the host reports it."""

    image: str | None = None
    digest: str | None = None
    kargs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DiskFile:
    contents: bytes
    mode: int


@dataclasses.dataclass(frozen=True)
class Applied:
    """What the daemon last finished applying, as recorded on the host."""

    #: The config whose kernel arguments, ssh keys and password hash are on the host.
    config: HostConfig
    mode: str
    #: The layered image applied, None in legacy mode.
    image: str | None = None
    #: The config whose files and units the daemon wrote (the last legacy one); what a new config drops
    #: from it is removed.
    on_disk: HostConfig | None = None
    #: The last config applied without a reboot and the actions run (``mc/lastAppliedWithoutReboot``).
    live: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.to_json(),
            "mode": self.mode,
            "image": self.image,
            "onDisk": None if self.on_disk is None else self.on_disk.to_json(),
            "live": self.live,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Applied:
        return cls(
            config=HostConfig.from_json(data["config"]),
            mode=data["mode"],
            image=data.get("image"),
            on_disk=None if data.get("onDisk") is None else HostConfig.from_json(data["onDisk"]),
            live=data.get("live"),
        )


@dataclasses.dataclass(frozen=True)
class HostFacts:
    booted: Deployment | None = None
    staged: Deployment | None = None
    applied: Applied | None = None
    #: Current state of every path the plan may touch (see ``paths_to_read``); None = absent.
    disk: Mapping[str, DiskFile | None] = dataclasses.field(default_factory=dict)
    #: Directory names under /etc/docker/certs.d.
    registry_cert_dirs: frozenset[str] = frozenset()

    def next_boot(self) -> Deployment | None:
        return self.staged or self.booted


# Images.


def strip_transport(ref: str) -> str:
    for prefix in _TRANSPORTS:
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def digest_of(ref: str) -> str | None:
    _, sep, digest = strip_transport(ref).rpartition("@")
    return digest if sep and digest.startswith("sha256:") else None


def same_image(deployment: Deployment | None, want: str) -> bool:
    """Whether ``deployment`` runs ``want`` (same pullspec, or same content digest)."""
    if deployment is None or not deployment.image:
        return False
    if strip_transport(deployment.image) == strip_transport(want):
        return True
    want_digest = digest_of(want)
    have = deployment.digest or digest_of(deployment.image)
    return want_digest is not None and have == want_digest
