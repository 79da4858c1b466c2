"""The daemon's plan: which host steps take a node from what it runs to what it should run.

Pure: no I/O. ``plan_config`` turns (the Node's mode label and desired*/current* annotations, the rendered
config, what the host reports) into an ordered list of idempotent steps for contract sections 6.1-6.3;
:mod:`mcosup.daemon.certplan` does the same for 6.4. The executor persists a plan before running it, so every
step here must be safe to run twice (a crash between doing a step and recording it repeats it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from mcosup.daemon.hostfacts import Applied, DiskFile, HostFacts, same_image
from mcosup.daemon.steps import (
    DaemonReload,
    Kargs,
    Rebase,
    Reboot,
    RecordApplied,
    RemoveFile,
    ServiceAction,
    SetPasswordHash,
    SetSshKeys,
    Step,
    Systemctl,
    VerifyImage,
    WriteFile,
)
from mcosup.model import disruption, names
from mcosup.model.hostconfig import CORE_USER, HostConfig, UnitSpec
from mcosup.model.node import NodeView, Target

#: Contract 6.3: the target config persisted outside image-owned paths during a revert.
REVERT_FILE = "/etc/mco/machineconfig-revert.json"
#: Where user ``core``'s ssh keys are written (the path the MCO writes before per-file key dirs).
SSH_KEYS_FILE = f"/home/{CORE_USER}/.ssh/authorized_keys"
#: Where an ostree deployment keeps its default /etc (the image's /etc): the old side of the /etc merge.
DEFAULTS_DIR = "/usr"


class PlanError(Exception):
    """The node cannot be planned for; the message is the Degraded reason a person acts on."""


# Plans.


@dataclasses.dataclass(frozen=True)
class Plan:
    """Steps that take the node to ``target``; ``revert`` when that means leaving a layered image first
    (contract 6.3)."""

    target: Target
    steps: tuple[Step, ...]
    revert: bool = False

    def key(self) -> str:
        """Identity of this exact plan (target, revert and steps)."""
        target = json.dumps({**dataclasses.asdict(self.target), "revert": self.revert}, sort_keys=True)
        body = json.dumps([target, [s.to_json() for s in self.steps]], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def target_of(node: NodeView) -> Target | None:
    """The target the Node asks for; None while the supervisor has not given it one."""
    if node.mode is None or node.desired_config is None:
        return None
    if node.mode == names.MODE_LAYERED:
        if not node.desired_image:
            raise PlanError(
                f"node {node.name} is labelled {names.DAEMON_MODE}={names.MODE_LAYERED} without "
                f"{names.DESIRED_IMAGE}; the supervisor sets both in one patch — check its logs"
            )
        return Target(names.MODE_LAYERED, node.desired_config, node.desired_image)
    if node.mode == names.MODE_LEGACY:
        return Target(names.MODE_LEGACY, node.desired_config)
    raise PlanError(
        f"node {node.name} has {names.DAEMON_MODE}={node.mode!r}; expected "
        f"{names.MODE_LEGACY!r} or {names.MODE_LAYERED!r}"
    )


def needs_revert(node: NodeView, host: HostFacts) -> bool:
    """Contract 6.3: back to legacy while the host still runs (or reports) a layered image."""
    if host.applied is not None:
        return host.applied.mode == names.MODE_LAYERED
    return node.current_image is not None


def reverting(target: Target, node: NodeView, host: HostFacts) -> bool:
    """Reaching ``target`` means leaving a layered image first."""
    return target.mode == names.MODE_LEGACY and needs_revert(node, host)


def config_paths(config: HostConfig) -> set[str]:
    """Every path ``config`` writes: its files, unit files and drop-ins."""
    paths = {f.path for f in config.files}
    for unit in config.units:
        paths.add(unit.path)
        paths.update(unit.dropin_path(d.name) for d in unit.dropins)
    return paths


def paths_to_read(config: HostConfig | None, applied: Applied | None) -> set[str]:
    """Paths whose current contents ``plan_config`` compares against (with the ostree defaults,
    ``/usr/etc/...``, of the /etc files legacy mode wrote)."""
    paths = {SSH_KEYS_FILE, REVERT_FILE}
    if config is not None:
        paths |= config_paths(config)
    if applied is not None and applied.on_disk is not None:
        written = config_paths(applied.on_disk)
        paths |= written
        paths |= {DEFAULTS_DIR + path for path in written if path.startswith("/etc/")}
    return paths


def plan_config(
    node: NodeView,
    rendered: HostConfig | None,
    host: HostFacts,
    *,
    stock_image: str | None = None,
    policy: disruption.Policy | None = None,
) -> Plan | None:
    """Steps to reach the Node's target; None when it asks for nothing yet, no steps when it is there.

    ``rendered`` is the parsed desired config (None when the API does not have it); ``stock_image`` is
    ``machine-config-osimageurl``'s ``baseOSContainerImage``; ``policy`` the node disruption policy
    (None: every change of files or units reboots, as when the policy is invalid).
    """
    target = target_of(node)
    if target is None:
        return None
    if rendered is None or rendered.name != target.config:
        raise PlanError(
            f"rendered MachineConfig {target.config} (the node's {names.DESIRED_CONFIG}) does not exist; "
            "the supervisor renders it from the pool's MachineConfigs — check the pool's RenderDegraded"
        )
    if target.mode == names.MODE_LAYERED:
        return Plan(target, _layered(target, rendered, host, policy))
    if reverting(target, node, host):
        stock = rendered.os_image_url or stock_image
        if not stock:
            raise PlanError(
                f"cannot return node {node.name} to the stock OS: rendered config {rendered.name} has no "
                f"osImageURL and ConfigMap {names.OSIMAGEURL_CM} has no {names.BASE_OS_CONTAINER_IMAGE_KEY}; "
                "set one of them"
            )
        return Plan(target, _revert(rendered, host, stock), revert=True)
    return Plan(target, _legacy(rendered, host, policy))


def plan_after_rollback(previous: Applied | None, host: HostFacts) -> tuple[Step, ...]:
    """After a rollback (contract 12.3): give the host back what the node ran before the bad image, and
    reports again, ``previous``; no reboot. A layered image the rollback lost is staged again
    (:func:`plan_restage`); a legacy config gets its files and units again (:func:`plan_rewrite_legacy`).
    """
    if previous is None:
        return ()
    if previous.mode == names.MODE_LAYERED:
        return plan_restage(previous, host)
    return plan_rewrite_legacy(previous.on_disk, host)


def plan_rewrite_legacy(written: HostConfig | None, host: HostFacts) -> tuple[Step, ...]:
    """After a rollback from a legacy node's first image: write again the files and units of the legacy
    config that the host lacks, and set the units' enablement and masks again (systemd reloaded first).

    Leaving legacy mode gave /etc back to the image just before the reboot into it (``_give_back_etc``:
    each path legacy mode wrote reset to the booted default, or removed). ostree's /etc merge only ever
    runs into a new deployment; a rollback makes none, and boots the deployment booted before with its
    own /etc as it was left, given back. So the stock OS comes back without the files and units the node
    reports as its ``currentConfig``; this writes them (as their owner, as legacy mode does). Nothing
    lost, nothing to do; what was written is enabled again too (``systemctl enable`` links, which the
    give-back leaves alone, are asserted rather than trusted). The units start at the next boot, as after
    a revert (contract 6.3).
    """
    if written is None:
        return ()
    _, file_writes = _file_steps(None, written, host, force=False)
    _, unit_writes, unit_state, _ = _unit_steps(None, written, host, force=False)
    if not file_writes and not unit_writes:
        return ()
    return (*file_writes, *unit_writes, *unit_state)


def plan_restage(previous: Applied | None, host: HostFacts) -> tuple[Step, ...]:
    """After a rollback (contract 12.3): stage again the image the node ran before the bad one when the
    host neither boots nor stages it; no reboot.

    That is the image of a live apply (contract 12.2), staged for the next boot and reported current.
    The bad image's rebase replaced that staged deployment (ostree keeps one pending deployment), and
    the rollback boots the deployment booted before, so without this the node would report an image
    it no longer has: its next reboot would not boot it, and the resume (which gives the node back what
    it reports) would cost one more reboot. Staged again, the host is what the live apply had left.
    """
    if previous is None or previous.mode != names.MODE_LAYERED or previous.image is None:
        return ()
    if same_image(host.booted, previous.image) or same_image(host.staged, previous.image):
        return ()
    return (Rebase(previous.image),)


def _kargs(old: HostConfig | None, new: HostConfig, host: HostFacts) -> Kargs | None:
    """The MCO's diff: arguments the old config added and the new one lacks go; new ones come."""
    new_args = set(new.kernel_arguments)
    nxt = host.next_boot()
    have = set(nxt.kargs) if nxt else set()
    append = tuple(a for a in new.kernel_arguments if a not in have)
    delete = tuple(a for a in (old.kernel_arguments if old else ()) if a in have and a not in new_args)
    if not append and not delete:
        return None
    return Kargs(append=append, delete=delete)


def _ssh_and_password(new: HostConfig, host: HostFacts, *, force: bool) -> list[Step]:
    steps: list[Step] = []
    current = host.disk.get(SSH_KEYS_FILE)
    wanted = _ssh_file(new.ssh_keys)
    if (force and new.ssh_keys) or (
        (current.contents if current else b"") != wanted and (current is not None or new.ssh_keys)
    ):
        steps.append(SetSshKeys(CORE_USER, new.ssh_keys))
    old_hash = host.applied.config.password_hash if host.applied else None
    if (new.password_hash != old_hash and (new.password_hash or old_hash)) or (force and new.password_hash):
        steps.append(SetPasswordHash(CORE_USER, new.password_hash))
    return steps


def _ssh_file(keys: tuple[str, ...]) -> bytes:
    return "".join(k.rstrip("\n") + "\n" for k in keys).encode()


def _rebase_and_reboot(
    image: str | None, kargs: Kargs | None, host: HostFacts, *, other_change: bool, why: str
) -> list[Step]:
    steps: list[Step] = []
    if kargs is not None:
        steps.append(kargs)
    reboot = other_change or kargs is not None
    if image is not None and not same_image(host.booted, image):
        if not same_image(host.staged, image):
            steps.insert(0, Rebase(image))
        reboot = True
    elif image is not None and host.staged is not None and not same_image(host.staged, image):
        # Someone staged another deployment; booting it would leave the image we want.
        steps.insert(0, Rebase(image))
    if reboot:
        steps.append(Reboot(why))
    if image is not None:
        steps.append(VerifyImage(image))
    return steps


def _layered(
    target: Target, rendered: HostConfig, host: HostFacts, policy: disruption.Policy | None
) -> tuple[Step, ...]:
    assert target.image is not None
    applied = host.applied
    old = applied.config if applied else None
    steps: list[Step] = _ssh_and_password(rendered, host, force=False)
    if (
        applied is not None
        and applied.mode == names.MODE_LAYERED
        and (applied.image, applied.config.name) == (target.image, rendered.name)
        and not same_image(host.booted, target.image)
        and same_image(host.staged, target.image)
    ):
        # Applied live (contract 12.2): the image is staged and boots at the next reboot, whenever
        # that comes; then the usual path below verifies that the host booted it.
        return _finish(steps, applied, applied)
    change = _change(applied, rendered, policy, target)
    if applied is not None and change is not None:
        assert old is not None
        # Stage the image for the next boot, then write what changed under /etc on the running host
        # as root (the owner the image's copy has, so ostree's /etc merge keeps nothing of ours).
        if not same_image(host.staged, target.image) and not same_image(host.booted, target.image):
            steps.append(Rebase(target.image))
        steps += _changed_on_disk(old, rendered, host, root_owned=True)
        steps += _action_steps(change, steps)
        record = dataclasses.replace(
            applied,
            config=rendered,
            image=target.image,
            live=disruption.applied_without_reboot(rendered.name, change),
        )
        return _finish(steps, record, applied)
    kargs = _kargs(old, rendered, host)
    steps += _rebase_and_reboot(
        target.image, kargs, host, other_change=False, why=f"boot image {target.image}"
    )
    on_disk = applied.on_disk if applied else None
    reboot = next((i for i, s in enumerate(steps) if isinstance(s, Reboot)), None)
    if (
        applied is not None
        and applied.mode == names.MODE_LEGACY
        and on_disk is not None
        and reboot is not None
    ):
        # Leaving legacy mode: hand /etc back to the image before booting it (see _give_back_etc).
        steps[reboot:reboot] = _give_back_etc(on_disk, host)
        on_disk = None
    record = Applied(
        config=rendered,
        mode=names.MODE_LAYERED,
        image=target.image,
        on_disk=on_disk,
        live=applied.live if applied else None,
    )
    return _finish(steps, record, applied)


def _change(
    applied: Applied | None, rendered: HostConfig, policy: disruption.Policy | None, target: Target
) -> disruption.Change | None:
    """The change to ``rendered`` when it can be applied without a reboot (contract 12.2), else None."""
    if applied is None or policy is None or applied.config.name == rendered.name:
        return None
    change = disruption.classify(
        applied.config,
        rendered,
        policy,
        old_mode=applied.mode,
        new_mode=target.mode,
        old_image=applied.image,
        new_image=target.image,
    )
    return change if change.reboot is None else None


def _changed_on_disk(old: HostConfig, new: HostConfig, host: HostFacts, *, root_owned: bool) -> list[Step]:
    """Steps writing (or removing) only the files and units that differ between ``old`` and ``new``."""
    paths = set(disruption.changed_files(old, new))
    units = set(disruption.changed_units(old, new))

    def only(config: HostConfig) -> HostConfig:
        files = tuple(
            dataclasses.replace(f, user=None, group=None) if root_owned else f
            for f in config.files
            if f.path in paths
        )
        return dataclasses.replace(
            config, files=files, units=tuple(u for u in config.units if u.name in units)
        )

    file_removals, file_writes = _file_steps(only(old), only(new), host, force=False)
    unit_removals, unit_writes, unit_state, _ = _unit_steps(only(old), only(new), host, force=False)
    return [*unit_removals, *file_removals, *file_writes, *unit_writes, *unit_state]


def _action_steps(change: disruption.Change, before: list[Step]) -> list[Step]:
    """The policy's actions in order, each once (a ``daemon-reload`` the unit writes already run counts);
    ``Drain`` and ``None`` are nothing for the daemon to do."""
    steps: list[Step] = []
    for action in change.actions:
        if action.type == disruption.DAEMON_RELOAD and DaemonReload() not in before + steps:
            steps.append(DaemonReload())
        elif action.type in (disruption.RELOAD, disruption.RESTART) and action.service:
            steps.append(ServiceAction(action.type.lower(), action.service))
    return steps


def _give_back_etc(written: HostConfig, host: HostFacts) -> list[Step]:
    """Undo legacy mode's writes under /etc so that the image's copies win ostree's /etc merge.

    At the next deployment ostree keeps every /etc file that differs from the booted deployment's default
    (``/usr/etc``) — content, mode or owner — over the new image's. A file legacy mode wrote would so
    shadow the image's copy for good (a stale config, or another owner), and one the new config dropped
    would stay. Each such path goes back to its default (removed when the default has none), after the
    image is staged (a failed pull takes nothing away) and just before the reboot (the node is drained).
    """
    steps: list[Step] = []
    for path in sorted(config_paths(written)):
        if not path.startswith("/etc/"):
            continue
        default = host.disk.get(DEFAULTS_DIR + path)
        current = host.disk.get(path)
        if default is not None and default.mode >= 0:
            if current != default:
                steps.append(WriteFile(path, default.contents, default.mode))
        elif current is not None:
            steps.append(RemoveFile(path))
    return steps


def _finish(steps: list[Step], record: Applied, applied: Applied | None) -> tuple[Step, ...]:
    work = [s for s in steps if not isinstance(s, VerifyImage)]
    if not work and applied == record:
        return ()
    return (*steps, RecordApplied(record))


def _unit_steps(
    old: HostConfig | None, new: HostConfig, host: HostFacts, *, force: bool
) -> tuple[list[Step], list[Step], list[Step], bool]:
    """(removals, writes, state changes, any unit file changed)."""
    old_units: dict[str, UnitSpec] = {u.name: u for u in old.units} if old else {}
    new_units = {u.name: u for u in new.units}
    removals: list[Step] = []
    writes: list[Step] = []
    changed = False
    gone = [u for name, u in old_units.items() if name not in new_units]
    if to_disable := tuple(u.name for u in gone if u.enabled):
        removals.append(Systemctl("disable", to_disable))
    if to_unmask := tuple(u.name for u in gone if u.mask):
        removals.append(Systemctl("unmask", to_unmask))
    for unit in gone:
        paths = [unit.dropin_path(d.name) for d in unit.dropins]
        if unit.contents is not None:
            paths.append(unit.path)
        for path in paths:
            if host.disk.get(path) is not None:
                removals.append(RemoveFile(path))
                changed = True
    for unit in new.units:
        before = old_units.get(unit.name)
        kept_dropins = {d.name for d in unit.dropins}
        if before is not None:
            for d in before.dropins:
                if d.name not in kept_dropins and host.disk.get(unit.dropin_path(d.name)) is not None:
                    removals.append(RemoveFile(unit.dropin_path(d.name)))
                    changed = True
            if before.contents is not None and unit.contents is None and host.disk.get(unit.path):
                removals.append(RemoveFile(unit.path))
                changed = True
        files = [(unit.path, unit.contents)] if unit.contents is not None else []
        files += [(unit.dropin_path(d.name), d.contents) for d in unit.dropins]
        for path, text in files:
            data = text.encode()
            if force or host.disk.get(path) != DiskFile(data, 0o644):
                writes.append(WriteFile(path, data, 0o644))
                changed = True
    state: list[Step] = []
    if changed:
        state.append(DaemonReload())
    if to_unmask_new := tuple(
        u.name for u in new.units if not u.mask and (before := old_units.get(u.name)) and before.mask
    ):
        state.append(Systemctl("unmask", to_unmask_new))
    if to_mask := tuple(
        u.name
        for u in new.units
        if u.mask and (force or not (before := old_units.get(u.name)) or not before.mask)
    ):
        state.append(Systemctl("mask", to_mask))
    if enable := tuple(
        u.name
        for u in new.units
        if u.enabled is True and not u.mask and (force or _was(old_units.get(u.name)) is not True)
    ):
        state.append(Systemctl("enable", enable))
    if disable := tuple(
        u.name
        for u in new.units
        if u.enabled is False and (force or _was(old_units.get(u.name)) is not False)
    ):
        state.append(Systemctl("disable", disable))
    return removals, writes, state, changed


def _was(unit: UnitSpec | None) -> bool | None:
    return None if unit is None else unit.enabled


def _file_steps(
    old: HostConfig | None, new: HostConfig, host: HostFacts, *, force: bool
) -> tuple[list[Step], list[Step]]:
    new_paths = {f.path for f in new.files}
    removals: list[Step] = [
        RemoveFile(f.path)
        for f in (old.files if old else ())
        if f.path not in new_paths and host.disk.get(f.path) is not None
    ]
    writes: list[Step] = [
        WriteFile(f.path, f.contents, f.mode, f.user, f.group)
        for f in new.files
        if force or host.disk.get(f.path) != DiskFile(f.contents, f.mode)
    ]
    return removals, writes


def _legacy(rendered: HostConfig, host: HostFacts, policy: disruption.Policy | None) -> tuple[Step, ...]:
    applied = host.applied
    on_disk = applied.on_disk if applied else None
    file_removals, file_writes = _file_steps(on_disk, rendered, host, force=False)
    unit_removals, unit_writes, unit_state, _ = _unit_steps(on_disk, rendered, host, force=False)
    steps: list[Step] = [*unit_removals, *file_removals, *file_writes, *unit_writes, *unit_state]
    disk_changed = bool(file_removals or file_writes or unit_removals or unit_writes)
    steps += _ssh_and_password(rendered, host, force=False)
    change = _change(applied, rendered, policy, Target(names.MODE_LEGACY, rendered.name))
    live = applied.live if applied else None
    if change is not None:
        steps += _action_steps(change, steps)
        live = disruption.applied_without_reboot(rendered.name, change)
    kargs = _kargs(applied.config if applied else None, rendered, host)
    steps += _rebase_and_reboot(
        rendered.os_image_url or None,
        kargs,
        host,
        other_change=disk_changed and change is None,
        why=f"apply {rendered.name}",
    )
    record = Applied(config=rendered, mode=names.MODE_LEGACY, image=None, on_disk=rendered, live=live)
    return _finish(steps, record, applied)


def _revert(rendered: HostConfig, host: HostFacts, stock: str) -> tuple[Step, ...]:
    applied = host.applied
    on_disk = applied.on_disk if applied else None
    payload = json.dumps(rendered.to_json(), sort_keys=True).encode()
    steps: list[Step] = [WriteFile(REVERT_FILE, payload, 0o600)]
    kargs = _kargs(applied.config if applied else None, rendered, host)
    steps += _rebase_and_reboot(stock, kargs, host, other_change=True, why="return to the stock OS")
    # After the reboot the image's copies are gone: write everything again, unconditionally.
    file_removals, file_writes = _file_steps(on_disk, rendered, host, force=True)
    unit_removals, unit_writes, unit_state, _ = _unit_steps(on_disk, rendered, host, force=True)
    if DaemonReload() not in unit_state and unit_writes:
        unit_state.insert(0, DaemonReload())
    steps += [*unit_removals, *file_removals, *file_writes, *unit_writes, *unit_state]
    steps += _ssh_and_password(rendered, host, force=True)
    steps.append(RemoveFile(REVERT_FILE))
    steps.append(
        RecordApplied(Applied(config=rendered, mode=names.MODE_LEGACY, image=None, on_disk=rendered))
    )
    return tuple(steps)
