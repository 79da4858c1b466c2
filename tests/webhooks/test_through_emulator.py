"""The webhook through an API server's admission path: ValidatingWebhookConfiguration → HTTPS → server.

Every case runs twice, with the same assertions: on the emulator, and on a real kube-apiserver (which
also evaluates the configuration's matchConditions, and reaches the webhook by ``url`` on loopback).
Self-managed TLS sets it up the way the supervisor does: :func:`reconcile_self_managed` stores the CA and
serving certificate in a Secret, injects the CA bundle into deploy/webhook.yaml's configuration, and
writes the serving files the server loads. Facts come from watch caches, as in the supervisor.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from prometheus_client import CollectorRegistry

from mcosup.http.admission import admission_app, serving_tls
from mcosup.http.certs import Lifetimes, WebhookTLSState, service_dns_names, signed_by
from mcosup.http.tls import CertFileReloader
from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube import resources as R
from mcosup.kube.cache import Informer
from mcosup.model import names
from mcosup.runtime.metrics import WebhookMetrics
from mcosup.runtime.settings import KubeSettings
from mcosup.sim.backends import KINDS, Backend, RealBackend, make_backend
from mcosup.sim.registry import free_port
from mcosup.supervisor.webhooktls import SelfManagedTLS, reconcile_self_managed, self_managed_tls_loop
from waiting import eventually
from webhooks.facts import ClusterFacts

NS = names.DEFAULT_NAMESPACE
SERVICE = "machine-config-supervisor"
SECRET = "machine-config-supervisor-tls"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def deploy_configuration() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "webhook.yaml").read_text())
    return loaded


@dataclass
class Cluster:
    backend: Backend
    admin: Path
    tmp: Path
    kube: kclient.Kube
    tls: CertFileReloader
    configuration: str
    dns_names: tuple[str, ...]
    admin_kube: kclient.Kube

    async def kubectl(self, *args: str, stdin: str | None = None) -> tuple[int, str]:
        # The kubectl of the release under test on the real server; Debian's on the emulator.
        kubectl = (
            self.backend.control_plane.binary("kubectl")
            if isinstance(self.backend, RealBackend)
            else "kubectl"
        )
        process = await asyncio.create_subprocess_exec(
            kubectl,
            "--kubeconfig",
            str(self.admin),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate(stdin.encode() if stdin is not None else None)
        assert process.returncode is not None
        return process.returncode, out.decode()

    def as_service_account(self, name: str, node_name: str | None = None) -> Path:
        return self.backend.write_kubeconfig_for_service_account(
            self.tmp / f"{name}-{node_name}.kubeconfig", NS, name, node_name
        )

    async def get(self, resource: R.Resource, name: str) -> dict[str, Any] | None:
        with contextlib.suppress(errors.NotFound):
            return await self.admin_kube.get(resource, name)
        return None


def machineconfig(name: str, role: str, path: str) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfig",
        "metadata": {"name": name, "labels": {names.ROLE_LABEL: role}},
        "spec": {
            "config": {
                "ignition": {"version": "3.4.0"},
                "storage": {
                    "files": [
                        {
                            "path": path,
                            "mode": 420,
                            "contents": {"source": "data:;base64," + base64.b64encode(b"x=1\n").decode()},
                        }
                    ]
                },
            }
        },
    }


@pytest.fixture(params=KINDS)
async def cluster(
    request: pytest.FixtureRequest, mco_fixtures: Path, tmp_path: Path
) -> AsyncIterator[Cluster]:
    port = free_port()
    backend = make_backend(
        request.param,
        workdir=tmp_path,
        namespace=NS,
        service=SERVICE,
        webhook_port=port,
        startup_seconds=120,
    )
    await backend.start()
    try:
        for crd in sorted((mco_fixtures / "crds").glob("*.yaml")):
            await backend.create_object(yaml.safe_load(crd.read_text()))
        await backend.create_object(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": NS, "labels": {"kubernetes.io/metadata.name": NS}},
            }
        )
        await backend.install_identities()
        for name in ("worker", "master"):
            pool = yaml.safe_load((mco_fixtures / "objects" / f"{name}.machineconfigpool.yaml").read_text())
            if name == "worker":
                pool["metadata"]["labels"][names.LAYERING_ENABLED] = ""
            await backend.create_object(pool)
        configuration = backend.webhook_configuration(deploy_configuration(), port)
        await backend.create_object(configuration)
        admin = backend.write_kubeconfig(tmp_path / "admin.kubeconfig")
        supervisor = backend.write_kubeconfig_for_service_account(
            tmp_path / "supervisor.kubeconfig", NS, names.SUPERVISOR_SA
        )
        dns_names = (*service_dns_names(SERVICE, NS), *backend.webhook_extra_names)
        async with (
            kclient.connect(KubeSettings(kubeconfig=str(supervisor))) as kube,
            kclient.connect(KubeSettings(kubeconfig=str(admin))) as admin_kube,
        ):
            # The supervisor's facts come from its watch caches.
            caches = [
                Informer(kube, R.MACHINECONFIGPOOLS),
                Informer(kube, R.MACHINECONFIGS),
                Informer(kube, R.SECRETS, namespace=NS),
            ]
            pools, machineconfigs, secrets = caches

            def facts() -> ClusterFacts:
                return ClusterFacts.from_objects(
                    namespace=NS,
                    pools=list(pools.items()),
                    machineconfigs=list(machineconfigs.items()),
                    secrets=list(secrets.items()),
                )

            tasks = [asyncio.create_task(c.run()) for c in caches]
            try:
                for c in caches:
                    await c.listed.wait()
                upkeep = SelfManagedTLS(
                    namespace=NS,
                    secret_name=SECRET,
                    webhook_configuration=configuration["metadata"]["name"],
                    dns_names=dns_names,
                    cert_file=tmp_path / "tls" / "tls.crt",
                    key_file=tmp_path / "tls" / "tls.key",
                )
                await reconcile_self_managed(kube, upkeep, now=dt.datetime.now(dt.UTC))
                tls = CertFileReloader(tmp_path / "tls" / "tls.crt", tmp_path / "tls" / "tls.key")
                app = admission_app(facts, metrics=WebhookMetrics(CollectorRegistry()))
                async with serving_tls(app, tls, "127.0.0.1", port):
                    yield Cluster(
                        backend,
                        admin,
                        tmp_path,
                        kube,
                        tls,
                        configuration["metadata"]["name"],
                        dns_names,
                        admin_kube,
                    )
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await backend.stop()


async def test_self_managed_tls_stored_the_secret_and_injected_the_ca(cluster: Cluster) -> None:
    secret = await cluster.kube.get(R.SECRETS, SECRET, namespace=NS)
    state = WebhookTLSState.from_secret_data(secret["data"])
    assert state is not None and secret["type"] == "kubernetes.io/tls"
    configuration = await cluster.kube.get(R.VALIDATING_WEBHOOK_CONFIGURATIONS, cluster.configuration)
    bundles = {w["clientConfig"]["caBundle"] for w in configuration["webhooks"]}
    assert bundles == {base64.b64encode(state.ca_bundle).decode()}
    assert (cluster.tmp / "tls" / "tls.crt").read_bytes() == state.serving.cert_pem


async def test_kubectl_apply_of_an_undeliverable_file_for_a_layered_pool_is_denied(cluster: Cluster) -> None:
    code, out = await cluster.kubectl(
        "apply", "-f", "-", stdin=yaml.safe_dump(machineconfig("50-var", "worker", "/var/lib/x"))
    )
    assert code != 0
    assert (
        'admission webhook "machineconfigs.mcosup.machineconfiguration.openshift.io" denied the request'
        in out
    )
    assert "MachineConfig 50-var" in out and "/var/lib/x" in out and "layered pool worker" in out
    assert await cluster.get(R.MACHINECONFIGS, "50-var") is None


async def test_the_same_file_for_a_legacy_pool_is_allowed(cluster: Cluster) -> None:
    code, out = await cluster.kubectl(
        "apply", "-f", "-", stdin=yaml.safe_dump(machineconfig("50-var", "master", "/var/lib/x"))
    )
    assert code == 0, out
    assert await cluster.get(R.MACHINECONFIGS, "50-var") is not None


async def test_dry_run_server_is_judged_and_writes_nothing(cluster: Cluster) -> None:
    denied = yaml.safe_dump(machineconfig("50-dry", "worker", "/var/lib/x"))
    code, out = await cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=denied)
    assert code != 0 and "/var/lib/x" in out and "denied the request" in out
    allowed = yaml.safe_dump(machineconfig("50-dry", "worker", "/etc/x"))
    code, out = await cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=allowed)
    assert code == 0, out
    assert "triggers an image build" in out  # kubectl prints the webhook's warning
    assert await cluster.get(R.MACHINECONFIGS, "50-dry") is None


async def create_node(cluster: Cluster, name: str, layered: bool) -> None:
    labels = {
        "node-role.kubernetes.io/worker": "",
        names.DAEMON_MODE: names.MODE_LAYERED if layered else names.MODE_LEGACY,
    }
    annotations = {
        names.DESIRED_CONFIG: "rendered-worker-a",
        names.CURRENT_CONFIG: "rendered-worker-a",
        names.STATE: "Done",
    }
    if layered:
        annotations[names.DESIRED_IMAGE] = "registry.example.com/os@sha256:" + "a" * 64
    await cluster.backend.create_object(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
        }
    )


async def test_admin_setting_desired_config_on_a_layered_node_is_denied(cluster: Cluster) -> None:
    await create_node(cluster, "worker-0", layered=True)
    code, out = await cluster.kubectl(
        "annotate", "--overwrite", "node", "worker-0", f"{names.DESIRED_CONFIG}=rendered-worker-b"
    )
    assert code != 0
    assert "Node worker-0 is layered" in out and "direct MachineConfig application is blocked" in out
    node = await cluster.get(R.NODES, "worker-0")
    assert node is not None
    assert node["metadata"]["annotations"][names.DESIRED_CONFIG] == "rendered-worker-a"


async def test_daemon_of_node_a_patching_node_b_is_denied_and_its_own_node_passes(cluster: Cluster) -> None:
    await create_node(cluster, "worker-0", layered=False)
    await create_node(cluster, "worker-1", layered=False)
    daemon_on_1 = cluster.as_service_account(names.DAEMON_SA, node_name="worker-1")
    patch = {"metadata": {"annotations": {names.STATE: names.STATE_WORKING}}}
    async with kclient.connect(KubeSettings(kubeconfig=str(daemon_on_1))) as daemon:
        with pytest.raises(errors.Forbidden) as denied:
            await daemon.patch(R.NODES, "worker-0", patch)
        assert "Node worker-0" in denied.value.message and "daemon on node worker-1" in denied.value.message
        await daemon.patch(R.NODES, "worker-1", patch)
    states = {
        n: ((await cluster.get(R.NODES, n)) or {})["metadata"]["annotations"][names.STATE]
        for n in ("worker-0", "worker-1")
    }
    assert states == {"worker-0": "Done", "worker-1": "Working"}


async def test_the_supervisors_own_patches_pass(cluster: Cluster) -> None:
    await create_node(cluster, "worker-0", layered=True)
    patch = {
        "metadata": {
            "labels": {names.DAEMON_MODE: names.MODE_LEGACY},
            "annotations": {names.DESIRED_CONFIG: "rendered-worker-b", names.DESIRED_IMAGE: None},
        }
    }
    await cluster.kube.patch(R.NODES, "worker-0", patch)  # the fixture's client is the supervisor's
    node = await cluster.get(R.NODES, "worker-0")
    assert node is not None
    assert node["metadata"]["labels"][names.DAEMON_MODE] == names.MODE_LEGACY
    assert names.DESIRED_IMAGE not in node["metadata"]["annotations"]


async def test_opting_in_a_pool_with_undeliverable_files_is_denied(cluster: Cluster) -> None:
    code, out = await cluster.kubectl(
        "apply", "-f", "-", stdin=yaml.safe_dump(machineconfig("50-home", "master", "/home/core/x"))
    )
    assert code == 0, out
    code, out = await cluster.kubectl("label", "mcp", "master", f"{names.LAYERING_ENABLED}=")
    assert code != 0
    assert "MachineConfigPool master" in out and "MachineConfig 50-home" in out and "/home/core/x" in out


async def test_build_config_is_checked_and_missing_secrets_warned(cluster: Cluster) -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names.BUILD_CONFIG_CM, "namespace": NS},
        "data": {names.FINAL_IMAGE_PULLSPEC_KEY: "not a pullspec"},
    }
    code, out = await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(bad))
    assert code != 0
    assert (
        f"data.{names.BASE_IMAGE_PULL_SECRET_KEY} is missing" in out
        and f"data.{names.FINAL_IMAGE_PULLSPEC_KEY}" in out
    )
    good = dict(bad)
    good["data"] = {
        names.BASE_IMAGE_PULL_SECRET_KEY: "pull",
        names.FINAL_IMAGE_PUSH_SECRET_KEY: "push",
        names.FINAL_IMAGE_PULLSPEC_KEY: "registry.example.com/ns/os-image:latest",
    }
    code, out = await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(good))
    assert code == 0, out
    assert "Secret pull" in out and "Secret push" in out and "does not exist" in out


async def test_ca_rotation_through_the_configuration_keeps_admission_working(cluster: Cluster) -> None:
    async def verdicts_still_arrive() -> None:
        # The emulator trusts only the injected bundle: a verdict (not a TLS failure) proves the chain.
        mc = machineconfig("50-var", "worker", "/var/lib/x")
        code, out = await cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(mc))
        assert code != 0 and "layered pool worker" in out, out

    upkeep = SelfManagedTLS(
        namespace=NS,
        secret_name=SECRET,
        webhook_configuration=cluster.configuration,
        dns_names=cluster.dns_names,
        cert_file=cluster.tmp / "tls" / "tls.crt",
        key_file=cluster.tmp / "tls" / "tls.key",
    )
    secret = await cluster.kube.get(R.SECRETS, SECRET, namespace=NS)
    before = WebhookTLSState.from_secret_data(secret["data"])
    assert before is not None
    # Renewal forced now (renew_fraction=1): a new CA joins the bundle, and the serving certificate from
    # the old CA keeps serving while the new CA propagates.
    forced = Lifetimes(renew_fraction=1.0, propagation=dt.timedelta(hours=1))
    rotated = await reconcile_self_managed(
        cluster.kube, dataclasses.replace(upkeep, lifetimes=forced), now=dt.datetime.now(dt.UTC)
    )
    assert rotated is not None and rotated.ca != before.ca and rotated.serving == before.serving
    assert len(x509.load_pem_x509_certificates(rotated.ca_bundle)) == 2
    assert not cluster.tls.reload_if_changed()
    await verdicts_still_arrive()
    # Propagation over (zero here): the serving certificate moves to the new CA.
    propagated = Lifetimes(propagation=dt.timedelta(0))
    switched = await reconcile_self_managed(
        cluster.kube, dataclasses.replace(upkeep, lifetimes=propagated), now=dt.datetime.now(dt.UTC)
    )
    assert switched is not None and switched.ca == rotated.ca
    assert signed_by(switched.serving.cert, rotated.ca.cert)
    configuration = await cluster.kube.get(R.VALIDATING_WEBHOOK_CONFIGURATIONS, cluster.configuration)
    assert {w["clientConfig"]["caBundle"] for w in configuration["webhooks"]} == {
        base64.b64encode(switched.ca_bundle).decode()
    }
    assert cluster.tls.reload_if_changed()
    await verdicts_still_arrive()


async def test_standby_replicas_follow_the_secret_without_writing(cluster: Cluster, tmp_path: Path) -> None:
    secret_before = await cluster.kube.get(R.SECRETS, SECRET, namespace=NS)
    standby_dir = tmp_path / "standby"
    loop = asyncio.create_task(
        self_managed_tls_loop(
            cluster.kube,
            SelfManagedTLS(
                namespace=NS,
                secret_name=SECRET,
                webhook_configuration=cluster.configuration,
                dns_names=service_dns_names("renamed-would-force-a-reissue", NS),
                cert_file=standby_dir / "tls.crt",
                key_file=standby_dir / "tls.key",
            ),
            is_leader=lambda: False,
            interval=0.05,
        )
    )
    try:
        await eventually(lambda: (standby_dir / "tls.crt").exists(), what="the standby's serving files")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    state = WebhookTLSState.from_secret_data(secret_before["data"])
    assert state is not None and (standby_dir / "tls.crt").read_bytes() == state.serving.cert_pem
    secret_after = await cluster.kube.get(R.SECRETS, SECRET, namespace=NS)
    assert secret_after["metadata"]["resourceVersion"] == secret_before["metadata"]["resourceVersion"]


def machineosconfig(pool: str, containerfile: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "machineConfigPool": {"name": pool},
        "imageBuilder": {"imageBuilderType": "Job"},
        "renderedImagePushSecret": {"name": "push"},
        "renderedImagePushSpec": "registry.example.com/os/layered:latest",
    }
    if containerfile is not None:
        spec["containerFile"] = [{"containerfileArch": "NoArch", "content": containerfile}]
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.MACHINEOSCONFIG_KIND,
        "metadata": {"name": pool},
        "spec": spec,
    }


async def test_machineosconfigs_are_judged_on_their_spec_only(cluster: Cluster) -> None:
    """One case per backend start (the real control plane is slow): deny, warn, then pass metadata."""
    rule = 'admission webhook "machineosconfigs.mcosup.machineconfiguration.openshift.io" denied the request'
    replacing = machineosconfig("master", "RUN true\nFROM quay.io/fedora/fedora:41\n")
    code, out = await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(replacing))
    assert code != 0 and rule in out, out
    assert "MachineOSConfig master spec.containerFile[0].content line 2: 'FROM quay.io/fedora" in out
    code, out = await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(machineosconfig("infra")))
    assert code != 0 and rule in out, out
    assert "spec.machineConfigPool.name: MachineConfigPool infra does not exist" in out
    for name in ("master", "infra"):
        assert await cluster.get(R.MACHINEOSCONFIGS, name) is None

    code, out = await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(machineosconfig("master")))
    assert code == 0, out
    assert "spec.renderedImagePushSecret.name: Secret push does not exist" in out  # kubectl prints warnings
    assert "pool master opts in to layering" in out
    # The builder's annotations never wait on (or are refused by) the webhook, whatever the spec.
    code, out = await cluster.kubectl("annotate", "machineosconfig", "master", f"{names.PREFIX}rebuild=")
    assert code == 0, out
    assert (
        names.PREFIX + "rebuild"
        in ((await cluster.get(R.MACHINEOSCONFIGS, "master")) or {})["metadata"]["annotations"]
    )
    # mcosup's settings annotations are judged when they change, spec or not.
    settings = ((names.BUILD_TIMEOUT_ANNOTATION, "soon", "45m"), (names.BUILD_HISTORY_LIMIT, "0", "5"))
    for key, bad, good in settings:
        code, out = await cluster.kubectl("annotate", "machineosconfig", "master", f"{key}={bad}")
        assert code != 0 and rule in out and f"MachineOSConfig master annotation {key}" in out, out
        code, out = await cluster.kubectl("annotate", "machineosconfig", "master", f"{key}={good}")
        assert code == 0, out
