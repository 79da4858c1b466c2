"""``mcosup supervisor`` as a real process of the local cluster (:class:`~mcosup.sim.cluster.LocalCluster`).

It runs as an installation runs it: with its own ServiceAccount's kubeconfig, self-managed webhook
TLS behind ``deploy/webhook.yaml``'s ValidatingWebhookConfiguration (created before the supervisor
starts, as ``kubectl apply -k deploy/`` leaves it; the supervisor injects its CA), and the builder and
build images that the kubelet stand-in runs locally. :meth:`SupervisorProcess.start` waits for its
``/readyz`` and the CA injected; :meth:`SupervisorProcess.stop` is bounded (SIGTERM, then SIGKILL after
15 s); :meth:`SupervisorProcess.kill` is SIGKILL, after which :meth:`start` runs it again as its
Deployment's kubelet would. Its output goes to ``supervisor.log`` in the work directory (a second
replica's to ``supervisor-<identity>.log``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import yaml

from mcosup.kube import client as kclient
from mcosup.kube.resources import VALIDATING_WEBHOOK_CONFIGURATIONS
from mcosup.model import names
from mcosup.sim.backends import DEPLOY, Backend
from mcosup.sim.invariants import ClusterError, wait_until
from mcosup.sim.registry import free_port

#: The Service of the supervisor's webhook (a name in its serving certificate).
WEBHOOK_SERVICE = "machine-config-supervisor"
#: The images the supervisor gives the builder pod and the build pods; the kubelet stand-in runs them locally.
MCOSUP_IMAGE = "quay.io/mcosup/mcosup:local"
BUILDAH_IMAGE = "quay.io/buildah/stable:local"


class SupervisorProcess:
    """The supervisor subprocess of one local cluster: :meth:`start`, :meth:`stop`, and its log."""

    def __init__(
        self,
        backend: Backend,
        workdir: Path,
        namespace: str,
        webhook_port: int,
        *,
        extra_env: Mapping[str, str],
        startup_seconds: float,
        identity: str = "machine-config-supervisor-0",
        log_name: str = "supervisor.log",
    ) -> None:
        self.backend = backend
        self.workdir = workdir
        self.ns = namespace
        self.webhook_port = webhook_port
        #: Extra environment (``ClusterConfig.supervisor_env``), over the defaults set in :meth:`start`.
        self.extra_env = extra_env
        self.startup_seconds = startup_seconds
        #: Its name in the leader Lease.
        self.identity = identity
        self.process: asyncio.subprocess.Process | None = None
        self.log = workdir / log_name
        self.http_port = 0
        #: The exit code of every run that ended (``-9``: killed by :meth:`kill`).
        self.exit_codes: list[int] = []
        self._webhook_installed = False

    async def start(self, kube: kclient.Kube, *, install_webhook: bool = True) -> None:
        """Start it and wait until it is ready and has injected its CA (seen through ``kube``).

        The first start of the replica whose port the webhook configuration names
        (``install_webhook``) creates that configuration; a start after :meth:`kill` is a restart.
        """
        kubeconfig = await asyncio.to_thread(
            self.backend.write_kubeconfig_for_service_account,
            self.workdir / f"{self.identity}.kubeconfig",
            self.ns,
            names.SUPERVISOR_SA,
        )
        if install_webhook and not self._webhook_installed:
            # The webhook configuration exists before the supervisor, as `kubectl apply -k deploy/`
            # leaves it; the supervisor injects its CA. (MachineConfig writes wait for it: failurePolicy
            # Fail.)
            for doc in [d for d in yaml.safe_load_all((DEPLOY / "webhook.yaml").read_text()) if d]:
                await self.backend.create_object(self.backend.webhook_configuration(doc, self.webhook_port))
            self._webhook_installed = True
        if self.process is None or self.process.returncode is not None:
            await self._launch(kubeconfig)
        # else: a start retried after a failed wait waits again for the process it started
        await wait_until(self._ready, within=self.startup_seconds, what="the supervisor's /readyz")
        await wait_until(
            lambda: self._ca_injected(kube), within=self.startup_seconds, what="the webhook CA injected"
        )

    async def _launch(self, kubeconfig: Path) -> None:
        if self.process is not None and self.process.returncode is not None:
            self.exit_codes.append(self.process.returncode)  # it ended by itself
        self.http_port = free_port()  # a fresh one each start: only the runner's readiness checks use it
        env = {
            **os.environ,
            "MCOSUP_NAMESPACE": self.ns,
            "MCOSUP_HTTP_HOST": "127.0.0.1",
            "MCOSUP_WEBHOOK_TLS": "self-managed",
            "MCOSUP_WEBHOOK_PORT": str(self.webhook_port),
            "MCOSUP_WEBHOOK_CERT_DIR": str(self.workdir / "webhook-tls"),
            "MCOSUP_WEBHOOK_SERVICE": WEBHOOK_SERVICE,
            "MCOSUP_WEBHOOK_EXTRA_NAMES": ",".join(self.backend.webhook_extra_names),
            "MCOSUP_BUILDER_BACKOFF": "1",
            "MCOSUP_BUILDAH_IMAGE": BUILDAH_IMAGE,
            "MCOSUP_BUILD_TLS_VERIFY": "false",
            **self.extra_env,
        }
        env.pop("KUBECONFIG", None)
        argv = [
            sys.executable, "-m", "mcosup", "supervisor",
            "--kubeconfig", str(kubeconfig),
            "--http-port", str(self.http_port),
            "--image", MCOSUP_IMAGE,
            "--identity", self.identity,
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )

    async def _ready(self) -> str | None:
        proc = self.process
        if proc is None or proc.returncode is not None:
            raise ClusterError(f"the supervisor exited ({proc and proc.returncode}):\n{self.tail()}")
        url = f"http://127.0.0.1:{self.http_port}/readyz"

        def get() -> str | None:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return None if resp.status == 200 else f"HTTP {resp.status}"
            except Exception as exc:
                return str(exc)

        return await asyncio.to_thread(get)

    async def _ca_injected(self, kube: kclient.Kube) -> str | None:
        obj = await kube.get(VALIDATING_WEBHOOK_CONFIGURATIONS, "mcosup")
        hooks = obj.get("webhooks") or []
        if hooks and all((h.get("clientConfig") or {}).get("caBundle") for h in hooks):
            return None
        return "no caBundle yet"

    def text(self) -> str:
        """Everything the supervisor wrote so far."""
        return _read(self.log)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(_read(self.log).splitlines()[-lines:])

    async def kill(self) -> None:
        """SIGKILL it, as a node losing power would, and wait for it to be gone."""
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        proc.kill()
        self.exit_codes.append(await proc.wait())
        self.process = None

    async def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.returncode is not None:
            self.exit_codes.append(proc.returncode)
            return
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
                await asyncio.shield(proc.wait())
        except TimeoutError:
            proc.kill()
            await proc.wait()
        self.exit_codes.append(proc.returncode if proc.returncode is not None else -1)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
