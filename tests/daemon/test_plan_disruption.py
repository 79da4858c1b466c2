"""Table tests for the daemon's plan under a node disruption policy (contract 12.2)."""

from __future__ import annotations

import dataclasses

from mcosup.daemon import plan as p
from mcosup.daemon.hostfacts import Applied, Deployment, DiskFile, HostFacts
from mcosup.daemon.steps import DaemonReload, Rebase, RecordApplied, ServiceAction, Step, WriteFile
from mcosup.model import disruption, names
from mcosup.model.hostconfig import FileSpec, HostConfig, UnitSpec
from mcosup.model.node import NodeView

IMG_A = "registry.local:5000/os/worker@sha256:" + "a" * 64
IMG_B = "registry.local:5000/os/worker@sha256:" + "b" * 64
REGISTRIES = "/etc/containers/registries.conf"
POLICY = disruption.parse_policy(
    """
files:
  - {path: /etc/containers/registries.conf, actions: [{type: Reload, reload: {serviceName: crio.service}}]}
  - {path: /etc/app.conf, actions: [{type: Drain}]}
  - {path: /usr/share/app, actions: [{type: None}]}
units:
  - name: app.service
    actions: [{type: DaemonReload}, {type: Restart, restart: {serviceName: app.service}}]
"""
)
OLD = HostConfig(
    name="rendered-worker-1",
    files=(FileSpec(REGISTRIES, b"[registries]\n", 0o644, "core"),),
    units=(UnitSpec("app.service", "[Service]\nExecStart=/bin/app\n"),),
    kernel_arguments=("nosmt",),
)
NEW = dataclasses.replace(
    OLD, name="rendered-worker-2", files=(FileSpec(REGISTRIES, b"[registries]\nmirror\n", 0o644, "core"),)
)


def node(mode: str, config: str, image: str | None = None) -> NodeView:
    return NodeView(name="worker-0", mode=mode, desired_config=config, desired_image=image)


def disk(cfg: HostConfig) -> dict[str, DiskFile | None]:
    out: dict[str, DiskFile | None] = {f.path: DiskFile(f.contents, f.mode) for f in cfg.files}
    out.update({u.path: DiskFile((u.contents or "").encode(), 0o644) for u in cfg.units})
    return out


def legacy_facts(cfg: HostConfig = OLD) -> HostFacts:
    applied = Applied(config=cfg, mode=names.MODE_LEGACY, on_disk=cfg)
    return HostFacts(booted=Deployment(None, kargs=("rw", "nosmt")), applied=applied, disk=disk(cfg))


def layered_facts(booted: str = IMG_A, staged: str | None = None, cfg: HostConfig = OLD) -> HostFacts:
    applied = Applied(config=cfg, mode=names.MODE_LAYERED, image=booted if staged is None else staged)
    return HostFacts(
        booted=Deployment(booted, kargs=("rw", "nosmt")),
        staged=None if staged is None else Deployment(staged, kargs=("rw", "nosmt")),
        applied=applied,
    )


def steps(plan: p.Plan | None) -> tuple[Step, ...]:
    assert plan is not None
    return plan.steps


def kinds(plan: p.Plan | None) -> list[str]:
    return [s.kind for s in steps(plan)]


def test_legacy_covered_change_is_written_and_reloaded_without_a_reboot() -> None:
    plan = p.plan_config(node(names.MODE_LEGACY, NEW.name), NEW, legacy_facts(), policy=POLICY)
    assert steps(plan)[:2] == (
        WriteFile(REGISTRIES, b"[registries]\nmirror\n", 0o644, "core"),
        ServiceAction("reload", "crio.service"),
    )
    record = steps(plan)[-1]
    assert kinds(plan) == ["write-file", "service", "record-applied"]
    assert isinstance(record, RecordApplied)
    assert record.applied.live == "rendered-worker-2: Reload crio.service"


def test_legacy_reboots_without_a_policy_or_when_kernel_arguments_change_too() -> None:
    facts = legacy_facts()
    assert "reboot" in kinds(p.plan_config(node(names.MODE_LEGACY, NEW.name), NEW, facts, policy=None))
    kargs = dataclasses.replace(NEW, kernel_arguments=("nosmt", "quiet"))
    plan = p.plan_config(node(names.MODE_LEGACY, kargs.name), kargs, facts, policy=POLICY)
    assert "reboot" in kinds(plan) and "service" not in kinds(plan)
    record = steps(plan)[-1]
    assert isinstance(record, RecordApplied) and record.applied.live is None


def test_unit_change_reloads_systemd_once_then_restarts() -> None:
    new = dataclasses.replace(
        OLD, name="rendered-worker-3", units=(UnitSpec("app.service", "[Service]\nX=2\n"),)
    )
    plan = p.plan_config(node(names.MODE_LEGACY, new.name), new, legacy_facts(), policy=POLICY)
    assert kinds(plan) == ["write-file", "daemon-reload", "service", "record-applied"]
    assert DaemonReload() in steps(plan) and ServiceAction("restart", "app.service") in steps(plan)


def test_layered_stages_the_image_writes_etc_as_root_and_reloads() -> None:
    plan = p.plan_config(node(names.MODE_LAYERED, NEW.name, IMG_B), NEW, layered_facts(), policy=POLICY)
    assert steps(plan)[:3] == (
        Rebase(IMG_B),
        WriteFile(REGISTRIES, b"[registries]\nmirror\n", 0o644),  # root-owned, as the image's copy
        ServiceAction("reload", "crio.service"),
    )
    assert kinds(plan) == ["rebase", "write-file", "service", "record-applied"]
    record = steps(plan)[-1]
    assert isinstance(record, RecordApplied)
    assert (record.applied.config, record.applied.image) == (NEW, IMG_B)
    assert record.applied.live == "rendered-worker-2: Reload crio.service"


def test_layered_live_applied_waits_for_the_next_boot_then_verifies_it() -> None:
    target = node(names.MODE_LAYERED, NEW.name, IMG_B)
    pending = layered_facts(booted=IMG_A, staged=IMG_B, cfg=NEW)
    assert steps(p.plan_config(target, NEW, pending, policy=POLICY)) == ()
    booted = dataclasses.replace(pending, booted=pending.staged, staged=None)
    assert steps(p.plan_config(target, NEW, booted, policy=POLICY)) == ()
    # Rebooted without booting the staged image: stage it again, reboot and verify the booted digest.
    lost = dataclasses.replace(pending, staged=None)
    expected = ["rebase", "reboot", "verify-image", "record-applied"]
    assert kinds(p.plan_config(target, NEW, lost, policy=POLICY)) == expected


def test_layered_reboots_for_a_path_outside_etc_and_a_new_image_alone() -> None:
    usr = dataclasses.replace(NEW, files=(*NEW.files, FileSpec("/usr/share/app/x", b"x")))
    plan = p.plan_config(node(names.MODE_LAYERED, usr.name, IMG_B), usr, layered_facts(), policy=POLICY)
    assert kinds(plan) == ["rebase", "reboot", "verify-image", "record-applied"]
    same_config = p.plan_config(
        node(names.MODE_LAYERED, OLD.name, IMG_B), OLD, layered_facts(), policy=POLICY
    )
    assert kinds(same_config) == ["rebase", "reboot", "verify-image", "record-applied"]


def test_drain_and_none_run_nothing_on_the_host() -> None:
    new = dataclasses.replace(NEW, files=(*OLD.files, FileSpec("/etc/app.conf", b"a")))
    plan = p.plan_config(node(names.MODE_LEGACY, new.name), new, legacy_facts(), policy=POLICY)
    assert kinds(plan) == ["write-file", "record-applied"]
    record = steps(plan)[-1]
    assert isinstance(record, RecordApplied) and record.applied.live == "rendered-worker-2: Drain"


def test_after_a_rollback_a_live_applied_image_the_host_lost_is_staged_again() -> None:
    # The node had IMG_B applied live (staged over IMG_A); a bad image replaced that deployment and the
    # rollback booted IMG_A: IMG_B is staged again, and only then.
    live = layered_facts(booted=IMG_A, staged=IMG_B, cfg=NEW).applied
    lost = HostFacts(booted=Deployment(IMG_A))
    assert p.plan_restage(live, lost) == (Rebase(IMG_B),)
    other = HostFacts(
        booted=Deployment(IMG_A), staged=Deployment("registry.local:5000/os/other@sha256:" + "e" * 64)
    )
    assert p.plan_restage(live, other) == (Rebase(IMG_B),)
    for host in (
        HostFacts(booted=Deployment(IMG_A), staged=Deployment(IMG_B)),
        HostFacts(booted=Deployment(IMG_B)),
    ):
        assert p.plan_restage(live, host) == ()
    assert p.plan_restage(legacy_facts().applied, lost) == ()
    assert p.plan_restage(None, lost) == ()
