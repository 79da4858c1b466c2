"""The registry reuse check: the manifest endpoint of a real registry, asked with the Secrets' credentials."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from mcosup.builder import manifests
from mcosup.kube.transport import Transport, basic_authorization
from mcosup.sim.registry import Registry, build_base_image

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
async def http() -> AsyncIterator[Transport]:
    async with manifests.registry_session() as session:
        yield session


async def test_digest_of_a_pushed_image_with_credentials(
    registry: Registry, base_image: str, http: Transport
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
    registry: Registry, http: Transport, auths: dict[str, Any] | None, message: str
) -> None:
    if auths is None:
        auths = {registry.host: {"auth": b64("builder:wrong")}}
    with pytest.raises(manifests.RegistryError, match=message):
        await manifests.manifest_digest(http, f"{registry.host}/os/base:stock", auths, tls_verify=False)


async def test_unreachable_registry_is_an_error(http: Transport) -> None:
    with pytest.raises(manifests.RegistryError, match="cannot be reached"):
        await manifests.manifest_digest(http, "127.0.0.1:1/os/base:stock", {}, tls_verify=False)


def token_registry() -> web.Application:
    """A registry speaking the distribution spec's token flow (what quay.io and Docker Hub do)."""
    manifest = b'{"schemaVersion":2}'

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != basic_authorization("robot", "pw"):
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


async def test_bearer_token_flow_and_digest_by_hashing(aiohttp_server: Any, http: Transport) -> None:
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


async def test_an_https_registry_is_verified_against_the_system_ca_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry session verifies HTTPS against the system's CA store (the store OpenSSL finds through
    SSL_CERT_FILE, pointed here at a test CA)."""
    ours, other = trustme.CA(), trustme.CA()
    for name, ca in (("ours.pem", ours), ("other.pem", other)):
        ca.cert_pem.write_to_path(str(tmp_path / name))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ours.issue_cert("127.0.0.1").configure_cert(server_context)
    digest = "sha256:" + "d" * 64

    async def manifest(request: web.Request) -> web.Response:
        return web.Response(headers={"Docker-Content-Digest": digest})

    app = web.Application()
    app.router.add_route("*", "/v2/os/base/manifests/{tag}", manifest)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context).start()
        image = f"127.0.0.1:{runner.addresses[0][1]}/os/base:stock"
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))  # no hashed certificates there
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ours.pem"))
        async with manifests.registry_session() as http:
            assert await manifests.manifest_digest(http, image, {}) == digest
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "other.pem"))
        async with manifests.registry_session() as http:
            with pytest.raises(manifests.RegistryError, match="certificate verify failed"):
                await manifests.manifest_digest(http, image, {})
    finally:
        await runner.cleanup()


# ---- Pruning: DELETE /v2/<repo>/manifests/<digest> against the real registry.


async def test_delete_removes_the_image_and_a_second_delete_finds_it_gone(
    registry: Registry, base_image: str, http: Transport
) -> None:
    assert registry.credentials is not None
    auths = {registry.host: {"auth": b64(":".join(registry.credentials))}}
    first = await manifests.delete_image(http, base_image, auths, tls_verify=False)
    assert (first.outcome, first.status, first.registry) == ("deleted", 202, registry.host)
    # The manifest is gone, by digest and by the tag that named it.
    digest = base_image.split("@")[1]
    assert await asyncio.to_thread(registry.manifest_digest, "os/base", digest) is None
    assert (
        await manifests.manifest_digest(http, f"{registry.host}/os/base:stock", auths, tls_verify=False)
        is None
    )
    again = await manifests.delete_image(http, base_image, auths, tls_verify=False)
    assert again.outcome == "gone", again


async def test_a_registry_without_delete_enabled_refuses_with_405_and_keeps_the_image(
    tmp_path: Path, http: Transport
) -> None:
    async with Registry(tmp_path / "nodelete", delete_enabled=False) as reg:
        image = await build_base_image(reg)
        result = await manifests.delete_image(http, image, {}, tls_verify=False)
        assert (result.outcome, result.status) == ("refused", 405)
        assert reg.host in result.message and "405" in result.message
        assert "storage.delete.enabled" in result.message
        digest = image.split("@")[1]
        assert await asyncio.to_thread(reg.manifest_digest, "os/base", digest) == digest


async def test_delete_with_wrong_or_missing_credentials_is_refused(
    registry: Registry, base_image: str, http: Transport
) -> None:
    wrong = await manifests.delete_image(
        http, base_image, {registry.host: {"auth": b64("builder:wrong")}}, tls_verify=False
    )
    assert (wrong.outcome, wrong.status) == ("refused", 401)
    assert "grant them delete permission" in wrong.message
    none = await manifests.delete_image(http, base_image, {}, tls_verify=False)
    assert (none.outcome, none.status) == ("refused", 401)
    assert "have none for it" in none.message
    digest = base_image.split("@")[1]
    assert await asyncio.to_thread(registry.manifest_digest, "os/base", digest) == digest


async def test_delete_from_an_unreachable_registry(http: Transport) -> None:
    result = await manifests.delete_image(
        http, "127.0.0.1:1/os/base@sha256:" + "a" * 64, {}, tls_verify=False
    )
    assert (result.outcome, result.status) == ("unreachable", None)
    assert "cannot be reached" in result.message


async def test_delete_needs_a_digest(http: Transport) -> None:
    with pytest.raises(ValueError, match="digested pullspec"):
        await manifests.delete_image(http, "r.io/os:latest", {})


async def test_delete_through_the_bearer_token_flow_asks_for_delete_scope(
    aiohttp_server: Any, http: Transport
) -> None:
    digest = "sha256:" + "b" * 64
    scopes: list[str] = []

    async def token(request: web.Request) -> web.Response:
        scopes.append(request.query["scope"])
        return web.json_response({"token": "t0k"})

    async def manifest_endpoint(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer t0k":
            challenge = f'Bearer realm="http://{request.host}/token",service="registry.test"'
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        return web.Response(status=202)

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_delete("/v2/org/os/manifests/{digest}", manifest_endpoint)
    server = await aiohttp_server(app)
    host = f"127.0.0.1:{server.port}"
    result = await manifests.delete_image(
        http, f"{host}/org/os@{digest}", {host: {"username": "robot", "password": "pw"}}, tls_verify=False
    )
    assert result.outcome == "deleted"
    assert scopes == ["repository:org/os:delete"]
