"""Helpers for the webhook tests: AdmissionReview bodies, certificate files issued by a trustme CA, and a
running server handle."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import trustme
from prometheus_client import CollectorRegistry

from mcosup.http.tls import CertFileReloader
from mcosup.model import names
from webhooks.facts import ClusterFacts


def admission_review(
    kind: str,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    *,
    operation: str = "CREATE",
    group: str | None = None,
    uid: str = "u-1",
    user: str = "kube:admin",
    extra: dict[str, list[str]] | None = None,
    namespace: str = "",
    sub_resource: str = "",
    dry_run: bool = False,
) -> dict[str, Any]:
    """An AdmissionReview v1 request body as the API server sends it.

    ``group`` defaults to the MCO's for its kinds (MachineConfig, MachineConfigPool, MachineOS*), to core
    for other kinds.
    """
    if group is None:
        group = names.GROUP if kind.startswith("Machine") else ""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": kind.lower() + "s"},
            "subResource": sub_resource,
            "name": (obj or old or {}).get("metadata", {}).get("name", ""),
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": user, "groups": ["system:authenticated"], "extra": extra or {}},
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
        },
    }


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
