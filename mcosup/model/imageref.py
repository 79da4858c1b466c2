"""Container image references (``registry[:port]/path[:tag][@sha256:<hex>]``): a strict parser.

Pure. The grammar is the distribution reference grammar that registries and ``podman``/``buildah``
accept. Unlike Docker's normaliser, a registry host is required by default: on a cluster an image
without one is resolved by short-name rules the user did not choose, and the builder pushes to it.
The webhook uses this to check ``finalImagePullspec``; the builder reuses it to retag and record digests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_NAME = 255


class InvalidImageRef(ValueError):
    """Not an image reference; the message says which part is wrong and what is expected."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    registry: str  # host[:port], "" only when parsed with require_registry=False and none was given
    repository: str  # path below the registry, e.g. "ns/os-image"
    tag: str | None = None
    digest: str | None = None  # "sha256:<64 hex>"

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def with_tag(self, tag: str) -> ImageRef:
        """The same repository with ``tag`` instead of any tag or digest."""
        if not _TAG.match(tag):
            raise InvalidImageRef(f"tag {tag!r} is invalid: use letters, digits, '_', '.', '-' (max 128)")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> ImageRef:
        """The same repository pinned to ``digest`` (tag dropped): the form recorded on pools and nodes."""
        if not _DIGEST.match(digest):
            raise InvalidImageRef(f"digest {digest!r} is invalid: expected sha256:<64 lowercase hex>")
        return replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += ":" + self.tag
        if self.digest is not None:
            text += "@" + self.digest
        return text


def parse_image_ref(text: str, *, require_registry: bool = True) -> ImageRef:
    """Parse ``text``; raise :class:`InvalidImageRef` naming the offending part."""
    if not isinstance(text, str) or not text:
        raise InvalidImageRef("image reference is empty: expected registry.example.com/namespace/name:tag")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidImageRef(f"image reference {text!r} contains whitespace")
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise InvalidImageRef(f"image reference {text!r} has a URL scheme: drop {scheme + '://'!r}")
    remainder = text
    digest: str | None = None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidImageRef(
                f"digest {digest!r} in {text!r} is invalid: "
                "expected sha256: followed by 64 lowercase hex digits"
            )
    tag: str | None = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidImageRef(
                f"tag {tag!r} in {text!r} is invalid: use letters, digits, '_', '.', '-' (max 128 characters)"
            )
    if not remainder:
        raise InvalidImageRef(f"image reference {text!r} has no repository name")
    registry = ""
    first, sep, rest = remainder.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, path = first, rest
        if not _DOMAIN.match(registry):
            raise InvalidImageRef(f"registry {registry!r} in {text!r} is not a valid host[:port]")
    else:
        path = remainder
    if not registry and require_registry:
        raise InvalidImageRef(
            f"image reference {text!r} names no registry: write it in full, "
            f"e.g. registry.example.com/{remainder}"
        )
    if not path:
        raise InvalidImageRef(f"image reference {text!r} has no repository path after the registry")
    for component in path.split("/"):
        if not _PATH_COMPONENT.match(component):
            raise InvalidImageRef(
                f"repository path component {component!r} in {text!r} is invalid: use lowercase letters "
                "and digits, separated by '.', '_', '__' or '-'"
            )
    if len(registry) + 1 + len(path) > _MAX_NAME:
        raise InvalidImageRef(f"repository name in {text!r} is longer than {_MAX_NAME} characters")
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest)


def is_digested(text: str) -> bool:
    """True when ``text`` is a full reference pinned by digest (``repo@sha256:<64 hex>``)."""
    try:
        return parse_image_ref(text).digest is not None
    except InvalidImageRef:
        return False
