"""Kubeconfig test helpers: write kubeconfig files, and a TLS server that says what a client sent.

``WhoAmI`` is an HTTPS server with a trustme CA that accepts (but does not require) client
certificates and answers every request with the ``Authorization`` header and the client certificate's
common name it saw, so a test can check that credentials and TLS material were really used.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import aiohttp.web
import trustme
import yaml


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(
    path: Path,
    *,
    cluster: dict[str, Any],
    user: dict[str, Any] | None = None,
    current_context: str | None = "ctx",
    context_extra: dict[str, Any] | None = None,
    cluster_name: str = "c",
    user_name: str = "u",
) -> Path:
    """A kubeconfig with one cluster, one user (unless None) and one context ``ctx`` joining them."""
    context: dict[str, Any] = {"cluster": cluster_name}
    if user is not None:
        context["user"] = user_name
    context.update(context_extra or {})
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user_name, "user": user}] if user is not None else [],
        "contexts": [{"name": "ctx", "context": context}],
    }
    if current_context is not None:
        config["current-context"] = current_context
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class WhoAmI:
    """An HTTPS server on 127.0.0.1 whose certificate names ``kube.example`` and 127.0.0.1."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert("kube.example", "127.0.0.1")
        self.client_cert = self.ca.issue_cert("admin@example.com", common_name="kit-admin")
        self.url = ""
        self._runner: aiohttp.web.AppRunner | None = None

    def write_pems(self, directory: Path) -> dict[str, Path]:
        """ca.crt, client.crt and client.key in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        files = {
            "ca": directory / "ca.crt",
            "cert": directory / "client.crt",
            "key": directory / "client.key",
        }
        files["ca"].write_bytes(self.ca.cert_pem.bytes())
        files["cert"].write_bytes(self.client_cert.cert_chain_pems[0].bytes())
        files["key"].write_bytes(self.client_cert.private_key_pem.bytes())
        return files

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        common_name = None
        for rdn in (peer or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    common_name = value
        return aiohttp.web.json_response(
            {"authorization": request.headers.get("Authorization"), "client": common_name}
        )

    async def __aenter__(self) -> WhoAmI:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        self.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_OPTIONAL
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.url = f"https://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
