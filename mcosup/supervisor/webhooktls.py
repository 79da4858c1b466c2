"""The webhook's self-managed certificates, kept by the leader: the Secret, the CA bundle injected into
the ``ValidatingWebhookConfiguration``, and the serving files every replica's reloader reads.

The decision is :func:`mcosup.http.certs.plan_tls` (pure); this module is the thin I/O around it through
:class:`mcosup.kube.client.Kube`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcosup.http.certs import CertKeyPair, Lifetimes, WebhookTLSState, plan_tls
from mcosup.kube import errors
from mcosup.kube import resources as R
from mcosup.kube.client import Kube

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelfManagedTLS:
    """Where the self-managed certificates live and what they are for."""

    namespace: str
    secret_name: str
    webhook_configuration: str
    dns_names: tuple[str, ...]
    cert_file: Path
    key_file: Path
    lifetimes: Lifetimes = field(default_factory=Lifetimes)


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
    kube: Kube, tls: SelfManagedTLS, *, now: dt.datetime, write: bool = True
) -> WebhookTLSState | None:
    """One round of self-managed TLS; returns the state now in the Secret (None if absent and not writing).

    ``write`` is True on the leader: it plans, stores the Secret (409 → another replica won; its state is
    used) and injects the CA bundle into the ``ValidatingWebhookConfiguration``. Every replica then
    writes the serving pair to ``cert_file``/``key_file`` for its :class:`CertFileReloader`.
    """
    namespace, secret_name, webhook_configuration = tls.namespace, tls.secret_name, tls.webhook_configuration
    try:
        secret: dict[str, Any] | None = await kube.get(R.SECRETS, secret_name, namespace=namespace)
    except errors.NotFound:
        secret = None
    current = WebhookTLSState.from_secret_data(secret.get("data") if secret else None)
    state = current
    if write:
        state = plan_tls(current, dns_names=tls.dns_names, now=now, lifetimes=tls.lifetimes)
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
        await asyncio.to_thread(write_serving_files, state.serving, tls.cert_file, tls.key_file)
    return state


async def self_managed_tls_loop(
    kube: Kube,
    tls: SelfManagedTLS,
    *,
    is_leader: Callable[[], bool],
    interval: float = 60.0,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> None:
    """Run :func:`reconcile_self_managed` every ``interval`` seconds until cancelled.

    Only the leader writes; every replica keeps its serving files in step with the Secret. API errors
    are logged and retried next round.
    """
    while True:
        try:
            await reconcile_self_managed(kube, tls, now=clock(), write=is_leader())
        except errors.ApiError as exc:
            log.warning("self-managed webhook TLS round failed, retrying in %.0fs: %s", interval, exc)
        await asyncio.sleep(interval)
