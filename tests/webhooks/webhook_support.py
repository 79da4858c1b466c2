"""Helpers for the webhook tests: certificate files issued by a trustme CA, and a running server handle."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import trustme
from prometheus_client import CollectorRegistry

from mcosup.http.tls import CertFileReloader
from webhooks.facts import ClusterFacts


@dataclass
class CertFiles:
    ca: trustme.CA
    cert_file: Path
    key_file: Path

    def issue(self, *names: str) -> trustme.LeafCert:
        """Write a newly issued leaf (as the kubelet would: key then cert, each replaced atomically)."""
        leaf = self.ca.issue_cert(*(names or ("127.0.0.1", "localhost")))
        for path, blob in ((self.key_file, leaf.private_key_pem), (self.cert_file, leaf.cert_chain_pems[0])):
            tmp = path.with_suffix(".tmp")
            blob.write_to_path(str(tmp))
            tmp.replace(path)
        return leaf

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@dataclass
class Webhook:
    url: str
    port: int
    tls: CertFileReloader
    registry: CollectorRegistry
    client: aiohttp.ClientSession
    facts: list[ClusterFacts] = field(default_factory=lambda: [ClusterFacts()])

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0
