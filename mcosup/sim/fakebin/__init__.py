"""The fake host's executables: ``rpm-ostree``, ``bootc``, ``systemctl``, ``update-ca-trust``.

Each script in a fake host's ``bin/`` calls :func:`command_main`, which acts on the host's state file
(``host.json``) and tree (``rootfs/``) under a lock; on a host with a real ostree sysroot
(:mod:`mcosup.sim.ostreehost`) the OS commands are :mod:`~mcosup.sim.fakebin.ostreecmd`'s instead.
Kept apart from :mod:`mcosup.sim.fakehost` and light on imports because every host command the daemon
runs starts a fresh interpreter here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Json = dict[str, Any]
_UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system")
_MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
#: An image label that makes the image fail the fake host's boot-complete check once booted (a test's
#: or the demo's bad image, e.g. ``LABEL io.mcosup.sim.boot-unhealthy="..."`` in a containerFile).
UNHEALTHY_LABEL = "io.mcosup.sim.boot-unhealthy"
_TRANSPORTS = ("ostree-unverified-registry:", "ostree-remote-registry:", "ostree-image-signed:docker://")


def deployment(image: str | None, kargs: list[str], digest: str | None = None) -> Json:
    if image is not None and digest is None:
        _, sep, tail = image.rpartition("@")
        digest = tail if sep else "sha256:" + hashlib.sha256(image.encode()).hexdigest()
    checksum = hashlib.sha256(f"{image}|{' '.join(kargs)}".encode()).hexdigest()
    return {"image": image, "digest": digest, "kargs": kargs, "checksum": checksum}


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    with (root / "host.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_json(path: Path) -> Json:
    data: Json = json.loads(path.read_text())
    return data


def write_json(path: Path, data: Json) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


# The fake commands.


class _Fail(Exception):
    pass


def command_main(name: str, argv: list[str], host_dir: str) -> int:
    """Entry point of the fake executables in ``bin/``."""
    root = Path(host_dir)
    words = [a for a in argv if not a.startswith("-")]
    what = f"{name} {words[0]}" if words else name
    with locked(root):
        state = read_json(root / "host.json")
        state["log"].append([name, *argv])
        # Matched without systemctl's --root=..., so rules read like the command a person would type.
        kill = _take_kill(state, " ".join([name, *(a for a in argv if not a.startswith("--root="))]))
        write_json(root / "host.json", state)
    if kill == "before":
        os.kill(os.getppid(), signal.SIGKILL)
        return 1
    _download(root, name, argv)
    try:
        with locked(root):
            state = read_json(root / "host.json")
            if what in state["fail"]:
                raise _Fail(state["fail"][what])
            out = _command(state, name)(state, argv, root / "rootfs")
            write_json(root / "host.json", state)
        status = 0
    except _Fail as exc:
        print(f"error: {exc}", file=sys.stderr)
        out, status = "", 1
    if out:
        sys.stdout.write(out)
        sys.stdout.flush()
    if kill == "after":
        os.kill(os.getppid(), signal.SIGKILL)
    return status


def _download(root: Path, name: str, argv: list[str]) -> None:
    """The time a rebase or switch takes to download an image the host does not have yet (the knob
    ``pullSeconds`` of host.json; contract 12.1), outside the host lock as a real pull is."""
    words = [a for a in argv if not a.startswith("-") and a != "registry"]
    if name not in ("rpm-ostree", "bootc") or len(words) != 2 or words[0] not in ("rebase", "switch"):
        return
    with locked(root):
        state = read_json(root / "host.json")
    image = _strip(words[1])
    if state.get("pullSeconds") and image not in state.get("pulled", []):
        import time

        time.sleep(float(state["pullSeconds"]))


def _strip(ref: str) -> str:
    transport = next((t for t in _TRANSPORTS if ref.startswith(t)), "")
    return ref[len(transport) :]


def _pulled(state: Json, image: str) -> None:
    pulled = state.setdefault("pulled", [])
    if image not in pulled:
        pulled.append(image)


def _command(state: Json, name: str) -> Callable[[Json, list[str], Path], str]:
    if state.get("ostree"):
        # A host on a real ostree sysroot (imported only there: it pulls in tarfile, urllib, gzip).
        from mcosup.sim.fakebin import ostreecmd

        return ostreecmd.COMMANDS[name]
    return _COMMANDS[name]


def edit_kargs(kargs: list[str], options: list[str]) -> tuple[list[str], bool]:
    """``rpm-ostree kargs`` options applied to ``kargs``: the new list, and whether it changed."""
    out = list(kargs)
    changed = False
    for arg in options:
        opt, _, value = arg.partition("=")
        if opt in ("--append", "--append-if-missing"):
            if opt == "--append" or value not in out:
                out.append(value)
                changed = True
        elif opt in ("--delete", "--delete-if-present"):
            if value not in out:
                if opt == "--delete":
                    raise _Fail(f"No karg '{value}' found")
                continue
            out.remove(value)
            changed = True
        else:
            raise _Fail(f"rpm-ostree kargs: unknown option {arg}")
    return out, changed


def base_state(registry: str | None) -> Json:
    """What every simulated host's ``host.json`` starts with besides its deployments."""
    return {
        "staged": None,
        # The deployment booted before the current one (``rpm-ostree rollback`` boots it again).
        "rollback": None,
        # Images whose boot-complete check fails once booted (FakeHost.boots_unhealthy).
        "unhealthy": [],
        "registry": registry,
        "enabled": [],
        "masked": [],
        "reboots": 0,
        "daemonReloads": 0,
        # Every daemon-reload, reload and restart, in order ("reload crio.service").
        "actions": [],
        # Images downloaded (by a rebase, a switch or a download-only rebase), and the seconds a
        # download of an image not yet here takes (contract 12.1).
        "pulled": [],
        "pullSeconds": 0.0,
        "caTrustUpdates": 0,
        "log": [],
        "fail": {},
        "kill": [],
    }


def _take_kill(state: Json, command_line: str) -> str | None:
    for rule in state["kill"]:
        if command_line == rule["match"] or command_line.startswith(rule["match"] + " "):
            if rule["skip"] > 0:
                rule["skip"] -= 1
                return None
            state["kill"].remove(rule)
            return str(rule["when"])
    return None


def _next_boot(state: Json) -> Json:
    nxt: Json = state["staged"] or state["booted"]
    return nxt


def _stage(state: Json, image: str | None, kargs: list[str], digest: str | None = None) -> None:
    state["staged"] = deployment(image, kargs, digest)


def _check_registry(state: Json, image: str) -> str | None:
    """The manifest digest from the configured registry (None when none is configured).

    An image whose config carries the label :data:`UNHEALTHY_LABEL` is recorded as one that fails the
    boot-complete check once booted: a bad image a real build can make (contract 12.3)."""
    registry = state.get("registry")
    if not registry:
        return None
    import urllib.error

    first, repo, ref = _repo_ref(image)
    try:
        with _registry_get(registry, f"{repo}/manifests/{ref}") as resp:
            digest: str | None = resp.headers.get("Docker-Content-Digest")
            manifest = json.loads(resp.read() or b"{}")
        config = (manifest.get("config") or {}).get("digest")  # none in an image index
        if config:
            with _registry_get(registry, f"{repo}/blobs/{config}") as resp:
                labels = (json.loads(resp.read()).get("config") or {}).get("Labels") or {}
            if UNHEALTHY_LABEL in labels and image not in state["unhealthy"]:
                state["unhealthy"].append(image)
        return digest
    except urllib.error.HTTPError as exc:
        raise _Fail(
            f"Creating importer: failed to invoke method OpenImage: reading manifest {ref} in "
            f"{first}/{repo}: manifest unknown (HTTP {exc.code})"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise _Fail(f"pinging container registry {registry}: {exc}") from None


def _repo_ref(image: str) -> tuple[str, str, str]:
    """``(registry host, repository, tag or digest)`` of an image reference."""
    first, _, rest = image.partition("/")
    repo_ref = rest if rest and ("." in first or ":" in first or first == "localhost") else image
    if "@" in repo_ref:
        repo, _, ref = repo_ref.partition("@")
    else:
        repo, _, ref = (
            repo_ref.rpartition(":") if ":" in repo_ref.rsplit("/", 1)[-1] else (repo_ref, "", "latest")
        )
    return first, repo, ref


def _registry_get(registry: str, path: str) -> Any:
    """GET ``/v2/<path>`` of ``registry``, whose URL may carry credentials (http://user:pass@host:port)
    as a node's pull secret would."""
    import base64
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(registry.rstrip("/"))
    headers = {"Accept": _MANIFEST_TYPES}
    if parts.username is not None:
        userpass = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(userpass.encode()).decode()
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    base = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return urllib.request.urlopen(urllib.request.Request(f"{base}/v2/{path}", headers=headers), timeout=30)


def _rpm_ostree(state: Json, argv: list[str], rootfs: Path) -> str:
    words = [a for a in argv if not a.startswith("-")]
    sub = words[0] if words else ""
    if sub == "status":
        if "--json" not in argv:
            booted = state["booted"]
            return f"State: idle\nDeployments:\n* {booted['image']}\n"
        deployments = []
        for key in ("staged", "booted"):
            d = state[key]
            if d is None:
                continue
            entry: Json = {"booted": key == "booted", "staged": key == "staged", "checksum": d["checksum"]}
            if d["image"]:
                entry["container-image-reference"] = "ostree-unverified-registry:" + d["image"]
                entry["container-image-reference-digest"] = d["digest"]
            else:
                entry["origin"] = "fedora:fedora/x86_64/coreos/stable"
            deployments.append(entry)
        return json.dumps({"deployments": deployments, "transactions": None}) + "\n"
    if sub == "kargs":
        nxt = _next_boot(state)
        kargs, changed = edit_kargs(nxt["kargs"], argv[1:])
        if changed:
            _stage(state, nxt["image"], kargs, nxt["digest"])
            return ""
        return " ".join(kargs) + "\n"
    if sub == "rebase":
        if len(words) != 2:
            raise _Fail("rpm-ostree rebase takes exactly one REFSPEC")
        ref = words[1]
        transport = next((t for t in _TRANSPORTS if ref.startswith(t)), None)
        if transport is None:
            raise _Fail(f"Unsupported refspec {ref!r}: use ostree-unverified-registry:<pullspec>")
        image = ref[len(transport) :]
        digest = _check_registry(state, image)
        _pulled(state, image)
        if "--download-only" in argv:
            return "Downloaded image; not staged\n"
        _stage(state, image, list(_next_boot(state)["kargs"]), digest)
        return 'Staging deployment...done\nRun "systemctl reboot" to start a reboot\n'
    if sub == "rollback":
        return _rollback(state)
    raise _Fail(f"rpm-ostree: unknown command {sub!r}")


def _rollback(state: Json) -> str:
    """The previous deployment is booted next (rpm-ostree/bootc ``rollback``)."""
    previous = state.get("rollback")
    if previous is None:
        raise _Fail("No rollback deployment found")
    state["staged"] = dict(previous)
    return f"Moving '{previous['checksum'][:12]}' to be first deployment\nRun \"systemctl reboot\"\n"


def _bootc(state: Json, argv: list[str], rootfs: Path) -> str:
    words = [a for a in argv if not a.startswith("-") and a != "registry"]
    sub = words[0] if words else ""
    if sub == "status":

        def entry(d: Json | None) -> Json | None:
            if d is None or not d["image"]:
                return None
            return {
                "image": {
                    "image": {"image": d["image"], "transport": "registry"},
                    "imageDigest": d["digest"],
                },
                "ostree": {"checksum": d["checksum"]},
            }

        spec_image = _next_boot(state)["image"]
        return (
            json.dumps(
                {
                    "apiVersion": "org.containers.bootc/v1",
                    "kind": "BootcHost",
                    "spec": {"image": {"image": spec_image, "transport": "registry"} if spec_image else None},
                    "status": {
                        "staged": entry(state["staged"]),
                        "booted": entry(state["booted"]),
                        "rollback": None,
                    },
                }
            )
            + "\n"
        )
    if sub == "switch":
        if len(words) != 2:
            raise _Fail("bootc switch takes exactly one IMAGE")
        image = words[1]
        digest = _check_registry(state, image)
        _pulled(state, image)
        _stage(state, image, list(_next_boot(state)["kargs"]), digest)
        return "Queued for next boot\n"
    if sub == "rollback":
        return _rollback(state)
    raise _Fail(f"bootc: unknown command {sub!r}")


def _systemctl(state: Json, argv: list[str], rootfs: Path) -> str:
    args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--root"):
            given = arg.partition("=")[2] if "=" in arg else argv[i + 1]
            i += 0 if "=" in arg else 1
            if Path(given).resolve() != rootfs.resolve():
                raise _Fail(f"--root={given} is not this host's root {rootfs}")
        elif not arg.startswith("-"):
            args.append(arg)
        i += 1
    sub, units = (args[0], args[1:]) if args else ("", [])
    if sub == "daemon-reload":
        state["daemonReloads"] += 1
        state.setdefault("actions", []).append("daemon-reload")
        return ""
    if sub in ("reload", "restart"):
        if len(units) != 1:
            raise _Fail(f"systemctl {sub} takes one unit here, got {len(units)}")
        if not any((rootfs / d / units[0]).is_file() for d in _UNIT_DIRS):
            raise _Fail(f"Failed to {sub} {units[0]}: Unit {units[0]} not found.")
        state.setdefault("actions", []).append(f"{sub} {units[0]}")
        return ""
    if sub == "reboot":
        if state["staged"] is not None:
            state["rollback"], state["booted"], state["staged"] = state["booted"], state["staged"], None
        state["bootId"] = str(uuid.uuid4())
        (rootfs / "proc/sys/kernel/random/boot_id").write_text(state["bootId"] + "\n")
        state["reboots"] += 1
        return ""
    if sub == "is-active":
        # Every unit the fake host has is active, but boot-complete.target fails on an image the test
        # said does not boot healthily (what greenboot's checks failing looks like).
        booted = (state.get("booted") or {}).get("image")
        if "boot-complete.target" in units and booted in state.get("unhealthy", []):
            raise _Fail(f"boot-complete.target failed: a health check of image {booted} failed")
        return "".join("active\n" for _ in units)
    if sub in ("enable", "disable", "mask", "unmask", "is-enabled"):
        if not units:
            raise _Fail(f"Too few arguments for systemctl {sub}")
        out = []
        for unit in units:
            found = next((rootfs / d / unit for d in _UNIT_DIRS if (rootfs / d / unit).is_file()), None)
            if sub == "enable":
                if found is None:
                    raise _Fail(f"Failed to enable unit: Unit file {unit} does not exist.")
                if unit in state["masked"]:
                    raise _Fail(f"Failed to enable unit: Unit file /etc/systemd/system/{unit} is masked.")
                if not _installable(found.read_text(errors="replace")):
                    # systemd's answer: a warning, exit status 0, nothing enabled (a "static" unit).
                    print(f"The unit files have no installation config: {unit}", file=sys.stderr)
                elif unit not in state["enabled"]:
                    state["enabled"].append(unit)
            elif sub == "disable":
                if unit in state["enabled"]:
                    state["enabled"].remove(unit)
            elif sub == "mask":
                if unit not in state["masked"]:
                    state["masked"].append(unit)
            elif sub == "unmask":
                if unit in state["masked"]:
                    state["masked"].remove(unit)
            else:
                out.append(
                    "masked"
                    if unit in state["masked"]
                    else "enabled"
                    if unit in state["enabled"]
                    else "disabled"
                )
        return "".join(o + "\n" for o in out)
    raise _Fail(f"systemctl: unknown command {sub!r}")


def _installable(unit_file: str) -> bool:
    """Whether ``systemctl enable`` links the unit anywhere: its ``[Install]`` section has a
    ``WantedBy=``, ``RequiredBy=``, ``UpheldBy=`` or ``Alias=`` with a value."""
    section = ""
    for raw in unit_file.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
        elif section == "[Install]" and "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            if key.strip() in ("WantedBy", "RequiredBy", "UpheldBy", "Alias") and value.strip():
                return True
    return False


def _update_ca_trust(state: Json, argv: list[str], rootfs: Path) -> str:
    anchors = rootfs / "etc/pki/ca-trust/source/anchors"
    bundle = (
        b"".join(p.read_bytes() for p in sorted(anchors.glob("*")) if p.is_file())
        if anchors.is_dir()
        else b""
    )
    out = rootfs / "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bundle)
    state["caTrustUpdates"] += 1
    return ""


_COMMANDS = {
    "rpm-ostree": _rpm_ostree,
    "bootc": _bootc,
    "systemctl": _systemctl,
    "update-ca-trust": _update_ca_trust,
}
