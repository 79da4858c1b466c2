"""The certificates plan (contract 6.4): the host's CA files made to match ConfigMap ``node-certificates``.

Pure, like :mod:`mcosup.daemon.plan`; it runs in every mode, paused pool or not, before the config plan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mcosup.daemon.hostfacts import DiskFile
from mcosup.daemon.steps import RemoveDir, RemoveFile, Step, UpdateCaTrust, WriteFile

#: Contract 6.4 destinations.
KUBELET_CA_KEY = "kubelet-ca.crt"
KUBELET_CA_PATH = "/etc/kubernetes/kubelet-ca.crt"
USER_CA_KEY = "user-ca-bundle.crt"
USER_CA_PATH = "/etc/pki/ca-trust/source/anchors/user-ca-bundle.crt"
REGISTRY_CERTS_DIR = "/etc/docker/certs.d"
_REGISTRY_KEY = re.compile(r"^registry-(?P<host>[A-Za-z0-9.-]+?)(?:\.\.(?P<port>[0-9]+))?\.crt$")


# Certificates (contract 6.4).


def certificate_paths(data: Mapping[str, str] | None) -> dict[str, str]:
    """ConfigMap key -> host path, for the keys the contract names (others are ignored)."""
    out: dict[str, str] = {}
    for key in (data or {}).keys():
        if key == KUBELET_CA_KEY:
            out[key] = KUBELET_CA_PATH
        elif key == USER_CA_KEY:
            out[key] = USER_CA_PATH
        elif host := registry_of(key):
            out[key] = f"{REGISTRY_CERTS_DIR}/{host}/ca.crt"
    return out


def registry_of(key: str) -> str | None:
    """``registry-<host>[..<port>].crt`` -> ``<host>[:<port>]``."""
    match = _REGISTRY_KEY.match(key)
    if not match:
        return None
    host = match["host"]
    return f"{host}:{match['port']}" if match["port"] else host


def plan_certificates(
    data: Mapping[str, str] | None, disk: Mapping[str, DiskFile | None], registry_dirs: frozenset[str]
) -> tuple[Step, ...]:
    """Steps that make the host's certificates match ConfigMap ``node-certificates``.

    ``data`` None (the ConfigMap does not exist) changes nothing: absence is not an instruction to
    delete every certificate the host has.
    """
    if data is None:
        return ()
    paths = certificate_paths(data)
    steps: list[Step] = []
    trust_changed = False
    for key, path in sorted(paths.items()):
        contents = data[key].encode()
        if disk.get(path) != DiskFile(contents, 0o644):
            steps.append(WriteFile(path, contents, 0o644))
            trust_changed |= path == USER_CA_PATH
    listed = {registry_of(k) for k in paths}
    steps += [RemoveDir(f"{REGISTRY_CERTS_DIR}/{d}") for d in sorted(registry_dirs) if d not in listed]
    if USER_CA_KEY not in data and disk.get(USER_CA_PATH) is not None:
        steps.append(RemoveFile(USER_CA_PATH))
        trust_changed = True
    if trust_changed:
        steps.append(UpdateCaTrust())
    return tuple(steps)
