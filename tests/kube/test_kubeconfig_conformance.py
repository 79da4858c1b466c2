"""Our kubeconfig loader reads static credentials as kubernetes_asyncio's ``load_kube_config`` does.

For every static form (token, tokenFile, basic, CA and client certificate as files or data, relative
paths, insecure-skip-tls-verify, tls-server-name) both loaders must agree on the server, the CA, the
Authorization header and the client certificate and key.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubeconfig_kit import WhoAmI, b64, write_kubeconfig
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client import Configuration

from mcosup.kube import clientconfig

Form = Callable[[dict[str, Path]], tuple[dict[str, Any], dict[str, Any] | None]]

SERVER = "https://kube.example:6443"

FORMS: dict[str, Form] = {
    "token, CA data": lambda p: (
        {"server": SERVER, "certificate-authority-data": b64(p["ca"].read_bytes())},
        {"token": "tok-123"},
    ),
    "tokenFile and CA file, relative": lambda p: (
        {"server": SERVER + "/", "certificate-authority": "pki/ca.crt"},
        {"tokenFile": "pki/token"},
    ),
    "basic auth, CA file absolute": lambda p: (
        {"server": SERVER, "certificate-authority": str(p["ca"])},
        {"username": "alice", "password": "pw"},
    ),
    "client certificate files, relative": lambda p: (
        {"server": SERVER, "certificate-authority": "pki/ca.crt"},
        {"client-certificate": "pki/client.crt", "client-key": "pki/client.key"},
    ),
    "client certificate data and a token": lambda p: (
        {"server": SERVER, "certificate-authority-data": b64(p["ca"].read_bytes())},
        {
            "client-certificate-data": b64(p["cert"].read_bytes()),
            "client-key-data": b64(p["key"].read_bytes()),
            "token": "tok-456",
        },
    ),
    "insecure-skip-tls-verify": lambda p: (
        {"server": SERVER, "insecure-skip-tls-verify": True},
        {"token": "tok-789"},
    ),
    # (no user here: kubernetes_asyncio fails with a TypeError on an https cluster without a user)
    "tls-server-name": lambda p: (
        {
            "server": "https://10.0.0.1:6443",
            "certificate-authority": "pki/ca.crt",
            "tls-server-name": "kube.example",
        },
        {"token": "tok-sni"},
    ),
    "plain http": lambda p: ({"server": "http://127.0.0.1:8080"}, {"token": "tok"}),
}


def _material(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _ca_der(context: ssl.SSLContext) -> list[bytes]:
    return sorted(context.get_ca_certs(binary_form=True))


@pytest.mark.parametrize("form", list(FORMS))
async def test_we_read_static_kubeconfigs_as_kubernetes_asyncio_does(form: str, tmp_path: Path) -> None:
    pems = WhoAmI().write_pems(tmp_path / "pki")
    (tmp_path / "pki" / "token").write_text("tok-from-file")
    cluster, user = FORMS[form](pems)
    path = write_kubeconfig(tmp_path / "config", cluster=cluster, user=user)

    theirs = Configuration()
    await kconfig.load_kube_config(
        config_file=str(path), client_configuration=theirs, temp_file_path=str(tmp_path / "k8s-tmp")
    )
    ours = await clientconfig.from_kubeconfig(str(path))

    assert ours.server == theirs.host
    auth = await theirs.auth_settings()
    assert await ours.authorization() == (auth["BearerToken"]["value"] if auth else None)
    if not ours.server.startswith("https://"):
        assert ours.tls is None and ours.ssl_context is None
        return
    assert ours.tls is not None and ours.ssl_context is not None
    # CA: the same bytes, and the same certificates in the context (theirs is built from its file).
    assert (ours.tls.ca_data or _material(ours.tls.ca_file)) == _material(theirs.ssl_ca_cert)
    assert _ca_der(ours.ssl_context) == _ca_der(ssl.create_default_context(cafile=theirs.ssl_ca_cert))
    # Client certificate and key: the same file when given as a file, the same material otherwise.
    for ours_file, ours_data, their_file in (
        (ours.tls.cert_file, ours.tls.cert_data, theirs.cert_file),
        (ours.tls.key_file, ours.tls.key_data, theirs.key_file),
    ):
        if ours_file is not None:
            assert ours_file == their_file
        assert (ours_data or _material(ours_file)) == _material(their_file)
    assert ours.tls.insecure == (not theirs.verify_ssl)
    assert ours.server_hostname == theirs.tls_server_name
    if ours.tls.insecure:
        assert ours.ssl_context.verify_mode == ssl.CERT_NONE and not ours.ssl_context.check_hostname
    else:
        assert ours.ssl_context.verify_mode == ssl.CERT_REQUIRED and ours.ssl_context.check_hostname
