"""Webhook TLS: in-place reload of rotated files under load, and the self-managed rotation plan."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from webhook_support import CertFiles, Webhook

from mcosup.http.certs import (
    Lifetimes,
    WebhookTLSState,
    compose_ca_bundle,
    plan_tls,
    service_dns_names,
    signed_by,
)
from mcosup.http.tls import CertFileReloader, TLSLoadError
from mcosup.supervisor.webhooktls import write_serving_files

REVIEW = orjson.dumps(
    {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "rot",
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "operation": "CREATE",
            "userInfo": {"username": "u"},
            "object": {"metadata": {"name": "x", "namespace": "y"}},
        },
    }
)


def serial_of_pem(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


async def review_once(port: int, context: ssl.SSLContext) -> int:
    """One review on a fresh TLS connection; returns the serial of the certificate the server presented."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        head = (
            "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(REVIEW)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + REVIEW)
        raw = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            await writer.wait_closed()
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 200"), raw[:200]
    answer = orjson.loads(rest.partition(b"\r\n\r\n")[2])
    assert answer["response"]["uid"] == "rot"
    return x509.load_der_x509_certificate(der).serial_number


async def test_rotated_files_are_served_without_a_failed_request(
    webhook: Webhook, cert_files: CertFiles
) -> None:
    old_serial = serial_of_pem(cert_files.cert_file.read_bytes())
    seen: list[int] = []
    failures: list[BaseException] = []
    stop = asyncio.Event()
    progress = asyncio.Event()
    context = cert_files.client_context()

    async def client() -> None:
        while not stop.is_set():
            try:
                seen.append(await review_once(webhook.port, context))
            except Exception as exc:
                failures.append(exc)
            progress.set()

    async def until(condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(20):
            while not condition():
                progress.clear()
                await progress.wait()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(client())
        tg.create_task(client())
        watcher = tg.create_task(webhook.tls.watch(0.02))
        try:
            await until(lambda: len(seen) >= 20)
            new_serial = serial_of_pem(cert_files.issue().cert_chain_pems[0].bytes())
            mark = len(seen)
            await until(lambda: new_serial in seen[mark:])
            after = len(seen)
            await until(lambda: len(seen) >= after + 20)
        finally:
            stop.set()
            watcher.cancel()

    assert failures == []
    assert set(seen) == {old_serial, new_serial}
    assert seen[-1] == new_serial
    assert webhook.tls.reloads == 1


def kubelet_write(root: Path, generation: str, files: dict[str, bytes]) -> None:
    """What the kubelet does to a mounted Secret: a new timestamped dir, then an atomic ..data swap."""
    target = root / generation
    target.mkdir()
    for name, content in files.items():
        (target / name).write_bytes(content)
    tmp = root / "..data_tmp"
    os.symlink(generation, tmp)
    os.replace(tmp, root / "..data")
    for name in files:
        link = root / name
        if not link.is_symlink():
            os.symlink(f"..data/{name}", link)


async def test_symlink_swapped_secret_is_reloaded_and_a_bad_pair_never_replaces_a_good_one(
    tmp_path: Path, cert_files: CertFiles
) -> None:
    mount = tmp_path / "secret"
    mount.mkdir()
    leaf1 = cert_files.ca.issue_cert("localhost")
    leaf2 = cert_files.ca.issue_cert("localhost")
    kubelet_write(
        mount,
        "..gen1",
        {"tls.crt": leaf1.cert_chain_pems[0].bytes(), "tls.key": leaf1.private_key_pem.bytes()},
    )
    reloader = CertFileReloader(mount / "tls.crt", mount / "tls.key")
    reloader.load()
    assert reloader.loaded and not reloader.reload_if_changed()

    # Mismatched pair (a hand-edited Secret mid-update): refused, the old certificate keeps serving.
    kubelet_write(
        mount,
        "..gen2",
        {"tls.crt": leaf2.cert_chain_pems[0].bytes(), "tls.key": leaf1.private_key_pem.bytes()},
    )
    assert reloader.reload_if_changed() is False
    assert await presented_serial(reloader) == serial_of_pem(leaf1.cert_chain_pems[0].bytes())

    kubelet_write(
        mount,
        "..gen3",
        {"tls.crt": leaf2.cert_chain_pems[0].bytes(), "tls.key": leaf2.private_key_pem.bytes()},
    )
    assert reloader.reload_if_changed() is True
    assert await presented_serial(reloader) == serial_of_pem(leaf2.cert_chain_pems[0].bytes())


async def presented_serial(
    reloader: CertFileReloader, server_hostname: str = "localhost", trust: bytes | None = None
) -> int:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=reloader.context)
    try:
        port = server.sockets[0].getsockname()[1]
        client = ssl.create_default_context()
        if trust is None:
            client.check_hostname = False
            client.verify_mode = ssl.CERT_NONE
        else:
            client.load_verify_locations(cadata=trust.decode())
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=server_hostname
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            await writer.wait_closed()
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        server.close()
        await server.wait_closed()


def test_unusable_files_fail_the_first_load_with_the_files_named(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("not a certificate")
    (tmp_path / "tls.key").write_text("not a key")
    with pytest.raises(TLSLoadError, match=r"tls\.crt"):
        CertFileReloader(tmp_path / "tls.crt", tmp_path / "tls.key").load()
    with pytest.raises(TLSLoadError, match="cannot read"):
        CertFileReloader(tmp_path / "missing.crt", tmp_path / "tls.key").load()


# ---- self-managed: the pure plan ------------------------------------------------------------------------

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NAMES = service_dns_names("mcosup-webhook", "mcosup")
PLAN: dict[str, Any] = {
    "dns_names": NAMES,
    "lifetimes": Lifetimes(
        ca_validity=dt.timedelta(days=10),
        cert_validity=dt.timedelta(days=3),
        propagation=dt.timedelta(hours=2),
        backdate=dt.timedelta(0),
    ),
}


def cas(bundle: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle)


def test_service_dns_names() -> None:
    assert NAMES == (
        "mcosup-webhook",
        "mcosup-webhook.mcosup",
        "mcosup-webhook.mcosup.svc",
        "mcosup-webhook.mcosup.svc.cluster.local",
    )


def test_first_plan_creates_a_ca_and_a_serving_certificate_for_the_service() -> None:
    state = plan_tls(None, now=T0, **PLAN)
    serving = state.serving.cert
    assert signed_by(serving, state.ca.cert)
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == list(NAMES)
    assert state.ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert [c.serial_number for c in cas(state.ca_bundle)] == [state.ca.cert.serial_number]
    assert plan_tls(state, now=T0 + dt.timedelta(hours=1), **PLAN) is state


def test_secret_data_round_trips_and_garbage_starts_afresh() -> None:
    state = plan_tls(None, now=T0, **PLAN)
    assert WebhookTLSState.from_secret_data(state.to_secret_data()) == state
    assert WebhookTLSState.from_secret_data(None) is None
    assert WebhookTLSState.from_secret_data({"tls.crt": "eA=="}) is None
    broken = state.to_secret_data() | {"tls.key": base64.b64encode(state.ca.key_pem).decode()}
    assert WebhookTLSState.from_secret_data(broken) is None  # key does not match the certificate


def test_serving_certificate_renews_well_before_expiry_under_the_same_ca() -> None:
    state = plan_tls(None, now=T0, **PLAN)
    assert plan_tls(state, now=T0 + dt.timedelta(days=1.9), **PLAN) is state
    renewed = plan_tls(state, now=T0 + dt.timedelta(days=2.1), **PLAN)
    assert renewed.ca == state.ca and renewed.ca_bundle == state.ca_bundle
    assert renewed.serving != state.serving and signed_by(renewed.serving.cert, state.ca.cert)


def test_changed_service_names_reissue_at_once() -> None:
    state = plan_tls(None, now=T0, **PLAN)
    other = plan_tls(state, now=T0, **{**PLAN, "dns_names": service_dns_names("renamed", "mcosup")})
    assert other.ca == state.ca and other.serving != state.serving


def test_a_certificate_naming_an_address_is_kept_until_renewal() -> None:
    # MCOSUP_WEBHOOK_EXTRA_NAMES may name an IP address (an API server reaching the webhook by url):
    # it becomes an IP subject alternative name, and the next round must see it as the same name.
    plan = {**PLAN, "dns_names": (*NAMES, "127.0.0.1")}
    state = plan_tls(None, now=T0, **plan)
    san = state.serving.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert plan_tls(state, now=T0 + dt.timedelta(hours=1), **plan) is state


def test_ca_rotation_trusts_old_and_new_and_switches_serving_after_propagation() -> None:
    state = plan_tls(None, now=T0, **PLAN)
    t = T0 + dt.timedelta(days=6.8)  # < 1/3 of the CA's 10 days left; the serving cert is fresh enough
    state = plan_tls(state, now=T0 + dt.timedelta(days=4.5), **PLAN)  # a serving renewal on the way
    rotated = plan_tls(state, now=t, **PLAN)
    assert rotated.ca != state.ca
    assert [c.serial_number for c in cas(rotated.ca_bundle)] == [
        rotated.ca.cert.serial_number,
        state.ca.cert.serial_number,
    ]
    assert rotated.serving == state.serving, "serving must wait until the new CA has propagated"
    switched = plan_tls(rotated, now=t + dt.timedelta(hours=2), **PLAN)
    assert signed_by(switched.serving.cert, rotated.ca.cert)
    assert len(cas(switched.ca_bundle)) == 2
    after_old_ca_expired = plan_tls(switched, now=T0 + dt.timedelta(days=10, hours=1), **PLAN)
    assert [c.serial_number for c in cas(after_old_ca_expired.ca_bundle)] == [rotated.ca.cert.serial_number]


def test_a_month_of_hourly_rounds_never_serves_an_untrusted_or_expired_certificate() -> None:
    state = plan_tls(None, now=T0, **PLAN)
    bundle_history: list[tuple[dt.datetime, set[int]]] = [
        (T0, {c.serial_number for c in cas(state.ca_bundle)})
    ]
    cas_seen = {state.ca.cert.serial_number}
    now = T0
    while now < T0 + dt.timedelta(days=30):
        now += dt.timedelta(hours=1)
        state = plan_tls(state, now=now, **PLAN)
        bundle_history.append((now, {c.serial_number for c in cas(state.ca_bundle)}))
        cas_seen.add(state.ca.cert.serial_number)
        serving = state.serving.cert
        assert serving.not_valid_before_utc <= now < serving.not_valid_after_utc
        issuer = next(c for c in cas(state.ca_bundle) if signed_by(serving, c))
        # The issuing CA was already in the published bundle one propagation period ago.
        published = [t for t, serials in bundle_history if issuer.serial_number in serials]
        assert published[0] <= now - PLAN["lifetimes"].propagation or published[0] == T0
    assert len(cas_seen) >= 3


def test_compose_ca_bundle_dedups_and_drops_expired() -> None:
    a = plan_tls(None, now=T0, **PLAN).ca.cert
    b = plan_tls(None, now=T0, **PLAN).ca.cert
    bundle = compose_ca_bundle([a, b, a], T0)
    assert [c.serial_number for c in cas(bundle)] == [a.serial_number, b.serial_number]
    assert compose_ca_bundle([a], T0 + dt.timedelta(days=11)) == b""


async def test_self_managed_files_serve_the_service_names_trusted_by_the_bundle(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    state = plan_tls(None, now=now, dns_names=NAMES)
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    assert write_serving_files(state.serving, cert_file, key_file) is True
    assert write_serving_files(state.serving, cert_file, key_file) is False
    assert key_file.stat().st_mode & 0o777 == 0o600
    reloader = CertFileReloader(cert_file, key_file)
    serial = await presented_serial(reloader, "mcosup-webhook.mcosup.svc", trust=state.ca_bundle)
    assert serial == state.serving.cert.serial_number
