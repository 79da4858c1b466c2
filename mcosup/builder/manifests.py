"""The two registry calls the builder makes itself (builds run in buildah): the reuse check and pruning.

- ``manifest_digest`` (reuse, contract sections 4 and 11): a ``HEAD /v2/<repo>/manifests/<tag>`` (GET
  when the registry does not send the digest on HEAD).
- ``registry_session``: the HTTP transport both go through (:class:`~mcosup.kube.transport.Http1`, as
  the builder's API client: no aiohttp on the builder pod's start), whose HTTPS is verified against the
  system's CA store.
- ``delete_image`` (pruning, section 11): ``DELETE /v2/<repo>/manifests/<digest>``, its outcome as a
  :class:`Deletion` (deleted, already gone, refused, unreachable) rather than an exception, because the
  builder acts on each one differently.

Both send the credentials of a dockerconfigjson and answer Basic and Bearer token challenges the way
the distribution spec describes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from mcosup.kube.transport import Answer, Http1, Transport, TransportError, basic_authorization

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
_T = TypeVar("_T")
#: Seconds a registry call may take (aiohttp's default total, which these calls had before).
REQUEST_TIMEOUT = 300.0


@contextlib.asynccontextmanager
async def registry_session() -> AsyncIterator[Transport]:
    """The transport for the registry calls. HTTPS is verified against the system's CA store (loaded on
    the first call that needs it) unless a call passes ``tls_verify=False``; no proxy, as before."""
    http = Http1()
    try:
        yield http
    finally:
        await http.close()


class RegistryError(Exception):
    """The registry could not answer whether it has the manifest (not a plain 'no')."""


class CredentialsRefused(RegistryError):
    """The registry (or its token endpoint) wants credentials the Secrets do not have or it refuses."""


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
    session: Transport,
    challenge: str,
    repo: str,
    creds: tuple[str, str] | None,
    ssl: bool,
    action: str,
) -> str:
    params = dict(_CHALLENGE_PARAM.findall(challenge))
    realm = params.pop("realm", "")
    if not realm:
        raise RegistryError(f"registry asked for a token without a realm: {challenge!r}")
    params.setdefault("scope", f"repository:{repo}:{action}")
    headers = {"Authorization": basic_authorization(*creds)} if creds else {}
    async with asyncio.timeout(REQUEST_TIMEOUT):
        answer = await session.fetch("GET", realm, params=params, headers=headers, verify=ssl)
    if answer.status in (401, 403):
        raise CredentialsRefused(f"token endpoint {realm} answered {answer.status}")
    if answer.status != 200:
        raise RegistryError(f"token endpoint {realm} answered {answer.status}")
    try:
        body = json.loads(answer.body)
    except ValueError as exc:
        raise RegistryError(f"token endpoint {realm} answered with no JSON: {exc}") from exc
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not token:
        raise RegistryError(f"token endpoint {realm} gave no token")
    return str(token)


async def _over_schemes(host: str, tls_verify: bool, call: Callable[[str], Awaitable[_T]]) -> _T:
    """``call(base URL)`` over HTTPS; with ``tls_verify=False`` (test registries) also plain HTTP.

    Raises RegistryError when no scheme connects.
    """
    schemes = ["https"] if tls_verify else ["https", "http"]
    last: Exception | None = None
    for scheme in schemes:
        try:
            return await call(f"{scheme}://{host}")
        except (TransportError, TimeoutError) as exc:
            last = exc
    raise RegistryError(f"registry {host} cannot be reached: {last}")


async def _authorized(
    session: Transport,
    method: str,
    url: str,
    host: str,
    repo: str,
    headers: dict[str, str],
    auths: Mapping[str, Any],
    ssl: bool,
    action: str,
) -> Answer:
    """One request, answering one 401 challenge (Basic, or Bearer via the token endpoint) and retrying.

    ``headers`` keeps the Authorization found, so a caller's next request reuses it.
    """
    creds = credentials_for(host, auths)
    tried_auth = False
    while True:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            answer = await session.fetch(method, url, headers=headers, verify=ssl)
        if answer.status == 401 and not tried_auth:
            challenge = answer.headers.get("WWW-Authenticate", "")
            tried_auth = True
            if challenge.lower().startswith("bearer"):
                token = await _token(session, challenge, repo, creds, ssl, action)
                headers["Authorization"] = f"Bearer {token}"
                continue
            if creds is None:
                raise CredentialsRefused(
                    f"registry {host} wants credentials and the Secrets have none for it"
                )
            headers["Authorization"] = basic_authorization(*creds)
            continue
        return answer


async def manifest_digest(
    session: Transport,
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
    return await _over_schemes(
        host, tls_verify, lambda base: _ask(session, base, host, repo, reference, auths, tls_verify)
    )


async def _ask(
    session: Transport,
    base: str,
    host: str,
    repo: str,
    reference: str,
    auths: Mapping[str, Any],
    ssl: bool,
) -> str | None:
    url = f"{base}/v2/{repo}/manifests/{reference}"
    headers = {"Accept": MANIFEST_TYPES}
    for method in ("HEAD", "GET"):
        answer = await _authorized(session, method, url, host, repo, headers, auths, ssl, "pull")
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise RegistryError(f"registry {host} answered {answer.status} for {repo}:{reference}")
        digest = answer.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        if method == "GET":
            return "sha256:" + hashlib.sha256(answer.body).hexdigest()
        # HEAD without a digest header: ask again with GET and hash the manifest
    return None


#: What a delete came to. ``refused``: the registry will not delete (401/403: the credentials may not;
#: 405: deletion is disabled); ``unreachable``: no answer, or one to try again later (5xx, 429, ...).
DeleteOutcome = Literal["deleted", "gone", "refused", "unreachable"]


@dataclass(frozen=True)
class Deletion:
    """The outcome of deleting one image, with the registry's host and HTTP status for messages."""

    outcome: DeleteOutcome
    image: str
    registry: str
    status: int | None
    message: str


def _refusal_fix(status: int, host: str, repo: str) -> str:
    if status == 405:
        return (
            f"registry {host} does not allow deleting images (HTTP 405): its admin can enable deletion "
            "(for a distribution registry: storage.delete.enabled: true, or REGISTRY_STORAGE_DELETE_ENABLED"
            "=true)"
        )
    return (
        f"registry {host} refused to let the push Secret's credentials delete from {repo} (HTTP {status}): "
        f"grant them delete permission on {repo}"
    )


async def delete_image(
    session: Transport,
    image: str,
    auths: Mapping[str, Any],
    *,
    tls_verify: bool = True,
) -> Deletion:
    """Delete the manifest of ``image`` (``host/repo@sha256:...``) from its registry.

    A digest, not a tag: the distribution spec deletes manifests by digest only, and the digest names
    exactly the image a MachineOSBuild recorded. Raises ValueError for an image without one.
    """
    host, repo, reference = split_image(image)
    if not reference.startswith("sha256:"):
        raise ValueError(
            f"image {image!r}: deleting from a registry needs a digested pullspec (repo@sha256:...)"
        )
    url_path = f"/v2/{repo}/manifests/{reference}"

    async def attempt(base: str) -> Deletion:
        answer = await _authorized(
            session,
            "DELETE",
            base + url_path,
            host,
            repo,
            {"Accept": MANIFEST_TYPES},
            auths,
            tls_verify,
            "delete",
        )
        status = answer.status
        if status in (200, 202):
            return Deletion("deleted", image, host, status, f"deleted {image} from registry {host}")
        if status == 404:
            return Deletion("gone", image, host, status, f"registry {host} no longer has {image}")
        if status in (401, 403, 405):
            return Deletion("refused", image, host, status, _refusal_fix(status, host, repo))
        return Deletion(
            "unreachable", image, host, status, f"registry {host} answered HTTP {status} to deleting {image}"
        )

    try:
        return await _over_schemes(host, tls_verify, attempt)
    except CredentialsRefused as exc:
        return Deletion("refused", image, host, 401, f"{_refusal_fix(401, host, repo)} ({exc})")
    except RegistryError as exc:
        # Unreachable, or a token endpoint / credentials problem before the DELETE was even answered.
        return Deletion("unreachable", image, host, None, f"cannot delete {image}: {exc}")
