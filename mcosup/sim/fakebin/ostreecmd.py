"""``rpm-ostree``, ``bootc`` and ``systemctl reboot`` on an ostree host (:mod:`mcosup.sim.fakebin.ostree`).

The same command lines and output shapes as :mod:`mcosup.sim.fakebin`'s plain fake, acting on the
host's real sysroot instead of ``host.json``; ``host.json`` keeps only what the real tools keep outside
the sysroot here: the pending (staged) deployment, unit enablement, counters and the command log.
Unit enablement, ``daemon-reload``, ``update-ca-trust`` are the plain fake's.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from pathlib import Path

from mcosup.sim.fakebin import Json, _Fail, _systemctl, _update_ca_trust, edit_kargs
from mcosup.sim.fakebin import ostree as ot

Command = Callable[[Json, list[str], Path], str]
_TRANSPORTS = (ot.TRANSPORT, "ostree-remote-registry:", "ostree-image-signed:docker://")


def _failing_clearly(fn: Command) -> Command:
    @functools.wraps(fn)
    def wrapper(state: Json, argv: list[str], rootfs: Path) -> str:
        try:
            return fn(state, argv, rootfs)
        except ot.OstreeError as exc:
            raise _Fail(str(exc)) from None

    return wrapper


def sysroot_of(rootfs: Path) -> Path:
    return rootfs.parent / "sysroot"


def _booted(rootfs: Path) -> tuple[ot.OstreeDeployment, list[ot.OstreeDeployment]]:
    deps = ot.deployments(sysroot_of(rootfs))
    if not deps:
        raise _Fail(f"no deployment in {sysroot_of(rootfs)}: the host was never installed")
    return deps[0], deps


def _next_boot(state: Json, rootfs: Path) -> Json:
    """The deployment the next boot starts: the pending one, else the booted one."""
    if state["staged"] is not None:
        nxt: Json = state["staged"]
        return nxt
    booted, _ = _booted(rootfs)
    return {
        "checksum": booted.checksum,
        "image": booted.image,
        "digest": booted.digest,
        "kargs": list(booted.kargs),
    }


def _stage_image(state: Json, rootfs: Path, ref: str, *, download_only: bool = False) -> None:
    registry = state.get("registry")
    if not registry:
        raise _Fail("this host has no registry to pull from (set one with OstreeHost.set_registry)")
    transport = next((t for t in _TRANSPORTS if ref.startswith(t)), "")
    image = ref[len(transport) :]
    checksum, digest = ot.pull(sysroot_of(rootfs), registry, image, rootfs.parent / "pull")
    if download_only:
        return  # in the repo, ready for a later rebase; nothing deployed (contract 12.1)
    kargs = list(_next_boot(state, rootfs)["kargs"])
    state["staged"] = {"checksum": checksum, "image": image, "digest": digest, "kargs": kargs}


@_failing_clearly
def rpm_ostree(state: Json, argv: list[str], rootfs: Path) -> str:
    words = [a for a in argv if not a.startswith("-")]
    sub = words[0] if words else ""
    if sub == "status":
        booted, deps = _booted(rootfs)
        if "--json" not in argv:
            return f"State: idle\nDeployments:\n* {booted.image or booted.checksum}\n"
        entries: list[Json] = []
        if state["staged"] is not None:
            staged = state["staged"]
            entries.append(_rpm_entry(staged["checksum"], staged["image"], staged["digest"], staged=True))
        for i, d in enumerate(deps):
            entries.append(_rpm_entry(d.checksum, d.image, d.digest, booted=i == 0))
        return json.dumps({"deployments": entries, "transactions": None}) + "\n"
    if sub == "kargs":
        nxt = _next_boot(state, rootfs)
        kargs, changed = edit_kargs(nxt["kargs"], argv[1:])
        if changed:
            # As rpm-ostree does: a new pending deployment of the same commit with the new arguments.
            state["staged"] = {**nxt, "kargs": kargs}
            return ""
        return " ".join(kargs) + "\n"
    if sub == "rebase":
        if len(words) != 2:
            raise _Fail("rpm-ostree rebase takes exactly one REFSPEC")
        if not any(words[1].startswith(t) for t in _TRANSPORTS):
            raise _Fail(f"Unsupported refspec {words[1]!r}: use ostree-unverified-registry:<pullspec>")
        _stage_image(state, rootfs, words[1], download_only="--download-only" in argv)
        return 'Staging deployment...done\nRun "systemctl reboot" to start a reboot\n'
    raise _Fail(f"rpm-ostree: unknown command {sub!r} (this simulated host has status, kargs, rebase)")


def _rpm_entry(
    checksum: str, image: str | None, digest: str | None, *, booted: bool = False, staged: bool = False
) -> Json:
    entry: Json = {"booted": booted, "staged": staged, "checksum": checksum}
    if image:
        entry["container-image-reference"] = ot.TRANSPORT + image
        entry["container-image-reference-digest"] = digest
    else:
        entry["origin"] = "fedora:fedora/x86_64/coreos/stable"
    return entry


@_failing_clearly
def bootc(state: Json, argv: list[str], rootfs: Path) -> str:
    words = [a for a in argv if not a.startswith("-") and a != "registry"]
    sub = words[0] if words else ""
    if sub == "status":
        booted, deps = _booted(rootfs)

        def entry(image: str | None, digest: str | None, checksum: str) -> Json | None:
            if not image:
                return None
            return {
                "image": {"image": {"image": image, "transport": "registry"}, "imageDigest": digest},
                "ostree": {"checksum": checksum},
            }

        staged = state["staged"]
        rollback = deps[1] if len(deps) > 1 else None
        spec_image = (staged or {}).get("image") or booted.image
        status = {
            "staged": entry(staged["image"], staged["digest"], staged["checksum"]) if staged else None,
            "booted": entry(booted.image, booted.digest, booted.checksum),
            "rollback": entry(rollback.image, rollback.digest, rollback.checksum) if rollback else None,
        }
        return (
            json.dumps(
                {
                    "apiVersion": "org.containers.bootc/v1",
                    "kind": "BootcHost",
                    "spec": {"image": {"image": spec_image, "transport": "registry"} if spec_image else None},
                    "status": status,
                }
            )
            + "\n"
        )
    if sub == "switch":
        if len(words) != 2:
            raise _Fail("bootc switch takes exactly one IMAGE")
        _stage_image(state, rootfs, words[1], download_only="--download-only" in argv)
        return "Queued for next boot\n"
    raise _Fail(f"bootc: unknown command {sub!r} (this simulated host has status, switch)")


@_failing_clearly
def systemctl(state: Json, argv: list[str], rootfs: Path) -> str:
    if [a for a in argv if not a.startswith("-")] != ["reboot"]:
        return _systemctl(state, argv, rootfs)
    sysroot = sysroot_of(rootfs)
    staged = state["staged"]
    if staged is not None:
        # ostree-finalize-staged's work at shutdown: the deployment, with the /etc merge, is made now.
        ot.deploy(sysroot, staged["checksum"], staged["image"], list(staged["kargs"]), rootfs.parent / "pull")
        state["staged"] = None
    state["bootId"] = boot(rootfs)
    state["reboots"] += 1
    return ""


def boot(rootfs: Path) -> str:
    """Boot the first deployment: point the root at it, create /var's basics, a new boot id."""
    booted, _ = _booted(rootfs)
    sysroot = sysroot_of(rootfs)
    proc = rootfs.parent / "proc"
    ot.point_root(rootfs, booted, sysroot, proc)
    # What systemd-tmpfiles does on an ostree host at boot (/home is a symlink to /var/home).
    (sysroot / "ostree" / "deploy" / ot.OSNAME / "var" / "home").mkdir(exist_ok=True)
    boot_id = str(uuid.uuid4())
    (proc / "sys/kernel/random").mkdir(parents=True, exist_ok=True)
    (proc / "sys/kernel/random/boot_id").write_text(boot_id + "\n")
    return boot_id


COMMANDS: dict[str, Command] = {
    "rpm-ostree": rpm_ostree,
    "bootc": bootc,
    "systemctl": systemctl,
    "update-ca-trust": _update_ca_trust,
}
