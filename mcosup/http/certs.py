"""Certificates for TLS servers mcosup runs or simulates: a CA, serving certificates, and the pure plan of
the webhook's self-managed certificates (no I/O here).

:func:`plan_tls` is the decision the supervisor's leader makes each round — generate a CA and a serving
certificate for the Service's DNS names, renew the serving certificate well before expiry, replace the
CA well before its expiry with old and new CA both in the ``caBundle`` during the overlap, and switch
the serving certificate to a new CA only once that CA has been published long enough for every API
server to trust it. :mod:`mcosup.supervisor.webhooktls` is the I/O around it; the emulator and the
test control plane use :func:`generate_ca` and :func:`issue_serving_cert` for their own serving
certificates.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Secret keys of the self-managed mode. tls.crt/tls.key make the Secret a valid kubernetes.io/tls one.
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
CA_BUNDLE_KEY = "ca-bundle.crt"


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long certificates live and when they are renewed (see :func:`plan_tls`)."""

    ca_validity: dt.timedelta = dt.timedelta(days=365)
    cert_validity: dt.timedelta = dt.timedelta(days=30)
    #: Renew when less than this fraction of a certificate's life remains.
    renew_fraction: float = 1 / 3
    #: Time for a new CA bundle to reach every API server before the serving certificate moves to it.
    propagation: dt.timedelta = dt.timedelta(minutes=2)
    #: Certificates are valid from this long before they are made (clock skew).
    backdate: dt.timedelta = dt.timedelta(minutes=5)


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
    lifetimes: Lifetimes = Lifetimes(),
) -> WebhookTLSState:
    """The state the Secret should hold at ``now``; returns ``current`` itself when nothing changes.

    Renewal happens when less than ``renew_fraction`` of a certificate's life remains. A new CA joins the
    bundle at once; the serving certificate moves to it only after ``propagation`` (time for the bundle
    to reach every API server), unless the old serving certificate is unusable.
    """
    ca_validity, cert_validity = lifetimes.ca_validity, lifetimes.cert_validity
    renew_fraction, propagation, backdate = (
        lifetimes.renew_fraction,
        lifetimes.propagation,
        lifetimes.backdate,
    )
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
