"""Ask an image registry whether it still has an image: the reuse check of contract section 4.

One call, ``manifest_digest``: a ``HEAD /v2/<repo>/manifests/<tag>`` (GET when the registry does not
send the digest on HEAD) with the credentials of a dockerconfigjson, answering Basic and Bearer token
challenges the way the distribution spec describes. Nothing else of the registry API is needed: builds
themselves run in buildah.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Mapping
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
DOCKER_HUB = "registry-1.docker.io"
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """The registry could not answer whether it has the manifest (not a plain 'no')."""


def split_image(image: str) -> tuple[str, str, str]:
    """``(registry host, repository path, tag or digest)`` of ``host/repo:tag`` or ``host/repo@digest``."""
    if "@" in image:
        name, reference = image.split("@", 1)
    else:
        slash, colon = image.rfind("/"), image.rfind(":")
        name, reference = (image[:colon], image[colon + 1 :]) if colon > slash else (image, "latest")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest, reference
    return DOCKER_HUB, name if rest else f"library/{name}", reference


def basic(creds: tuple[str, str]) -> str:
    """An HTTP Basic ``Authorization`` value (RFC 7617; registries take UTF-8 credentials)."""
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def credentials_for(host: str, auths: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(username, password)`` for ``host`` from an ``auths`` map (keys may carry a scheme or path)."""
    for key, entry in auths.items():
        key_host = re.sub(r"^https?://", "", key).split("/", 1)[0]
        if key_host == "index.docker.io" and host == DOCKER_HUB:
            key_host = DOCKER_HUB
        if key_host != host or not isinstance(entry, Mapping):
            continue
        if entry.get("username"):
            return str(entry["username"]), str(entry.get("password", ""))
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except ValueError:
                continue
            return user, password
    return None


async def _token(
    session: aiohttp.ClientSession,
    challenge: str,
    repo: str,
    creds: tuple[str, str] | None,
    ssl: bool,
) -> str:
    params = dict(_CHALLENGE_PARAM.findall(challenge))
    realm = params.pop("realm", "")
    if not realm:
        raise RegistryError(f"registry asked for a token without a realm: {challenge!r}")
    params.setdefault("scope", f"repository:{repo}:pull")
    headers = {"Authorization": basic(creds)} if creds else {}
    async with session.get(realm, params=params, headers=headers, ssl=ssl) as resp:
        if resp.status != 200:
            raise RegistryError(f"token endpoint {realm} answered {resp.status}")
        body = await resp.json(content_type=None)
    token = body.get("token") or body.get("access_token")
    if not token:
        raise RegistryError(f"token endpoint {realm} gave no token")
    return str(token)


async def manifest_digest(
    session: aiohttp.ClientSession,
    image: str,
    auths: Mapping[str, Any],
    *,
    tls_verify: bool = True,
) -> str | None:
    """The digest the registry serves for ``image`` (``host/repo:tag``), or None when it has none.

    ``tls_verify=False`` (test registries) tries HTTPS without verification, then plain HTTP.
    Raises RegistryError when the registry cannot be asked (unreachable, refused credentials).
    """
    host, repo, reference = split_image(image)
    schemes = ["https"] if tls_verify else ["https", "http"]
    last: Exception | None = None
    for scheme in schemes:
        try:
            return await _ask(session, f"{scheme}://{host}", host, repo, reference, auths, tls_verify)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            last = exc
    raise RegistryError(f"registry {host} cannot be reached: {last}")


async def _ask(
    session: aiohttp.ClientSession,
    base: str,
    host: str,
    repo: str,
    reference: str,
    auths: Mapping[str, Any],
    ssl: bool,
) -> str | None:
    url = f"{base}/v2/{repo}/manifests/{reference}"
    headers = {"Accept": MANIFEST_TYPES}
    creds = credentials_for(host, auths)
    for method in ("HEAD", "GET"):
        tried_auth = False
        while True:
            async with session.request(method, url, headers=headers, ssl=ssl) as resp:
                if resp.status == 401 and not tried_auth:
                    challenge = resp.headers.get("WWW-Authenticate", "")
                    tried_auth = True
                    if challenge.lower().startswith("bearer"):
                        token = await _token(session, challenge, repo, creds, ssl)
                        headers["Authorization"] = f"Bearer {token}"
                        continue
                    if creds is None:
                        raise RegistryError(
                            f"registry {host} wants credentials and the Secrets have none for it"
                        )
                    headers["Authorization"] = basic(creds)
                    continue
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise RegistryError(f"registry {host} answered {resp.status} for {repo}:{reference}")
                digest = resp.headers.get("Docker-Content-Digest")
                if digest:
                    return digest
                if method == "GET":
                    return "sha256:" + hashlib.sha256(await resp.read()).hexdigest()
                break  # HEAD without a digest header: ask again with GET and hash the manifest
    return None
