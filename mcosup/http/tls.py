"""TLS for the admission webhook: certificate files that reload in place, and self-managed certificates.

Files mode: a mounted Secret changes by an atomic symlink swap, without filesystem events a watcher
could rely on, so :class:`CertFileReloader` polls and compares the files' bytes. A change builds a fresh
``ssl.SSLContext``; the listener's context hands the newest one to every new handshake through its SNI
callback (called with or without SNI), so the listener is never closed and connections already open
finish on the certificate they started with. A half-written or mismatched pair is logged and retried on
the next poll while the previous certificate keeps serving.

Self-managed mode: :func:`plan_tls` is the pure decision — generate a CA and a serving certificate for
the Service's DNS names, renew the serving certificate well before expiry, replace the CA well before
its expiry with old and new CA both in the ``caBundle`` during the overlap, and switch the serving
certificate to a new CA only once that CA has been published long enough for every API server to
trust it. :func:`reconcile_self_managed` is the thin I/O around it (Secret, webhook configuration,
serving files) through :class:`mcosup.kube.client.Kube`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mcosup.kube import errors
from mcosup.kube import resources as R

if TYPE_CHECKING:
    from mcosup.kube.client import Kube

log = logging.getLogger(__name__)

# Secret keys of the self-managed mode. tls.crt/tls.key make the Secret a valid kubernetes.io/tls one.
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
CA_BUNDLE_KEY = "ca-bundle.crt"


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


# ---- self-managed certificates (pure) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertKeyPair:
    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclass(frozen=True, slots=True)
class WebhookTLSState:
    """What the self-managed Secret holds: signing CA, serving certificate, and the CAs to trust."""

    ca: CertKeyPair
    serving: CertKeyPair
    ca_bundle: bytes

    def to_secret_data(self) -> dict[str, str]:
        """The Secret's ``data`` (base64 values)."""
        raw = {
            TLS_CERT_KEY: self.serving.cert_pem,
            TLS_KEY_KEY: self.serving.key_pem,
            CA_CERT_KEY: self.ca.cert_pem,
            CA_KEY_KEY: self.ca.key_pem,
            CA_BUNDLE_KEY: self.ca_bundle,
        }
        return {k: base64.b64encode(v).decode() for k, v in raw.items()}

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str] | None) -> WebhookTLSState | None:
        """Parse a Secret's ``data``; None when anything is missing or unreadable (then start afresh)."""
        if not data:
            return None
        try:
            raw = {
                k: base64.b64decode(data[k], validate=True)
                for k in (TLS_CERT_KEY, TLS_KEY_KEY, CA_CERT_KEY, CA_KEY_KEY)
            }
            bundle = base64.b64decode(data.get(CA_BUNDLE_KEY) or data[CA_CERT_KEY], validate=True)
            state = cls(
                CertKeyPair(raw[CA_CERT_KEY], raw[CA_KEY_KEY]),
                CertKeyPair(raw[TLS_CERT_KEY], raw[TLS_KEY_KEY]),
                bundle,
            )
            _check_pair(state.ca)
            _check_pair(state.serving)
        except (KeyError, ValueError, TypeError):
            return None
        return state


def service_dns_names(service: str, namespace: str, cluster_domain: str = "cluster.local") -> tuple[str, ...]:
    """The names an API server may use for a Service: ``svc``, ``svc.ns``, ``svc.ns.svc``, and the FQDN."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an EC private key")
    return key


def _check_pair(pair: CertKeyPair) -> None:
    cert = pair.cert
    key = _load_key(pair.key_pem)
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ValueError("certificate and key do not match")


def generate_ca(
    *,
    now: dt.datetime,
    validity: dt.timedelta,
    backdate: dt.timedelta = dt.timedelta(minutes=5),
    common_name: str = "mcosup-webhook-ca",
) -> CertKeyPair:
    """A new self-signed CA, valid from ``now - backdate`` (clock skew) for ``validity`` after ``now``."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}@{int(now.timestamp())}")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_serving_cert(
    ca: CertKeyPair,
    dns_names: Sequence[str],
    *,
    now: dt.datetime,
    validity: dt.timedelta,
    backdate: dt.timedelta = dt.timedelta(minutes=5),
) -> CertKeyPair:
    """A serving certificate for ``dns_names`` signed by ``ca``, never outliving the CA.

    A name that parses as an IP address becomes an IP subject alternative name (clients check those,
    not DNS names, when they connect to an address).
    """
    ca_cert = ca.cert
    ca_key = _load_key(ca.key_pem)
    key = _key()
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - backdate, ca_cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in dns_names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return CertKeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def renewal_due(cert: x509.Certificate, now: dt.datetime, renew_fraction: float) -> bool:
    """True when less than ``renew_fraction`` of the certificate's lifetime remains (or it is not valid)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start or now >= end:
        return True
    return (end - now) < (end - start) * renew_fraction


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when ``ca`` issued ``cert`` (issuer name and signature both check out)."""
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _pems(bundle: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(bundle)
    except ValueError:
        return []


def compose_ca_bundle(cas: Iterable[x509.Certificate | bytes], now: dt.datetime) -> bytes:
    """The ``caBundle``: each CA once, in order (newest first), leaving out expired ones."""
    out: list[bytes] = []
    seen: set[bytes] = set()
    for item in cas:
        certs = _pems(item) if isinstance(item, bytes) else [item]
        for cert in certs:
            if cert.not_valid_after_utc <= now:
                continue
            fingerprint = cert.fingerprint(hashes.SHA256())
            if fingerprint not in seen:
                seen.add(fingerprint)
                out.append(cert.public_bytes(serialization.Encoding.PEM))
    return b"".join(out)


def plan_tls(
    current: WebhookTLSState | None,
    *,
    dns_names: Sequence[str],
    now: dt.datetime,
    ca_validity: dt.timedelta = dt.timedelta(days=365),
    cert_validity: dt.timedelta = dt.timedelta(days=30),
    renew_fraction: float = 1 / 3,
    propagation: dt.timedelta = dt.timedelta(minutes=2),
    backdate: dt.timedelta = dt.timedelta(minutes=5),
) -> WebhookTLSState:
    """The state the Secret should hold at ``now``; returns ``current`` itself when nothing changes.

    Renewal happens when less than ``renew_fraction`` of a certificate's life remains. A new CA joins the
    bundle at once; the serving certificate moves to it only after ``propagation`` (time for the bundle
    to reach every API server), unless the old serving certificate is unusable.
    """
    if current is None:
        ca = generate_ca(now=now, validity=ca_validity, backdate=backdate)
        serving = issue_serving_cert(ca, dns_names, now=now, validity=cert_validity, backdate=backdate)
        return WebhookTLSState(ca, serving, ca.cert_pem)

    ca = current.ca
    serving = current.serving
    ca_cert = ca.cert
    serving_cert = serving.cert
    if renewal_due(ca_cert, now, renew_fraction):
        ca = generate_ca(now=now, validity=ca_validity, backdate=backdate)
        ca_cert = ca.cert

    published_at = ca_cert.not_valid_before_utc + backdate
    trusted_long_enough = now >= published_at + propagation
    names_match = _dns_names(serving_cert) == set(dns_names)
    from_current_ca = signed_by(serving_cert, ca_cert)
    old_still_good = not renewal_due(serving_cert, now, renew_fraction) and names_match
    # An old serving certificate unusable now (expired, wrong names) is replaced at once, even if the
    # new CA has not propagated yet: a short outage beats serving a certificate nobody accepts.
    unusable = not names_match or now >= serving_cert.not_valid_after_utc
    if (from_current_ca and not old_still_good) or (
        not from_current_ca and (trusted_long_enough or unusable)
    ):
        serving = issue_serving_cert(ca, dns_names, now=now, validity=cert_validity, backdate=backdate)
        serving_cert = serving.cert

    bundle = compose_ca_bundle([ca_cert, current.ca_bundle, current.ca.cert], now)
    if ca == current.ca and serving == current.serving and bundle == current.ca_bundle:
        return current
    return WebhookTLSState(ca, serving, bundle)


def _dns_names(cert: x509.Certificate) -> set[str]:
    """The names the certificate is for: its DNS names and IP addresses (as :func:`issue_serving_cert`
    takes them), so a certificate for an address is not mistaken for one that needs reissuing."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def write_serving_files(serving: CertKeyPair, cert_file: Path, key_file: Path) -> bool:
    """Write the pair atomically (key first, each by rename); False when the files already hold it."""
    try:
        if cert_file.read_bytes() == serving.cert_pem and key_file.read_bytes() == serving.key_pem:
            return False
    except OSError:
        pass
    for path, content, mode in ((key_file, serving.key_pem, 0o600), (cert_file, serving.cert_pem, 0o644)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(fd, mode)
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    return True


# ---- self-managed certificates (I/O) --------------------------------------------------------------------


def _with_ca_bundle(configuration: Mapping[str, Any], bundle: bytes) -> dict[str, Any] | None:
    """The configuration with every webhook's caBundle set to ``bundle``; None when already so."""
    encoded = base64.b64encode(bundle).decode()
    webhooks = configuration.get("webhooks") or []
    if all((w.get("clientConfig") or {}).get("caBundle") == encoded for w in webhooks):
        return None
    updated = dict(configuration)
    updated["webhooks"] = [
        {**w, "clientConfig": {**(w.get("clientConfig") or {}), "caBundle": encoded}} for w in webhooks
    ]
    return updated


async def reconcile_self_managed(
    kube: Kube,
    *,
    namespace: str,
    secret_name: str,
    webhook_configuration: str,
    dns_names: Sequence[str],
    cert_file: Path,
    key_file: Path,
    now: dt.datetime,
    write: bool = True,
    **plan: Any,
) -> WebhookTLSState | None:
    """One round of self-managed TLS; returns the state now in the Secret (None if absent and not writing).

    ``write`` is True on the leader: it plans, stores the Secret (409 → another replica won; its state is
    used) and injects the CA bundle into the ``ValidatingWebhookConfiguration``. Every replica then
    writes the serving pair to ``cert_file``/``key_file`` for its :class:`CertFileReloader`.
    """
    try:
        secret: dict[str, Any] | None = await kube.get(R.SECRETS, secret_name, namespace=namespace)
    except errors.NotFound:
        secret = None
    current = WebhookTLSState.from_secret_data(secret.get("data") if secret else None)
    state = current
    if write:
        state = plan_tls(current, dns_names=dns_names, now=now, **plan)
        if state is not current:
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": secret_name, "namespace": namespace},
                "data": state.to_secret_data(),
            }
            try:
                if secret is None:
                    await kube.create(R.SECRETS, body, namespace=namespace)
                else:
                    body["metadata"] = {
                        **secret.get("metadata", {}),
                        "name": secret_name,
                        "namespace": namespace,
                    }
                    await kube.replace(R.SECRETS, secret_name, body, namespace=namespace)
                log.info("webhook TLS Secret %s/%s updated", namespace, secret_name)
            except errors.Conflict:
                fresh = await kube.get(R.SECRETS, secret_name, namespace=namespace)
                state = WebhookTLSState.from_secret_data(fresh.get("data"))
        if state is not None:
            try:
                configuration = await kube.get(R.VALIDATING_WEBHOOK_CONFIGURATIONS, webhook_configuration)
            except errors.NotFound:
                log.warning(
                    "ValidatingWebhookConfiguration %s not found: cannot inject the CA bundle",
                    webhook_configuration,
                )
            else:
                updated = _with_ca_bundle(configuration, state.ca_bundle)
                if updated is not None:
                    try:
                        await kube.replace(
                            R.VALIDATING_WEBHOOK_CONFIGURATIONS, webhook_configuration, updated
                        )
                        log.info(
                            "CA bundle injected into ValidatingWebhookConfiguration %s", webhook_configuration
                        )
                    except errors.Conflict:
                        log.info(
                            "ValidatingWebhookConfiguration %s changed meanwhile; retrying next round",
                            webhook_configuration,
                        )
    if state is not None:
        await asyncio.to_thread(write_serving_files, state.serving, cert_file, key_file)
    return state


async def self_managed_tls_loop(
    kube: Kube,
    *,
    is_leader: Callable[[], bool],
    interval: float = 60.0,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    **reconcile: Any,
) -> None:
    """Run :func:`reconcile_self_managed` every ``interval`` seconds until cancelled.

    ``reconcile`` carries its keyword arguments (namespace, secret_name, webhook_configuration,
    dns_names, cert_file, key_file, and optional plan tuning). Only the leader writes; every replica
    keeps its serving files in step with the Secret. API errors are logged and retried next round.
    """
    while True:
        try:
            await reconcile_self_managed(kube, now=clock(), write=is_leader(), **reconcile)
        except errors.ApiError as exc:
            log.warning("self-managed webhook TLS round failed, retrying in %.0fs: %s", interval, exc)
        await asyncio.sleep(interval)
