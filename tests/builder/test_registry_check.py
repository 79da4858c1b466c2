"""The registry reuse check: the manifest endpoint of a real registry, asked with the Secrets' credentials."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mcosup.builder import manifests
from mcosup.sim.registry import Registry

SPLITS = [
    ("r.io:5000/org/os:worker-1", ("r.io:5000", "org/os", "worker-1")),
    ("127.0.0.1:5000/os@sha256:" + "a" * 64, ("127.0.0.1:5000", "os", "sha256:" + "a" * 64)),
    ("localhost/os", ("localhost", "os", "latest")),
    ("org/os:1", (manifests.DOCKER_HUB, "org/os", "1")),
    ("busybox", (manifests.DOCKER_HUB, "library/busybox", "latest")),
]


@pytest.mark.parametrize(("image", "expected"), SPLITS)
def test_split_image(image: str, expected: tuple[str, str, str]) -> None:
    assert manifests.split_image(image) == expected


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CREDS: list[tuple[str, dict[str, Any], tuple[str, str] | None]] = [
    ("r.io", {"r.io": {"auth": b64("u:p:with:colons")}}, ("u", "p:with:colons")),
    ("r.io", {"https://r.io/v1/": {"auth": b64("u:p")}}, ("u", "p")),
    ("r.io:5000", {"r.io:5000": {"username": "u", "password": "p"}}, ("u", "p")),
    ("r.io:5000", {"r.io": {"auth": b64("u:p")}}, None),
    (manifests.DOCKER_HUB, {"https://index.docker.io/v1/": {"auth": b64("d:h")}}, ("d", "h")),
    ("r.io", {"r.io": {"auth": "!!!"}}, None),
]


@pytest.mark.parametrize(("host", "auths", "expected"), CREDS)
def test_credentials_for(host: str, auths: dict[str, Any], expected: tuple[str, str] | None) -> None:
    assert manifests.credentials_for(host, auths) == expected


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_digest_of_a_pushed_image_with_credentials(
    registry: Registry, base_image: str, http: aiohttp.ClientSession
) -> None:
    assert registry.credentials is not None
    auths = {registry.host: {"auth": b64(":".join(registry.credentials))}}
    expected = base_image.split("@")[1]
    image = f"{registry.host}/os/base:stock"
    assert await manifests.manifest_digest(http, image, auths, tls_verify=False) == expected
    assert await asyncio.to_thread(registry.manifest_digest, "os/base", "stock") == expected
    assert (
        await manifests.manifest_digest(http, f"{registry.host}/os/base:gone", auths, tls_verify=False)
        is None
    )


@pytest.mark.parametrize(
    ("auths", "message"),
    [
        ({}, "wants credentials and the Secrets have none for it"),
        ({"127.0.0.1:1": {"auth": b64("builder:s3cret")}}, "wants credentials"),
        (None, "answered 401"),
    ],
)
async def test_refused_credentials_are_an_error_not_a_miss(
    registry: Registry, http: aiohttp.ClientSession, auths: dict[str, Any] | None, message: str
) -> None:
    if auths is None:
        auths = {registry.host: {"auth": b64("builder:wrong")}}
    with pytest.raises(manifests.RegistryError, match=message):
        await manifests.manifest_digest(http, f"{registry.host}/os/base:stock", auths, tls_verify=False)


async def test_unreachable_registry_is_an_error(http: aiohttp.ClientSession) -> None:
    with pytest.raises(manifests.RegistryError, match="cannot be reached"):
        await manifests.manifest_digest(http, "127.0.0.1:1/os/base:stock", {}, tls_verify=False)


def token_registry() -> web.Application:
    """A registry speaking the distribution spec's token flow (what quay.io and Docker Hub do)."""
    manifest = b'{"schemaVersion":2}'

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != manifests.basic(("robot", "pw")):
            return web.Response(status=401)
        assert request.query["scope"] == "repository:org/os:pull"
        assert request.query["service"] == "registry.test"
        return web.json_response({"token": "t0k"})

    async def manifest_endpoint(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer t0k":
            realm = f"http://{request.host}/token"
            challenge = f'Bearer realm="{realm}",service="registry.test",scope="repository:org/os:pull"'
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        if request.match_info["tag"] != "present":
            return web.Response(status=404)
        # No Docker-Content-Digest header: the client must hash the manifest itself.
        return web.Response(body=b"" if request.method == "HEAD" else manifest)

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_route("*", "/v2/org/os/manifests/{tag}", manifest_endpoint)
    return app


async def test_bearer_token_flow_and_digest_by_hashing(
    aiohttp_server: Any, http: aiohttp.ClientSession
) -> None:
    server = await aiohttp_server(token_registry())
    host = f"127.0.0.1:{server.port}"
    auths = {host: {"username": "robot", "password": "pw"}}
    expected = "sha256:" + hashlib.sha256(b'{"schemaVersion":2}').hexdigest()
    assert (
        await manifests.manifest_digest(http, f"{host}/org/os:present", auths, tls_verify=False) == expected
    )
    assert await manifests.manifest_digest(http, f"{host}/org/os:absent", auths, tls_verify=False) is None
    with pytest.raises(manifests.RegistryError, match="token endpoint"):
        await manifests.manifest_digest(http, f"{host}/org/os:present", {}, tls_verify=False)
