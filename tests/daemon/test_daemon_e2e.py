"""Real `mcosup daemon` processes against the API emulator and the fake host (contract section 6).

Each test drives a Node the way the supervisor does (label + desired* annotations in one patch) and
waits for what a user would see: the Node's report and the host tree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemon_kit import KEY, MC1, MC2, Registry, rendered

from mcosup.daemon import command
from mcosup.daemon import plan as p
from mcosup.daemon.journal import STATE_FILE
from mcosup.kube import client as kclient
from mcosup.kube.resources import CONFIGMAPS, NODES
from mcosup.settings import KubeSettings
from mcosup.sim import fakehost
from mcosup.sim.fakehost import STOCK_IMAGE, FakeHost
from waiting import eventually
from webhooks import names

NODE = "worker-0"
NS = names.DEFAULT_NAMESPACE
IMG_A = "127.0.0.1:5000/os/worker@sha256:" + "a" * 64
IMG_B = "127.0.0.1:5000/os/worker@sha256:" + "b" * 64


class Cluster:
    def __init__(self, kube: kclient.Kube, kubeconfig: Path):
        self.kube = kube
        self.kubeconfig = kubeconfig

    async def annotations(self) -> dict[str, str]:
        node = await self.kube.get(NODES, NODE)
        return dict(node["metadata"].get("annotations") or {})

    async def target(self, mode: str, config: str, image: str | None = None) -> None:
        """The supervisor's one patch: mode label and desired* together."""
        await self.kube.patch(
            NODES,
            NODE,
            {
                "metadata": {
                    "labels": {names.DAEMON_MODE: mode},
                    "annotations": {names.DESIRED_CONFIG: config, names.DESIRED_IMAGE: image},
                }
            },
        )

    async def done(self, config: str, image: str | None = None, *, within: float = 60.0) -> None:
        async def check() -> bool:
            ann = await self.annotations()
            return (
                ann.get(names.STATE) == names.STATE_DONE
                and ann.get(names.CURRENT_CONFIG) == config
                and ann.get(names.CURRENT_IMAGE) == image
            )

        await eventually(check, within=within, what=f"node Done on {config} / {image}")

    async def configmap(self, name: str, data: dict[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS},
            "data": data,
        }
        try:
            await self.kube.replace(CONFIGMAPS, name, body, namespace=NS)
        except Exception:
            await self.kube.create(CONFIGMAPS, body, namespace=NS)


@pytest.fixture
async def cluster(emulator: Any, admin_kubeconfig: Path) -> AsyncIterator[Cluster]:
    await emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    await emulator.create_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    for mc in (MC1, MC2):
        await emulator.create_object(mc)
    # The daemon runs with its own ServiceAccount's credential, bound to its node, as in the DaemonSet.
    daemon_kubeconfig = emulator.write_kubeconfig_for_service_account(
        admin_kubeconfig.parent / "daemon.kubeconfig", NS, names.DAEMON_SA, node_name=NODE
    )
    async with kclient.connect(KubeSettings(kubeconfig=str(admin_kubeconfig))) as kube:
        yield Cluster(kube, daemon_kubeconfig)


def rebases(host: FakeHost) -> int:
    return sum(c[:2] == ["rpm-ostree", "rebase"] for c in host.command_log())


async def apply_legacy(cluster: Cluster, host: FakeHost) -> None:
    await cluster.target(names.MODE_LEGACY, "rendered-worker-1")
    await cluster.done("rendered-worker-1")


def assert_legacy_mc1(host: FakeHost) -> None:
    assert host.read("/etc/app/app.conf") == b"x=1\n" and host.mode("/etc/app/app.conf") == 0o640
    assert host.read("/etc/old.conf") == b"old\n" and host.mode("/etc/old.conf") == 0o600
    assert host.read("/etc/systemd/system/app.service") == b"[Service]\nExecStart=/bin/app\n"
    assert host.read("/etc/systemd/system/docker.service.d/10-opts.conf") == b"[Service]\n"
    assert host.unit_enabled("app.service") and host.unit_masked("crio.service")
    assert host.kargs() == ["root=/dev/vda4", "rw", "nosmt"]
    assert host.read(p.SSH_KEYS_FILE) == (KEY + "\n").encode()
    assert host.read(p.REVERT_FILE) is None


def test_reboot_exit_code_agrees() -> None:
    assert fakehost.REBOOT_EXIT_CODE == command.REBOOT_EXIT_CODE


async def test_legacy_apply_and_replace(cluster: Cluster, fake: FakeHost) -> None:
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig) as handle:
        await apply_legacy(cluster, fake)
        assert_legacy_mc1(fake)
        assert fake.reboots() == 1 and handle.exit_codes == [command.REBOOT_EXIT_CODE]

        await cluster.target(names.MODE_LEGACY, "rendered-worker-2")
        await cluster.done("rendered-worker-2")
        assert fake.read("/etc/app/app.conf") == b"x=2\n" and fake.mode("/etc/app/app.conf") == 0o644
        assert fake.read("/etc/old.conf") is None
        assert fake.read("/etc/systemd/system/app.service") is None and not fake.unit_enabled("app.service")
        assert fake.read("/etc/systemd/system/docker.service.d/10-opts.conf") is None
        assert fake.unit_enabled("docker.service") and not fake.unit_masked("crio.service")
        assert fake.kargs() == ["root=/dev/vda4", "rw", "mitigations=off"]
        assert fake.read(p.SSH_KEYS_FILE) == (KEY + "\nssh-rsa BBBB second\n").encode()
        assert fake.reboots() == 2
    # SIGTERM (the pod being deleted) ends the daemon cleanly.
    assert handle.process is not None and handle.process.returncode == 0


async def test_layered_then_new_image(cluster: Cluster, fake: FakeHost) -> None:
    await cluster.configmap(names.NODE_CERTIFICATES_CM, {"kubelet-ca.crt": "KCA\n"})
    before = fake.files()
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig) as handle:
        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
        await cluster.done("rendered-worker-1", IMG_A)
        assert fake.booted_image() == IMG_A and fake.reboots() == 1 and rebases(fake) == 1
        assert fake.kargs() == ["root=/dev/vda4", "rw", "nosmt"]
        assert (
            fake.read(p.KUBELET_CA_PATH) == b"KCA\n" and fake.read(p.SSH_KEYS_FILE) == (KEY + "\n").encode()
        )

        # A restarted daemon with the same target: no second rebase, no reboot.
        starts, commands = handle.starts, len(fake.command_log())
        handle.kill()
        await eventually(lambda: handle.starts > starts, what="daemon restarted")
        # The new daemon's pass reads the deployments (status, kargs); it plans nothing from them.
        await eventually(
            lambda: len(fake.command_log()) >= commands + 2, what="restarted daemon read the host"
        )
        await cluster.done("rendered-worker-1", IMG_A)
        assert rebases(fake) == 1 and fake.reboots() == 1

        await cluster.target(names.MODE_LAYERED, "rendered-worker-2", IMG_B)
        await cluster.done("rendered-worker-2", IMG_B)
        assert fake.booted_image() == IMG_B and fake.reboots() == 2 and rebases(fake) == 2
        assert fake.kargs() == ["root=/dev/vda4", "rw", "mitigations=off"]
    changed = {path for path, v in fake.files().items() if before.get(path) != v}
    assert changed == {p.KUBELET_CA_PATH, p.SSH_KEYS_FILE, STATE_FILE}
    assert not fake.unit_enabled("app.service") and not fake.unit_masked("crio.service")


async def test_layered_with_the_bootc_backend(cluster: Cluster, fake: FakeHost) -> None:
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig, backend="bootc"):
        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
        await cluster.done("rendered-worker-1", IMG_A)
    assert fake.booted_image() == IMG_A and fake.reboots() == 1
    assert [c for c in fake.command_log() if c[:2] == ["bootc", "switch"]] == [
        ["bootc", "switch", "--transport", "registry", IMG_A]
    ]
    assert rebases(fake) == 0


async def test_revert_to_stock(cluster: Cluster, fake: FakeHost) -> None:
    await cluster.configmap(names.OSIMAGEURL_CM, {names.BASE_OS_CONTAINER_IMAGE_KEY: STOCK_IMAGE})
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig):
        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
        await cluster.done("rendered-worker-1", IMG_A)
        assert fake.read("/etc/app/app.conf") is None

        await cluster.target(names.MODE_LEGACY, "rendered-worker-1")
        await cluster.done("rendered-worker-1", None)
        assert fake.booted_image() == STOCK_IMAGE and fake.reboots() == 2
        assert_legacy_mc1(fake)


async def test_certificates_in_every_mode(cluster: Cluster, fake: FakeHost) -> None:
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig):
        # Before the node has any target (a paused pool never gives it one): certificates still land.
        await cluster.configmap(
            names.NODE_CERTIFICATES_CM,
            {"registry-a.example.com..5000.crt": "RA", "user-ca-bundle.crt": "U1"},
        )
        await eventually(
            lambda: fake.read("/etc/docker/certs.d/a.example.com:5000/ca.crt") == b"RA", what="registry cert"
        )
        await eventually(
            lambda: fake.read("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem") == b"U1",
            what="trust updated",
        )
        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
        await cluster.done("rendered-worker-1", IMG_A)
        await cluster.configmap(
            names.NODE_CERTIFICATES_CM, {"registry-b.example.com.crt": "RB", "user-ca-bundle.crt": "U2"}
        )
        await eventually(
            lambda: not (fake.rootfs / "etc/docker/certs.d/a.example.com:5000").exists(),
            what="registry a's directory removed",
        )
        await eventually(
            lambda: fake.read("/etc/docker/certs.d/b.example.com/ca.crt") == b"RB", what="cert b"
        )
        await eventually(
            lambda: fake.read("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem") == b"U2",
            what="trust updated",
        )
        assert fake.reboots() == 1  # certificates never reboot


async def test_failed_rebase_degrades_then_recovers(
    cluster: Cluster, tmp_path: Path, registry: Registry
) -> None:
    host = FakeHost(tmp_path / "reg-host", registry=registry.url)
    async with fakehost.daemon(host, NODE, kubeconfig=cluster.kubeconfig):
        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)

        async def degraded() -> bool:
            ann = await cluster.annotations()
            return ann.get(names.STATE) == names.STATE_DEGRADED and "manifest unknown" in ann.get(
                names.REASON, ""
            )

        await eventually(degraded, what="Degraded with the rebase error")
        ann = await cluster.annotations()
        assert ann[names.STATE] == names.STATE_DEGRADED, "retries stay Degraded, they do not flap"
        reason = ann[names.REASON]
        assert f"rebase onto {IMG_A}" in reason and "rpm-ostree rebase" in reason
        registry.push(IMG_A)
        await cluster.done("rendered-worker-1", IMG_A)
        assert names.REASON not in await cluster.annotations()
        assert host.booted_image() == IMG_A and host.reboots() == 1


async def test_missing_rendered_config_degrades_until_it_exists(
    cluster: Cluster, fake: FakeHost, emulator: Any
) -> None:
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig):
        await cluster.target(names.MODE_LEGACY, "rendered-worker-3")

        async def degraded() -> bool:
            ann = await cluster.annotations()
            return ann.get(names.STATE) == names.STATE_DEGRADED and "rendered-worker-3" in ann.get(
                names.REASON, ""
            )

        await eventually(degraded, what="Degraded naming the missing rendered config")
        mc3 = rendered("rendered-worker-3", {"/etc/three": ("3\n", 0o644)}, keys=[KEY])
        await emulator.create_object(mc3)
        await cluster.done("rendered-worker-3")
        assert fake.read("/etc/three") == b"3\n"


# Kill -9 at each host command of each flow: the daemon converges, and never reboots twice.
LEGACY_POINTS = [
    "systemctl daemon-reload",
    "systemctl mask",
    "systemctl enable",
    "rpm-ostree kargs --append-if-missing=nosmt",
    "systemctl reboot",
]
LAYERED_POINTS = [
    "update-ca-trust",
    "rpm-ostree rebase",
    "rpm-ostree kargs --append-if-missing=nosmt",
    "systemctl reboot",
]
REVERT_POINTS = ["rpm-ostree rebase", "systemctl reboot", "systemctl daemon-reload", "systemctl enable"]


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize(
    ("flow", "point"),
    [("legacy", x) for x in LEGACY_POINTS]
    + [("layered", x) for x in LAYERED_POINTS]
    + [("revert", x) for x in REVERT_POINTS],
)
async def test_kill_at_each_step_converges(
    cluster: Cluster, fake: FakeHost, flow: str, point: str, when: str
) -> None:
    await cluster.configmap(names.OSIMAGEURL_CM, {names.BASE_OS_CONTAINER_IMAGE_KEY: STOCK_IMAGE})
    await cluster.configmap(names.NODE_CERTIFICATES_CM, {"user-ca-bundle.crt": "U\n"})
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig) as handle:
        if flow == "revert":
            await cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
            await cluster.done("rendered-worker-1", IMG_A)
        reboots = fake.reboots()
        fake.kill_daemon_at(point, when)  # type: ignore[arg-type]
        if flow == "layered":
            await cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
            await cluster.done("rendered-worker-1", IMG_A)
            assert fake.booted_image() == IMG_A and fake.read(p.SSH_KEYS_FILE) == (KEY + "\n").encode()
            assert fake.kargs() == ["root=/dev/vda4", "rw", "nosmt"]
        else:
            await cluster.target(names.MODE_LEGACY, "rendered-worker-1")
            await cluster.done("rendered-worker-1")
            assert_legacy_mc1(fake)
            assert fake.booted_image() == STOCK_IMAGE
        assert fake.read(p.USER_CA_PATH) == b"U\n"
        assert fake.kills_pending() == 0, "the kill point was never reached"
        assert -9 in handle.exit_codes
        assert fake.reboots() == reboots + 1
