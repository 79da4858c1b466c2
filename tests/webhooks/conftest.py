"""Fixtures: the webhook server over real TLS (trustme CA), with a facts holder tests can change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from prometheus_client import CollectorRegistry
from webhook_support import CertFiles, Webhook

from mcosup.http.admission import admission_app, serving_tls
from mcosup.http.tls import CertFileReloader
from mcosup.runtime.metrics import WebhookMetrics
from webhooks.facts import ClusterFacts


@pytest.fixture
def cert_files(tmp_path: Path) -> CertFiles:
    files = CertFiles(trustme.CA(), tmp_path / "tls.crt", tmp_path / "tls.key")
    files.issue()
    return files


@pytest.fixture
async def webhook(cert_files: CertFiles) -> AsyncIterator[Webhook]:
    registry = CollectorRegistry()
    tls = CertFileReloader(cert_files.cert_file, cert_files.key_file)
    holder: list[ClusterFacts] = [ClusterFacts()]
    app = admission_app(lambda: holder[0], metrics=WebhookMetrics(registry), max_body_bytes=4 * 1024 * 1024)
    async with serving_tls(app, tls, "127.0.0.1", 0) as port:
        connector = aiohttp.TCPConnector(ssl=cert_files.client_context())
        async with aiohttp.ClientSession(connector=connector) as client:
            yield Webhook(f"https://127.0.0.1:{port}/validate", port, tls, registry, client, holder)
