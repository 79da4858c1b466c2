"""TLS files that reload in place, for the admission webhook's listener.

A mounted Secret changes by an atomic symlink swap, without filesystem events a watcher could rely on,
so :class:`CertFileReloader` polls and compares the files' bytes. A change builds a fresh
``ssl.SSLContext``; the listener's context hands the newest one to every new handshake through its SNI
callback (called with or without SNI), so the listener is never closed and connections already open
finish on the certificate they started with. A half-written or mismatched pair is logged and retried on
the next poll while the previous certificate keeps serving. (Self-managed certificates are planned in
:mod:`mcosup.http.certs` and kept in their Secret by :mod:`mcosup.supervisor.webhooktls`.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from pathlib import Path

log = logging.getLogger(__name__)


class TLSLoadError(RuntimeError):
    """The certificate/key files cannot serve TLS; the message names the files and the cause."""


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the certificate chain and key in these files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TLSLoadError(
            f"cannot load webhook certificate {cert_file} with key {key_file}: {exc}; "
            "they must be a PEM certificate chain and its matching PEM private key"
        ) from exc
    return context


class CertFileReloader:
    """Serves the newest certificate found in two files, without ever replacing the listener's context."""

    def __init__(self, cert_file: Path | str, key_file: Path | str) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self._listener: ssl.SSLContext | None = None
        self._current: ssl.SSLContext | None = None
        self._digest: bytes | None = None
        self.reloads = 0  # successful loads after the first, for logs and tests

    @property
    def loaded(self) -> bool:
        """True once a certificate is loaded (for ``/readyz``)."""
        return self._current is not None

    @property
    def context(self) -> ssl.SSLContext:
        """The listener's context: pass it to the server once; it always hands out the newest certificate."""
        if self._listener is None:
            self.load()
        assert self._listener is not None
        return self._listener

    def _read(self) -> tuple[bytes, bytes]:
        return self.cert_file.read_bytes(), self.key_file.read_bytes()

    def load(self) -> None:
        """Load the files now; raise :class:`TLSLoadError` when they cannot serve."""
        try:
            before = self._read()
        except OSError as exc:
            raise TLSLoadError(
                f"cannot read webhook certificate files {self.cert_file}, {self.key_file}: {exc}"
            ) from exc
        context = server_context(self.cert_file, self.key_file)
        try:
            after = self._read()
        except OSError as exc:
            raise TLSLoadError(f"webhook certificate files changed while loading: {exc}") from exc
        if before != after:
            raise TLSLoadError(
                f"webhook certificate files {self.cert_file}, {self.key_file} changed while loading"
            )
        self._install(context, hashlib.sha256(after[0] + b"\0" + after[1]).digest())

    def _install(self, context: ssl.SSLContext, digest: bytes) -> None:
        first = self._listener is None
        self._current = context
        self._digest = digest
        if first:
            self._listener = context
            context.sni_callback = self._select
        else:
            self.reloads += 1

    def _select(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        current = self._current
        if current is not None and current is not connection.context:
            connection.context = current

    def reload_if_changed(self) -> bool:
        """Reload when the files' bytes differ from the loaded ones; True when a new certificate is live.

        A failed load (files mid-update, mismatched pair) is logged and leaves the previous certificate in
        service; the next poll tries again.
        """
        try:
            cert, key = self._read()
        except OSError as exc:
            log.warning("cannot read webhook certificate files, keeping the current certificate: %s", exc)
            return False
        if hashlib.sha256(cert + b"\0" + key).digest() == self._digest:
            return False
        try:
            self.load()
        except TLSLoadError as exc:
            log.warning("webhook certificate not reloaded, keeping the current one (retrying): %s", exc)
            return False
        log.info("webhook certificate reloaded from %s", self.cert_file)
        return True

    async def watch(self, interval: float = 5.0) -> None:
        """Poll the files every ``interval`` seconds, forever (run it in the supervisor's task group)."""
        if self._listener is None:
            self.load()
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.reload_if_changed)
