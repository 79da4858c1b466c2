"""The daemon's health gate (contract 12.3) on a fake host: a new image that does not become healthy is
rolled back to the previous deployment and reported ``RolledBack``, the report stays while the target
is that image, and another target is applied as usual. The wall clock is the test's: a deadline passes
when the test says so."""

from __future__ import annotations

import pytest
from daemon_kit import MC1, MC2, NODE, MemoryCluster, rendered

from mcosup.daemon.agent import Agent
from mcosup.daemon.executor import RebootRequested
from mcosup.daemon.host import LocalHost
from mcosup.daemon.journal import ROLLBACK_FILE, STATE_FILE, Journal
from mcosup.model import names
from mcosup.runtime.settings import AgentSettings
from mcosup.sim.fakehost import STOCK_IMAGE, FakeHost

IMG_A = "registry.local:5000/os/worker@sha256:" + "a" * 64
BAD = "registry.local:5000/os/worker@sha256:" + "b" * 64
IMG_C = "registry.local:5000/os/worker@sha256:" + "c" * 64
#: Contract 12.2: a registries.conf change is applied live (the image staged for the next boot).
REGISTRIES = "/etc/containers/registries.conf"
LIVE_1 = rendered("rendered-worker-live-1", files={REGISTRIES: ("[registries]\n", 0o644)})
LIVE_2 = rendered("rendered-worker-live-2", files={REGISTRIES: ("[registries]\nmirror\n", 0o644)})
POLICY = """
files:
  - path: /etc/containers/registries.conf
    actions: [{type: Reload, reload: {serviceName: crio.service}}]
"""
IMG_LIVE = "registry.local:5000/os/worker@sha256:" + "d" * 64


class Wall:
    """Wall-clock seconds that move only when the test moves them."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cluster() -> MemoryCluster:
    c = MemoryCluster()
    c.mcs = {m["metadata"]["name"]: m for m in (MC1, MC2)}
    c.health_seconds = 300
    return c


@pytest.fixture
def wall() -> Wall:
    return Wall()


def agent(cluster: MemoryCluster, fake: FakeHost, wall: Wall) -> Agent:
    host = LocalHost(fake.rootfs, env=fake.env())
    settings = AgentSettings(backoff_initial=0, backoff_max=0)
    return Agent(cluster, host, node_name=NODE, settings=settings, wall=wall)


async def run_through_reboots(cluster: MemoryCluster, fake: FakeHost, wall: Wall, *, passes: int = 4) -> int:
    """Reconcile with a fresh agent after each reboot until a pass ends; returns the reboots."""
    for restarts in range(passes):
        try:
            await agent(cluster, fake, wall).reconcile()
            return restarts
        except RebootRequested:
            continue
    pytest.fail(f"no pass ended: {cluster.annotations()}")


def set_ready(cluster: MemoryCluster, ready: bool) -> None:
    cluster.node_obj["status"] = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}


async def layered_on_a(cluster: MemoryCluster, fake: FakeHost, wall: Wall) -> None:
    cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
    await run_through_reboots(cluster, fake, wall)
    assert cluster.annotations()[names.STATE] == names.STATE_DONE and fake.booted_image() == IMG_A


async def give_bad_image(cluster: MemoryCluster, fake: FakeHost, wall: Wall) -> None:
    """The node runs A; it is given BAD, which fails the host's boot-complete check; every wait for a
    change lets the wall clock run that long."""
    await layered_on_a(cluster, fake, wall)
    bad_next(cluster, fake, wall, "rendered-worker-2")


def bad_next(cluster: MemoryCluster, fake: FakeHost, wall: Wall, config: str) -> None:
    """The node is given BAD for ``config``; every wait for a change lets the wall clock run that long."""
    fake.boots_unhealthy(BAD)
    cluster.wait_changed = lambda seconds: _advance(wall, seconds)  # type: ignore[method-assign]
    cluster.target(names.MODE_LAYERED, config, BAD)


async def test_an_image_that_fails_its_boot_check_is_rolled_back_and_reported(
    cluster: MemoryCluster, fake: FakeHost, wall: Wall
) -> None:
    # The agent boots BAD, finds it unhealthy and waits for the deadline (300s; the wall moves on).
    await give_bad_image(cluster, fake, wall)
    assert await run_through_reboots(cluster, fake, wall) == 2  # into BAD, then back
    assert fake.booted_image() == IMG_A and fake.reboots() == 3
    ann = cluster.annotations()
    assert ann[names.STATE] == names.STATE_DEGRADED
    assert ann[names.REASON] == (
        f"RolledBack: {BAD} did not become healthy: boot-complete.target is not active "
        f"(systemctl is-active boot-complete.target failed with exit status 1: error: boot-complete.target "
        f"failed: a health check of image {BAD} failed) within 300s of booting it"
    )
    # current* still name what runs; the journal is back on A's config.
    assert ann[names.CURRENT_IMAGE] == IMG_A and ann[names.CURRENT_CONFIG] == "rendered-worker-1"
    applied = Journal(LocalHost(fake.rootfs)).load().applied
    assert applied is not None and applied.image == IMG_A
    # While the target is still BAD, every pass reports the same and touches nothing.
    log = len(fake.command_log())
    assert await run_through_reboots(cluster, fake, wall) == 0
    assert [c for c in fake.command_log()[log:] if c[1] not in ("status", "kargs")] == []
    assert cluster.annotations()[names.REASON].startswith(f"RolledBack: {BAD}")


async def _advance(wall: Wall, seconds: float) -> None:
    wall.now += seconds


async def test_a_node_that_is_not_ready_in_time_is_rolled_back(
    cluster: MemoryCluster, fake: FakeHost, wall: Wall
) -> None:
    await layered_on_a(cluster, fake, wall)
    set_ready(cluster, False)
    cluster.wait_changed = lambda seconds: _advance(wall, seconds)  # type: ignore[method-assign]
    cluster.target(names.MODE_LAYERED, "rendered-worker-2", BAD)
    await run_through_reboots(cluster, fake, wall)
    assert fake.booted_image() == IMG_A
    assert cluster.annotations()[names.REASON] == (
        f"RolledBack: {BAD} did not become healthy: node {NODE} is not Ready within 300s of booting it"
    )


async def test_a_node_healthy_before_the_deadline_reports_done(
    cluster: MemoryCluster, fake: FakeHost, wall: Wall
) -> None:
    await layered_on_a(cluster, fake, wall)
    set_ready(cluster, False)

    async def ready_after_a_minute(seconds: float) -> None:
        wall.now += 60
        set_ready(cluster, True)

    cluster.wait_changed = ready_after_a_minute  # type: ignore[method-assign]
    cluster.target(names.MODE_LAYERED, "rendered-worker-2", IMG_C)
    await run_through_reboots(cluster, fake, wall)
    ann = cluster.annotations()
    assert ann[names.STATE] == names.STATE_DONE and ann[names.CURRENT_IMAGE] == IMG_C
    assert fake.booted_image() == IMG_C and fake.reboots() == 2


async def test_after_a_rollback_a_new_image_or_the_old_target_is_applied(
    cluster: MemoryCluster, fake: FakeHost, wall: Wall
) -> None:
    await give_bad_image(cluster, fake, wall)
    await run_through_reboots(cluster, fake, wall)
    assert cluster.annotations()[names.REASON].startswith("RolledBack:")
    # A resume gives the node back what it runs: Done, nothing rebooted.
    reboots = fake.reboots()
    cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
    await run_through_reboots(cluster, fake, wall)
    ann = cluster.annotations()
    assert ann[names.STATE] == names.STATE_DONE and names.REASON not in ann and fake.reboots() == reboots
    # A fixed image rolls on.
    cluster.target(names.MODE_LAYERED, "rendered-worker-2", IMG_C)
    await run_through_reboots(cluster, fake, wall)
    assert cluster.annotations()[names.CURRENT_IMAGE] == IMG_C and fake.booted_image() == IMG_C


async def test_a_daemon_killed_between_deciding_and_rolling_back_rolls_back_once(
    cluster: MemoryCluster, fake: FakeHost, wall: Wall
) -> None:
    await give_bad_image(cluster, fake, wall)
    with pytest.raises(RebootRequested):
        await agent(cluster, fake, wall).reconcile()  # into BAD
    fake.fail("systemctl reboot", "the host refused to reboot")
    with pytest.raises(Exception, match="refused to reboot"):
        await agent(cluster, fake, wall).reconcile()  # unhealthy: rolled back, but the reboot failed
    fake.fail("systemctl reboot", None)
    assert await run_through_reboots(cluster, fake, wall) == 1
    assert fake.booted_image() == IMG_A
    assert sum(c[:2] == ["rpm-ostree", "rollback"] for c in fake.command_log()) == 1
    assert cluster.annotations()[names.REASON].startswith(f"RolledBack: {BAD}")


async def live_policy_on_a(cluster: MemoryCluster, fake: FakeHost, wall: Wall) -> None:
    """The node boots A on rendered-worker-live-1; a policy covers registries.conf (contract 12.2)."""
    cluster.mcs.update({m["metadata"]["name"]: m for m in (LIVE_1, LIVE_2)})
    cluster.configmap_data(names.NODE_DISRUPTION_POLICY_CM, {names.NODE_DISRUPTION_POLICY_KEY: POLICY})
    cluster.target(names.MODE_LAYERED, "rendered-worker-live-1", IMG_A)
    await run_through_reboots(cluster, fake, wall)


async def bad_image_after_a_live_apply(cluster: MemoryCluster, fake: FakeHost, wall: Wall) -> None:
    """The node boots A; a change the disruption policy covers gives IMG_LIVE, applied live (staged for
    the next boot); then BAD, for the same config, is booted, fails its check and is rolled back."""
    await live_policy_on_a(cluster, fake, wall)
    cluster.target(names.MODE_LAYERED, "rendered-worker-live-2", IMG_LIVE)
    assert await run_through_reboots(cluster, fake, wall) == 0
    ann = cluster.annotations()
    assert (ann[names.STATE], ann[names.CURRENT_IMAGE]) == (names.STATE_DONE, IMG_LIVE)
    assert ann[names.LAST_APPLIED_WITHOUT_REBOOT] == "rendered-worker-live-2: Reload crio.service"
    assert (fake.booted_image(), fake.staged_image(), fake.reboots()) == (IMG_A, IMG_LIVE, 1)
    bad_next(cluster, fake, wall, "rendered-worker-live-2")
    assert await run_through_reboots(cluster, fake, wall) == 2  # into BAD, then back
    assert cluster.annotations()[names.REASON].startswith(f"RolledBack: {BAD} did not become healthy")


def runs_what_it_reports(cluster: MemoryCluster, fake: FakeHost) -> None:
    """The node boots its currentImage, or has it staged for the next boot (a live apply), and has
    its currentConfig's files."""
    ann = cluster.annotations()
    assert (ann[names.CURRENT_CONFIG], ann[names.CURRENT_IMAGE]) == ("rendered-worker-live-2", IMG_LIVE)
    assert (fake.staged_image() or fake.booted_image()) == IMG_LIVE
    assert fake.read(REGISTRIES) == b"[registries]\nmirror\n"


async def reboot(fake: FakeHost) -> None:
    """Someone reboots the node (an admin, a kernel panic)."""
    await LocalHost(fake.rootfs, env=fake.env()).reboot()


async def test_a_rollback_after_a_live_apply_leaves_the_live_applied_image_staged(
    cluster: MemoryCluster, fake: FakeHost, wall: Wall
) -> None:
    # The rollback boots A again (the deployment booted before BAD); BAD's rebase had replaced the
    # staged IMG_LIVE, which the node still reports as current: it is staged again, with no reboot.
    await bad_image_after_a_live_apply(cluster, fake, wall)
    assert fake.booted_image() == IMG_A and fake.reboots() == 3
    runs_what_it_reports(cluster, fake)
    # A reboot while the target is still BAD boots what the node reports; the daemon reboots nothing.
    await reboot(fake)
    assert await run_through_reboots(cluster, fake, wall) == 0
    assert fake.booted_image() == IMG_LIVE and fake.reboots() == 4
    runs_what_it_reports(cluster, fake)
    assert cluster.annotations()[names.REASON].startswith(f"RolledBack: {BAD}")
    # The resume gives the node back what it runs: Done at once.
    cluster.target(names.MODE_LAYERED, "rendered-worker-live-2", IMG_LIVE)
    assert await run_through_reboots(cluster, fake, wall) == 0
    ann = cluster.annotations()
    assert ann[names.STATE] == names.STATE_DONE and names.REASON not in ann and fake.reboots() == 4


async def test_a_resume_after_a_rollback_from_a_live_apply_needs_no_reboot(
    cluster: MemoryCluster, fake: FakeHost, wall: Wall
) -> None:
    await bad_image_after_a_live_apply(cluster, fake, wall)
    cluster.target(names.MODE_LAYERED, "rendered-worker-live-2", IMG_LIVE)
    assert await run_through_reboots(cluster, fake, wall) == 0
    ann = cluster.annotations()
    assert ann[names.STATE] == names.STATE_DONE and names.REASON not in ann and fake.reboots() == 3
    runs_what_it_reports(cluster, fake)
    # The next reboot boots the image the live apply staged; the daemon verifies it and stays Done.
    await reboot(fake)
    assert await run_through_reboots(cluster, fake, wall) == 0
    assert fake.booted_image() == IMG_LIVE and fake.reboots() == 4
    assert cluster.annotations()[names.STATE] == names.STATE_DONE
    runs_what_it_reports(cluster, fake)


async def test_a_live_apply_boots_nothing_so_it_is_not_health_gated(
    cluster: MemoryCluster, fake: FakeHost, wall: Wall
) -> None:
    # Contract 12.2: the image is only staged; a node that is not Ready meanwhile (for reasons of its
    # own) has nothing to roll back from: a rollback would drop the staged image and boot the deployment
    # before the one running.
    await live_policy_on_a(cluster, fake, wall)
    set_ready(cluster, False)
    cluster.wait_changed = lambda seconds: _advance(wall, seconds)  # type: ignore[method-assign]
    cluster.target(names.MODE_LAYERED, "rendered-worker-live-2", IMG_LIVE)
    assert await run_through_reboots(cluster, fake, wall) == 0
    ann = cluster.annotations()
    assert (ann[names.STATE], ann[names.CURRENT_IMAGE]) == (names.STATE_DONE, IMG_LIVE)
    assert (fake.booted_image(), fake.staged_image(), fake.reboots()) == (IMG_A, IMG_LIVE, 1)
    assert not any(c[:2] == ["rpm-ostree", "rollback"] for c in fake.command_log())


#: What legacy mode wrote for MC1 (rendered-worker-1): its files, unit files and drop-ins.
LEGACY_FILES = {
    "/etc/app/app.conf": (b"x=1\n", 0o640),
    "/etc/old.conf": (b"old\n", 0o600),
    "/etc/systemd/system/app.service": (
        b"[Service]\nExecStart=/bin/app\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    ),
    "/etc/systemd/system/docker.service.d/10-opts.conf": (b"[Service]\n", 0o644),
}


def has_the_legacy_config(fake: FakeHost) -> None:
    files = fake.files()
    assert {path: files.get(path) for path in LEGACY_FILES} == LEGACY_FILES
    assert fake.unit_enabled("app.service") and fake.unit_masked("crio.service")


async def first_image_on_a_legacy_node_is_bad(cluster: MemoryCluster, fake: FakeHost, wall: Wall) -> None:
    """A legacy node (rendered-worker-1's files and units, the stock OS) is given its first layered
    image, BAD: leaving legacy mode gives /etc back to the image before the reboot; BAD fails its
    boot-complete check and the host is rolled back to the stock deployment."""
    cluster.target(names.MODE_LEGACY, "rendered-worker-1")
    await run_through_reboots(cluster, fake, wall)
    has_the_legacy_config(fake)
    bad_next(cluster, fake, wall, "rendered-worker-1")


async def test_a_rollback_from_a_legacy_nodes_first_image_gives_back_its_files_and_units(
    cluster: MemoryCluster, fake: FakeHost, wall: Wall
) -> None:
    # Contract 12.3: after the rollback the node runs what it reports, the legacy config on the stock OS.
    await first_image_on_a_legacy_node_is_bad(cluster, fake, wall)
    assert await run_through_reboots(cluster, fake, wall) == 2  # into BAD, then back
    assert fake.booted_image() == STOCK_IMAGE and fake.staged_image() is None and fake.reboots() == 3
    ann = cluster.annotations()
    assert ann[names.REASON].startswith(f"RolledBack: {BAD} did not become healthy")
    assert ann[names.CURRENT_CONFIG] == "rendered-worker-1" and names.CURRENT_IMAGE not in ann
    has_the_legacy_config(fake)
    # While the target is still BAD, every pass reports the same and touches nothing.
    log = len(fake.command_log())
    assert await run_through_reboots(cluster, fake, wall) == 0
    assert [c for c in fake.command_log()[log:] if c[1] not in ("status", "kargs")] == []
    # The resume gives the node back what it runs: Done, with no reboot.
    cluster.target(names.MODE_LEGACY, "rendered-worker-1")
    assert await run_through_reboots(cluster, fake, wall) == 0
    ann = cluster.annotations()
    assert ann[names.STATE] == names.STATE_DONE and names.REASON not in ann and fake.reboots() == 3
    has_the_legacy_config(fake)
    # The fixed image rolls on: booted, and /etc is the image's again.
    cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_C)
    assert await run_through_reboots(cluster, fake, wall) == 1
    ann = cluster.annotations()
    assert (ann[names.STATE], ann[names.CURRENT_IMAGE]) == (names.STATE_DONE, IMG_C)
    assert fake.booted_image() == IMG_C and fake.read("/etc/app/app.conf") is None


async def test_a_restore_after_a_rollback_that_fails_half_way_resumes_where_it_stopped(
    cluster: MemoryCluster, fake: FakeHost, wall: Wall
) -> None:
    await first_image_on_a_legacy_node_is_bad(cluster, fake, wall)
    fake.fail("systemctl enable", "the host's systemd is not answering")
    reloads = fake.service_actions().count("daemon-reload")
    assert await run_through_reboots(cluster, fake, wall) == 2
    # The rollback is what the node reports (its pool stays halted) while the restore is retried.
    assert cluster.annotations()[names.REASON].startswith(f"RolledBack: {BAD}")
    fake.fail("systemctl enable", None)
    assert await run_through_reboots(cluster, fake, wall) == 0
    has_the_legacy_config(fake)
    # Resumed at the step that failed: the unit files were not written (nor reloaded) a second time.
    assert fake.service_actions().count("daemon-reload") == reloads + 1
    assert cluster.annotations()[names.REASON].startswith(f"RolledBack: {BAD}")


async def test_a_rollback_is_remembered_although_it_takes_etc_back_with_the_journal_in_it(
    cluster: MemoryCluster, fake: FakeHost, wall: Wall
) -> None:
    # A real host's rollback boots the stock deployment with its own /etc as it left it: the journal
    # there is the one written just before the reboot into BAD (the plan at its reboot, the gate open).
    await first_image_on_a_legacy_node_is_bad(cluster, fake, wall)
    journal = fake.rootfs / STATE_FILE.lstrip("/")
    with pytest.raises(RebootRequested):
        await agent(cluster, fake, wall).reconcile()  # into BAD
    left_behind = journal.read_bytes()
    with pytest.raises(RebootRequested):
        await agent(cluster, fake, wall).reconcile()  # BAD is unhealthy: rolled back
    journal.write_bytes(left_behind)
    assert await run_through_reboots(cluster, fake, wall) == 0
    # BAD is not booted again: the node runs and reports the legacy config, and the rollback.
    assert fake.booted_image() == STOCK_IMAGE and fake.staged_image() is None and fake.reboots() == 3
    ann = cluster.annotations()
    assert ann[names.REASON].startswith(f"RolledBack: {BAD} did not become healthy")
    assert ann[names.CURRENT_CONFIG] == "rendered-worker-1" and names.CURRENT_IMAGE not in ann
    has_the_legacy_config(fake)
    # The resume is Done at once; the record outside /etc goes with the rollback.
    cluster.target(names.MODE_LEGACY, "rendered-worker-1")
    assert await run_through_reboots(cluster, fake, wall) == 0
    assert cluster.annotations()[names.STATE] == names.STATE_DONE and fake.reboots() == 3
    assert fake.read(ROLLBACK_FILE) is None
