"""How a client proves to the API server who it is, and whom it trusts.

What a configuration's user and cluster entries amount to, wherever they were read from:
- the source of the ``Authorization`` header: the same header for every request (a token, basic
  credentials, or none), or a token file read again every minute (:class:`FileToken`: bound
  service-account tokens rotate, and client-go re-reads them too);
- the TLS material (CA, client certificate and key, as files or as data) and the
  :class:`ssl.SSLContext` made from it;
- for a kubeconfig user with ``exec`` or ``auth-provider``, kubernetes_asyncio's loader, which runs the
  plugin protocols (:func:`from_plugin`). This is the only module that imports that library, and only
  then: its package import alone costs a short-lived process a fifth of a second.

Where they come from (kubeconfig files, the in-cluster mount) is :mod:`mcosup.kube.clientconfig`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from mcosup.kube import errors

log = logging.getLogger(__name__)

#: Seconds between re-reads of a token file (client-go's cached file token source re-reads every minute).
TOKEN_REREAD_SECONDS = 60.0

#: Returns the ``Authorization`` header value for the next request, or None for anonymous requests.
Authorization = Callable[[], Awaitable[str | None]]

_bad = errors.bad_kubeconfig


@dataclasses.dataclass(frozen=True)
class TLS:
    """TLS material as the configuration gives it: file paths resolved, ``*-data`` fields decoded."""

    ca_file: str | None = None
    ca_data: bytes | None = None
    cert_file: str | None = None
    cert_data: bytes | None = None
    key_file: str | None = None
    key_data: bytes | None = dataclasses.field(default=None, repr=False)
    #: ``insecure-skip-tls-verify``: no server certificate check at all.
    insecure: bool = False
    #: ``tls-server-name``: the name the server certificate is checked against (and sent as SNI).
    server_name: str | None = None


# Headers -------------------------------------------------------------------------------------------


class StaticAuthorization:
    """The same header for every request (a kubeconfig token or basic credentials), or none."""

    def __init__(self, value: str | None) -> None:
        self._value = value

    async def __call__(self) -> str | None:
        return self._value


class FileToken:
    """A bearer token read from a file, and read again every ``reread_seconds``.

    Bound service-account tokens are rotated by the kubelet well before they expire; reading the file
    once would leave a long-running process with an expired token. When a re-read fails, the last
    token is kept and the read is tried again shortly (as client-go's cached token source does).
    """

    def __init__(
        self,
        path: str,
        *,
        field: str,
        reason: str = "BadKubeconfig",
        reread_seconds: float = TOKEN_REREAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._field = field
        self._reread = reread_seconds
        self._clock = clock
        try:
            self._token = self._read()
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise errors.ApiError(
                0,
                reason,
                f"{field}: cannot use {path}: {read_problem(exc)}; point it at a file holding the token",
            ) from None
        self._next_read = clock() + reread_seconds

    def _read(self) -> str:
        with open(self.path, encoding="utf-8") as f:
            token = f.read().strip()
        if not token:
            raise ValueError("the file is empty")
        return token

    async def __call__(self) -> str:
        now = self._clock()
        if now >= self._next_read:
            try:
                token = self._read()
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                log.warning(
                    "%s: cannot re-read %s (%s); keeping the previous token", self._field, self.path, exc
                )
                self._next_read = now + min(10.0, self._reread)
            else:
                if token != self._token:
                    log.info("%s: %s changed; using the new token", self._field, self.path)
                self._token = token
                self._next_read = now + self._reread
        return f"Bearer {self._token}"


def read_problem(exc: BaseException) -> str:
    """Why a file could not be read (or used), in a few words for a message."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


# Plugins -------------------------------------------------------------------------------------------


async def from_plugin(paths: str, context: str, origin: str) -> tuple[str, TLS | None, Authorization]:
    """Users with ``exec`` or ``auth-provider``: kubernetes_asyncio runs the plugin protocols.

    Its loader reads the kubeconfig itself, so it gives the server and the cluster's TLS material too:
    ``(server, tls, authorization)``.
    """
    from kubernetes_asyncio import config as kconfig
    from kubernetes_asyncio.client import Configuration

    configuration = Configuration()
    try:
        await kconfig.load_kube_config(config_file=paths, context=context, client_configuration=configuration)
    except Exception as exc:  # the loader raises whatever a plugin or malformed entry trips
        raise _bad(
            f"cannot use {origin}: {type(exc).__name__}: {exc}; check the user's exec or auth-provider "
            "section (kubectl --kubeconfig ... get --raw /version runs the same plugin)"
        ) from exc
    host = str(configuration.host).rstrip("/")
    tls = None
    if host.lower().startswith("https://"):
        tls = TLS(
            ca_file=configuration.ssl_ca_cert,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
            insecure=not configuration.verify_ssl,
            server_name=configuration.tls_server_name,
        )

    async def authorization() -> str | None:
        auth = await configuration.auth_settings()
        bearer = auth.get("BearerToken")
        if bearer and bearer.get("value"):
            return str(bearer["value"])
        return None

    return host, tls, authorization


# TLS -------------------------------------------------------------------------------------------------


def ssl_context(tls: TLS, origin: str) -> ssl.SSLContext:
    """The client context: CA (else the system's), client certificate, verification as configured."""
    cadata: str | bytes | None = None
    where = "the system CA store"
    if tls.ca_data is not None:
        cadata = _pem_or_der(tls.ca_data)
        where = "certificate-authority-data"
    elif tls.ca_file is not None:
        cadata = _pem_or_der(_read_file(tls.ca_file, "certificate-authority", origin))
        where = f"certificate-authority {tls.ca_file}"
    try:
        context = ssl.create_default_context(cadata=cadata)
    except (ssl.SSLError, ValueError) as exc:
        raise _bad(
            f"{origin}: {where} holds no usable CA certificate ({exc}); it must be the PEM of the "
            "cluster's CA"
        ) from None
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file or tls.cert_data:
        _load_client_certificate(context, tls, origin)
    return context


def _pem_or_der(data: bytes) -> str | bytes:
    return data.decode("ascii", errors="replace") if b"-----BEGIN" in data else data


def _read_file(path: str, field: str, origin: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _bad(
            f"{origin}: {field} {path} cannot be read ({read_problem(exc)}); fix the path (relative paths "
            "are relative to the kubeconfig's directory) or use the -data form"
        ) from None


def _load_client_certificate(context: ssl.SSLContext, tls: TLS, origin: str) -> None:
    # The ssl module loads certificate chains from files only: material given as data goes through a
    # private temporary directory that is removed as soon as it is loaded.
    with tempfile.TemporaryDirectory(prefix="mcosup-kube-") as tmp:
        cert = tls.cert_file
        if cert is None:
            cert = os.path.join(tmp, "client.crt")
            Path(cert).write_bytes(tls.cert_data or b"")
        else:
            _read_file(cert, "client-certificate", origin)
        key = tls.key_file
        if key is None:
            key = os.path.join(tmp, "client.key")
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(tls.key_data or b"")
        else:
            _read_file(key, "client-key", origin)
        try:
            # A password callback, so an encrypted key fails instead of prompting on the terminal.
            context.load_cert_chain(cert, key, password=lambda: b"")
        except (ssl.SSLError, ValueError) as exc:
            raise _bad(
                f"{origin}: the user's client-certificate and client-key cannot be used together ({exc}); "
                "they must be the PEM certificate and its unencrypted PEM private key"
            ) from None
