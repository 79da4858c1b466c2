"""The admission webhook as the supervisor serves it: facts from the caches, TLS from files or self-managed.

Every replica serves (leader or not); in self-managed mode only the leader writes the Secret and the
CA bundle, every replica follows the Secret into its serving files.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from mcosup.http.admission import run_admission_server
from mcosup.http.certs import service_dns_names
from mcosup.http.tls import CertFileReloader
from mcosup.kube.cache import Informer
from mcosup.kube.client import Kube
from mcosup.runtime.metrics import Metrics
from mcosup.runtime.settings import SupervisorSettings
from mcosup.supervisor.webhooktls import SelfManagedTLS, reconcile_self_managed, self_managed_tls_loop
from webhooks.facts import ClusterFacts

log = logging.getLogger(__name__)

#: Names the install (deploy/) gives the webhook's Secret and configuration.
TLS_SECRET = "machine-config-supervisor-tls"
WEBHOOK_CONFIGURATION = "mcosup"
#: Seconds between self-managed TLS rounds (rotation happens well before expiry; this only bounds how
#: quickly a standby follows a rotation the leader made).
TLS_INTERVAL = 30.0


def cert_paths(settings: SupervisorSettings) -> tuple[Path, Path]:
    base = Path(settings.webhook_cert_dir)
    return base / "tls.crt", base / "tls.key"


async def serve_webhook(
    kube: Kube,
    settings: SupervisorSettings,
    *,
    tls: CertFileReloader,
    pools: Informer,
    machineconfigs: Informer,
    machineosconfigs: Informer,
    secrets: Informer,
    is_leader: Callable[[], bool],
    metrics: Metrics,
    host: str,
) -> None:
    """Run until cancelled: (self-managed) TLS upkeep, then the HTTPS admission server."""
    ns = settings.namespace

    def facts() -> ClusterFacts:
        return ClusterFacts.from_objects(
            namespace=ns,
            pools=pools.items(),
            machineconfigs=machineconfigs.items(),
            machineosconfigs=machineosconfigs.items(),
            secrets=secrets.items(),
        )

    cert_file, key_file = cert_paths(settings)
    async with asyncio.TaskGroup() as tg:
        if settings.webhook_tls == "self-managed":
            cert_file.parent.mkdir(parents=True, exist_ok=True)
            upkeep = SelfManagedTLS(
                namespace=ns,
                secret_name=TLS_SECRET,
                webhook_configuration=WEBHOOK_CONFIGURATION,
                dns_names=(*service_dns_names(settings.webhook_service, ns), *settings.webhook_extra_names),
                cert_file=cert_file,
                key_file=key_file,
            )
            # Until the first certificate exists (the leader creates it), look every second.
            while not (cert_file.exists() and key_file.exists()):
                await reconcile_self_managed(kube, upkeep, now=dt.datetime.now(dt.UTC), write=is_leader())
                if not cert_file.exists():
                    await asyncio.sleep(1.0)
            tg.create_task(
                self_managed_tls_loop(kube, upkeep, is_leader=is_leader, interval=TLS_INTERVAL),
                name="webhook-tls",
            )
        tg.create_task(
            run_admission_server(facts, tls=tls, metrics=metrics, host=host, port=settings.webhook_port),
            name="webhook-server",
        )
