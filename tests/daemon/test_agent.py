"""The agent and executor on a fake host, with an in-memory cluster at the seam the daemon owns.

Reboots are process restarts here too: when the agent raises RebootRequested the test builds a fresh
Agent (nothing survives but the host tree and the fake OS state), as the kubelet starts a new pod.
"""

from __future__ import annotations

import json

import pytest
from daemon_kit import KEY, MC1, MC2, NODE, MemoryCluster, rendered

from mcosup.daemon import plan as p
from mcosup.daemon.agent import Agent
from mcosup.daemon.certplan import KUBELET_CA_PATH, USER_CA_PATH
from mcosup.daemon.executor import RebootRequested
from mcosup.daemon.host import LocalHost
from mcosup.daemon.journal import STATE_FILE, Journal
from mcosup.model import names
from mcosup.runtime.settings import AgentSettings
from mcosup.sim.fakehost import STOCK_IMAGE, FakeHost

IMG_A = "registry.local:5000/os/worker@sha256:" + "a" * 64
IMG_B = "registry.local:5000/os/worker@sha256:" + "b" * 64


@pytest.fixture
def cluster() -> MemoryCluster:
    return MemoryCluster()


def agent(cluster: MemoryCluster, fake: FakeHost) -> Agent:
    host = LocalHost(fake.rootfs, env=fake.env())
    return Agent(cluster, host, node_name=NODE, settings=AgentSettings(backoff_initial=0, backoff_max=0))


async def converge(cluster: MemoryCluster, fake: FakeHost, *, passes: int = 6) -> int:
    """Reconcile with fresh agents across reboots until a pass changes nothing; returns restarts."""
    restarts = 0
    for _ in range(passes):
        try:
            await agent(cluster, fake).reconcile()
        except RebootRequested:
            restarts += 1
            continue
        if cluster.annotations().get(names.STATE) == names.STATE_DONE:
            return restarts
    pytest.fail(f"did not converge: {cluster.annotations()}")


async def test_legacy_apply_then_new_config(cluster: MemoryCluster, fake: FakeHost) -> None:
    cluster.mcs = {m["metadata"]["name"]: m for m in (MC1, MC2)}
    cluster.target(names.MODE_LEGACY, "rendered-worker-1")
    assert await converge(cluster, fake) == 1
    assert fake.read("/etc/app/app.conf") == b"x=1\n" and fake.mode("/etc/app/app.conf") == 0o640
    assert fake.mode("/etc/old.conf") == 0o600
    assert fake.read("/etc/systemd/system/docker.service.d/10-opts.conf") == b"[Service]\n"
    assert fake.unit_enabled("app.service") and fake.unit_masked("crio.service")
    assert fake.kargs() == ["root=/dev/vda4", "rw", "nosmt"]
    assert fake.read("/home/core/.ssh/authorized_keys") == (KEY + "\n").encode()
    assert b"core:$6$abc$def:" in (fake.read("/etc/shadow") or b"")
    ann = cluster.annotations()
    assert ann[names.CURRENT_CONFIG] == "rendered-worker-1" and names.CURRENT_IMAGE not in ann
    assert {names.STATE: names.STATE_REBOOTING} in cluster.patches

    cluster.target(names.MODE_LEGACY, "rendered-worker-2")
    assert await converge(cluster, fake) == 1
    assert fake.read("/etc/app/app.conf") == b"x=2\n" and fake.mode("/etc/app/app.conf") == 0o644
    assert fake.read("/etc/old.conf") is None
    assert fake.read("/etc/systemd/system/app.service") is None and not fake.unit_enabled("app.service")
    assert fake.read("/etc/systemd/system/docker.service.d/10-opts.conf") is None
    assert fake.unit_enabled("docker.service") and not fake.unit_masked("crio.service")
    assert fake.kargs() == ["root=/dev/vda4", "rw", "mitigations=off"]
    assert fake.read("/home/core/.ssh/authorized_keys") == (KEY + "\nssh-rsa BBBB second\n").encode()
    assert b"core:*:" in (fake.read("/etc/shadow") or b"")  # the hash went with the config
    assert cluster.annotations()[names.CURRENT_CONFIG] == "rendered-worker-2"
    # Converged: another pass does nothing at all.
    log = len(fake.command_log())
    await agent(cluster, fake).reconcile()
    assert [c for c in fake.command_log()[log:] if c[1] not in ("status", "kargs")] == []


async def test_layered_rebase_once_and_no_config_files(cluster: MemoryCluster, fake: FakeHost) -> None:
    cluster.mcs = {m["metadata"]["name"]: m for m in (MC1, MC2)}
    cluster.configmap_data(names.NODE_CERTIFICATES_CM, {"kubelet-ca.crt": "KCA"})
    before = fake.files()
    cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
    assert await converge(cluster, fake) == 1
    assert fake.booted_image() == IMG_A and fake.reboots() == 1
    assert fake.kargs() == ["root=/dev/vda4", "rw", "nosmt"]
    assert b"core:$6$abc$def:" in (fake.read("/etc/shadow") or b"")
    ann = cluster.annotations()
    assert ann[names.CURRENT_IMAGE] == IMG_A and ann[names.CURRENT_CONFIG] == "rendered-worker-1"
    # An identical target again: nothing rebased, nothing rebooted.
    await converge(cluster, fake)
    assert fake.reboots() == 1 and sum(c[:2] == ["rpm-ostree", "rebase"] for c in fake.command_log()) == 1

    cluster.target(names.MODE_LAYERED, "rendered-worker-2", IMG_B)
    await converge(cluster, fake)
    assert fake.booted_image() == IMG_B and fake.reboots() == 2
    changed = {path for path, v in fake.files().items() if before.get(path) != v}
    # Only non-image content and the daemon's own state: no MachineConfig file, no unit.
    assert changed == {KUBELET_CA_PATH, p.SSH_KEYS_FILE, STATE_FILE}
    assert b"core:*:" in (fake.read("/etc/shadow") or b"")  # MC2 has no hash: locked again
    assert not fake.unit_enabled("app.service") and not fake.unit_masked("crio.service")


async def test_revert_returns_to_stock_and_reapplies(cluster: MemoryCluster, fake: FakeHost) -> None:
    cluster.mcs = {m["metadata"]["name"]: m for m in (MC1,)}
    cluster.configmap_data(names.OSIMAGEURL_CM, {names.BASE_OS_CONTAINER_IMAGE_KEY: STOCK_IMAGE})
    cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
    await converge(cluster, fake)
    assert fake.read("/etc/app/app.conf") is None

    cluster.target(names.MODE_LEGACY, "rendered-worker-1")
    assert await converge(cluster, fake) == 1
    assert fake.booted_image() == STOCK_IMAGE
    assert fake.read("/etc/app/app.conf") == b"x=1\n" and fake.unit_enabled("app.service")
    assert fake.read(p.REVERT_FILE) is None
    ann = cluster.annotations()
    assert names.CURRENT_IMAGE not in ann and ann[names.STATE] == names.STATE_DONE


async def test_revert_file_holds_the_target_while_reverting(cluster: MemoryCluster, fake: FakeHost) -> None:
    cluster.mcs = {"rendered-worker-1": MC1}
    cluster.configmap_data(names.OSIMAGEURL_CM, {names.BASE_OS_CONTAINER_IMAGE_KEY: STOCK_IMAGE})
    cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
    await converge(cluster, fake)
    cluster.target(names.MODE_LEGACY, "rendered-worker-1")
    with pytest.raises(RebootRequested):
        await agent(cluster, fake).reconcile()
    saved = json.loads(fake.read(p.REVERT_FILE) or b"{}")
    assert saved["name"] == "rendered-worker-1" and saved["kernelArguments"] == ["nosmt"]


async def test_failed_rebase_degrades_and_recovers(cluster: MemoryCluster, fake: FakeHost) -> None:
    cluster.mcs = {"rendered-worker-1": MC1}
    cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
    fake.fail("rpm-ostree rebase", "reading manifest sha256:aaa: manifest unknown")
    a = agent(cluster, fake)
    with pytest.raises(Exception, match="manifest unknown") as info:
        await a.reconcile()
    await a._degraded(info.value, 1)
    ann = cluster.annotations()
    assert ann[names.STATE] == names.STATE_DEGRADED
    assert "rebase onto " + IMG_A in ann[names.REASON] and "manifest unknown" in ann[names.REASON]
    fake.fail("rpm-ostree rebase", None)
    await converge(cluster, fake)
    assert fake.booted_image() == IMG_A and names.REASON not in cluster.annotations()


async def test_missing_rendered_config_is_degraded_with_the_name(
    cluster: MemoryCluster, fake: FakeHost
) -> None:
    cluster.target(names.MODE_LEGACY, "rendered-worker-7")
    a = agent(cluster, fake)
    with pytest.raises(p.PlanError) as info:
        await a.reconcile()
    await a._degraded(info.value, 1)
    assert "rendered MachineConfig rendered-worker-7" in cluster.annotations()[names.REASON]


async def test_certificates_every_mode_and_registry_removal(cluster: MemoryCluster, fake: FakeHost) -> None:
    cluster.configmap_data(
        names.NODE_CERTIFICATES_CM,
        {
            "registry-a.example.com..5000.crt": "RA",
            "registry-b.example.com.crt": "RB",
            "user-ca-bundle.crt": "U",
        },
    )
    # No desired config at all (not yet managed): certificates still land.
    await agent(cluster, fake).reconcile()
    assert fake.read("/etc/docker/certs.d/a.example.com:5000/ca.crt") == b"RA"
    assert fake.read(USER_CA_PATH) == b"U"
    assert fake.read("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem") == b"U"
    cluster.configmap_data(names.NODE_CERTIFICATES_CM, {"registry-b.example.com.crt": "RB2"})
    await agent(cluster, fake).reconcile()
    assert not (fake.rootfs / "etc/docker/certs.d/a.example.com:5000").exists()
    assert fake.read("/etc/docker/certs.d/b.example.com/ca.crt") == b"RB2"
    assert fake.read(USER_CA_PATH) is None
    assert fake.read("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem") == b""


async def test_target_change_mid_plan_removes_what_the_abandoned_plan_wrote(
    cluster: MemoryCluster, fake: FakeHost
) -> None:
    cluster.mcs = {m["metadata"]["name"]: m for m in (MC1, MC2)}
    cluster.target(names.MODE_LEGACY, "rendered-worker-1")
    fake.fail("systemctl daemon-reload", "simulated failure after the files were written")
    with pytest.raises(Exception, match="simulated"):
        await agent(cluster, fake).reconcile()
    assert fake.read("/etc/old.conf") == b"old\n"
    fake.fail("systemctl daemon-reload", None)
    cluster.target(names.MODE_LEGACY, "rendered-worker-2")
    await converge(cluster, fake)
    assert fake.read("/etc/old.conf") is None and fake.read("/etc/systemd/system/app.service") is None
    assert not fake.unit_enabled("app.service")
    assert Journal(LocalHost(fake.rootfs)).load().plan is None


async def test_unwritable_path_is_degraded_with_the_path(cluster: MemoryCluster, fake: FakeHost) -> None:
    cluster.mcs = {
        "rendered-bad": rendered("rendered-bad", files={"/etc/os-release/extra.conf": ("x", 0o644)})
    }
    cluster.target(names.MODE_LEGACY, "rendered-bad")
    a = agent(cluster, fake)
    with pytest.raises(Exception, match="not a directory") as info:
        await a.reconcile()
    await a._degraded(info.value, 1)
    reason = cluster.annotations()[names.REASON]
    assert (
        "write /etc/os-release/extra.conf" in reason
        and "/etc/os-release on the host is not a directory" in reason
    )
