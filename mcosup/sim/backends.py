"""The API server under a :class:`~mcosup.sim.cluster.LocalCluster`: the emulator or a real control plane.

Both give the cluster harness the same few things, so everything above them (the supervisor, the
daemons, the kubelet stand-in, the tests' assertions) is the same code on either:

- an admin kubeconfig, and per-ServiceAccount kubeconfigs (on the real control plane from the
  TokenRequest API, bound to the daemon's Node so the webhook sees a real node name);
- ``create_object``: seed an object as the admin (set-up; webhooks are called on both);
- ``webhook_configuration``: ``deploy/webhook.yaml`` pointed at the supervisor's loopback port — by the
  emulator's Service map, or on the real server by ``url`` (a real API server reaches a Service only
  through a network this machine does not have), with the serving certificate's extra names;
- ``install_identities``: the ServiceAccounts of ``deploy/rbac/``, and on the real server, which
  enforces it, the RBAC too (the emulator enforces none);
- ``log_sink``: where the kubelet stand-in sends container logs (the emulator serves them as
  ``pods/log``; a real API server asks a kubelet, and there is none).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from mcosup.sim.apiserver import Emulator
from mcosup.sim.controlplane import ControlPlane, ControlPlaneError
from mcosup.sim.kubelet import LogSink

#: The repository's install manifests (the harness installs the same CRDs, RBAC and webhook a user would).
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


async def _create_all(backend: Backend, paths: list[Path]) -> None:
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                await backend.create_object(doc)


Kind = Literal["emulator", "real"]
KINDS: tuple[Kind, ...] = ("emulator", "real")


class EmulatorBackend:
    """The in-process emulator; webhook Services resolve through its Service map."""

    kind: Kind = "emulator"
    webhook_extra_names: tuple[str, ...] = ()

    def __init__(self, namespace: str, service: str, webhook_port: int) -> None:
        self.emulator = Emulator(service_map={(namespace, service, 443): f"127.0.0.1:{webhook_port}"})
        self.log_sink: LogSink | None = self.emulator.set_pod_log

    async def start(self) -> None:
        await self.emulator.start()

    async def stop(self) -> None:
        await self.emulator.stop()

    def write_kubeconfig(self, path: Path) -> Path:
        return self.emulator.write_kubeconfig(path)

    def write_kubeconfig_for_service_account(
        self, path: Path, namespace: str, name: str, node: str | None = None
    ) -> Path:
        return self.emulator.write_kubeconfig_for_service_account(path, namespace, name, node)

    async def create_object(self, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        # As kubectl: the namespace the object names wins over the default it is given.
        named = (body.get("metadata") or {}).get("namespace")
        return await self.emulator.create_object(body, namespace=named or namespace)

    async def install_identities(self) -> None:
        """The ServiceAccounts (their Roles would be stored and never enforced)."""
        await _create_all(self, [DEPLOY / "rbac" / "serviceaccounts.yaml"])

    def webhook_configuration(self, doc: Mapping[str, Any], port: int) -> dict[str, Any]:
        return dict(doc)


class RealBackend:
    """kube-apiserver, etcd and kube-controller-manager (:mod:`mcosup.sim.controlplane`)."""

    kind: Kind = "real"
    #: The webhook is reached at its loopback address, which its certificate must then name.
    webhook_extra_names: tuple[str, ...] = ("127.0.0.1",)
    log_sink: LogSink | None = None

    def __init__(self, workdir: Path, startup_seconds: float = 120.0) -> None:
        self.control_plane = ControlPlane(workdir, startup_seconds=startup_seconds)
        self._resources: dict[tuple[str, str], tuple[str, bool]] = {}

    async def start(self) -> None:
        await self.control_plane.start()

    async def stop(self) -> None:
        await self.control_plane.stop()

    def write_kubeconfig(self, path: Path) -> Path:
        return self.control_plane.write_kubeconfig(path)

    def write_kubeconfig_for_service_account(
        self, path: Path, namespace: str, name: str, node: str | None = None
    ) -> Path:
        return self.control_plane.write_kubeconfig_for_service_account(path, namespace, name, node)

    async def create_object(self, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self._create, body, namespace)

    async def install_identities(self) -> None:
        """The ServiceAccounts and all of ``deploy/rbac/``: every mcosup process runs with no more."""
        await _create_all(self, sorted((DEPLOY / "rbac").glob("*.yaml")))

    def _create(self, body: dict[str, Any], namespace: str | None) -> dict[str, Any]:
        api_version, kind = str(body.get("apiVersion", "")), str(body.get("kind", ""))
        plural, namespaced = self._resource(api_version, kind)
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if namespaced:
            # As kubectl: the namespace the object names wins over the default it is given.
            ns = (body.get("metadata") or {}).get("namespace") or namespace or "default"
            base += f"/namespaces/{ns}"
        created: dict[str, Any] = self.control_plane.call("POST", f"{base}/{plural}", body)
        if kind == "CustomResourceDefinition":
            self._wait_established(created["metadata"]["name"])
        return created

    def _resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of ``kind`` in ``api_version``, from the server's discovery."""
        key = (api_version, kind)
        if key not in self._resources:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            for r in self.control_plane.call("GET", path).get("resources") or []:
                if "/" not in r["name"]:
                    self._resources[(api_version, r["kind"])] = (r["name"], bool(r["namespaced"]))
        if key not in self._resources:
            raise ControlPlaneError(f"the API server serves no {kind} in {api_version}")
        return self._resources[key]

    def _wait_established(self, name: str, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while True:
            crd = self.control_plane.call(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"CRD {name} not Established after {within:.0f} s: {conditions}")
            time.sleep(0.1)

    def webhook_configuration(self, doc: Mapping[str, Any], port: int) -> dict[str, Any]:
        out = copy.deepcopy(dict(doc))
        for hook in out.get("webhooks") or []:
            client = hook.get("clientConfig") or {}
            service = client.pop("service", None)
            if service is not None:
                client["url"] = f"https://127.0.0.1:{port}{service.get('path', '/')}"
        return out


Backend = EmulatorBackend | RealBackend


def make_backend(
    kind: Kind, *, workdir: Path, namespace: str, service: str, webhook_port: int, startup_seconds: float
) -> Backend:
    if kind == "emulator":
        return EmulatorBackend(namespace, service, webhook_port)
    if kind == "real":
        return RealBackend(workdir / "controlplane", startup_seconds)
    raise ValueError(f"control plane {kind!r} is not one of {', '.join(KINDS)}")
