"""Carry out a journalled plan on the host, one step at a time.

Before a step runs, the plan is on the host with the steps already done; after it, the count moves on.
A reboot step records the boot id it was requested from and raises :class:`RebootRequested` once the
host accepted the reboot: the caller exits and is started again, and the journal tells the new process
where to go on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from mcosup.daemon import plan as p
from mcosup.daemon.host import Host, HostError
from mcosup.daemon.hostfacts import same_image
from mcosup.daemon.journal import DaemonState, Journal, PlanRecord
from mcosup.daemon.steps import (
    DaemonReload,
    Kargs,
    Rebase,
    Reboot,
    RecordApplied,
    RemoveDir,
    RemoveFile,
    ServiceAction,
    SetPasswordHash,
    SetSshKeys,
    Step,
    Systemctl,
    UpdateCaTrust,
    VerifyImage,
    WriteFile,
)
from mcosup.runtime.logs import fields

log = logging.getLogger(__name__)

Track = Literal["plan", "certs", "restore"]
OnReboot = Callable[[Reboot], Awaitable[None]]


class RebootRequested(Exception):
    """The host is rebooting; the daemon process must stop so it is started again after boot."""


class StepFailed(Exception):
    """A step failed; ``replan`` drops the journalled plan so the next attempt plans afresh."""

    def __init__(self, message: str, *, replan: bool = False):
        super().__init__(message)
        self.replan = replan


async def run_record(
    host: Host,
    journal: Journal,
    state: DaemonState,
    track: Track,
    *,
    on_reboot: OnReboot,
    node: str = "",
) -> None:
    """Run the journalled plan of ``track`` from its first step not done to the end."""
    record: PlanRecord | None = getattr(state, track)
    assert record is not None
    total = len(record.steps)
    for index in range(record.done, total):
        step = record.steps[index]
        where = fields(node=node, step=f"{index + 1}/{total}", plan=record.key)
        if isinstance(step, Reboot):
            if record.reboot_from is not None and host.boot_id() != record.reboot_from:
                log.info("reboot done (booted %s)", host.boot_id(), extra=where)
            else:
                record.reboot_from = host.boot_id()
                journal.save(state)
                await on_reboot(step)
                log.info("rebooting: %s", step.reason, extra=where)
                await host.reboot()
                raise RebootRequested(step.reason)
        else:
            log.info("%s", step.describe(), extra=where)
            try:
                await apply_step(host, state, step)
            except HostError as exc:
                raise StepFailed(f"step {index + 1}/{total} ({step.describe()}) failed: {exc}") from exc
            except StepFailed as exc:
                if exc.replan:
                    setattr(state, track, None)
                    journal.save(state)
                raise
        record.done = index + 1
        if index + 1 == total:
            setattr(state, track, None)
        journal.save(state)
    setattr(state, track, None)


async def apply_step(host: Host, state: DaemonState, step: Step) -> None:
    """One idempotent step; running it a second time changes nothing more."""
    match step:
        case WriteFile():
            host.write_file(step.path, step.contents, step.mode, step.user, step.group)
        case RemoveFile():
            host.remove_file(step.path)
        case RemoveDir():
            host.remove_dir(step.path)
        case Systemctl():
            await host.systemctl(step.action, step.units)
        case DaemonReload():
            await host.daemon_reload()
        case ServiceAction():
            await host.service(step.action, step.unit)
        case SetSshKeys():
            data = "".join(k.rstrip("\n") + "\n" for k in step.keys).encode()
            # sshd's StrictModes refuses keys in a directory others can write: 0700, owned by the user.
            host.make_dir(p.SSH_KEYS_FILE.rsplit("/", 1)[0], 0o700, step.user, step.user)
            host.write_file(p.SSH_KEYS_FILE, data, 0o600, step.user, step.user)
        case SetPasswordHash():
            host.set_password_hash(step.user, step.password_hash)
        case Kargs():
            booted, staged = await host.deployments()
            nxt = staged or booted
            have = set(nxt.kargs) if nxt else set()
            append = [a for a in step.append if a not in have]
            delete = [d for d in step.delete if d in have]
            if append or delete:
                await host.kargs(append, delete)
        case Rebase():
            booted, staged = await host.deployments()
            if same_image(staged, step.image) or (staged is None and same_image(booted, step.image)):
                return
            await host.rebase(step.image)
        case VerifyImage():
            booted, _ = await host.deployments()
            if not same_image(booted, step.image):
                running = booted.image if booted and booted.image else "no container image"
                raise StepFailed(
                    f"after the reboot the host runs {running}, not {step.image}; the daemon rebases again",
                    replan=True,
                )
        case UpdateCaTrust():
            await host.update_ca_trust()
        case RecordApplied():
            state.applied = step.applied
        case Reboot():
            raise AssertionError("reboots are run by run_record")
        case _:
            raise AssertionError(f"unknown step {step!r}")
