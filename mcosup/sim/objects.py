"""The objects of a local cluster as an installer and an administrator would write them: MachineConfigs,
pools, Nodes, registry Secrets, MachineOSConfigs (pure: plain dicts, no I/O). Used by
:mod:`mcosup.sim.cluster`, the demo and the tests.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mcosup.model import names

ROLE_NODE_LABEL = "node-role.kubernetes.io/"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMcosupDemoKey core@mcosup-demo"
UNIT_TEMPLATE = (
    "[Unit]\nDescription={what}\n[Service]\nExecStart=/usr/bin/true\n[Install]\nWantedBy=multi-user.target\n"
)


def data_url(text: str) -> str:
    return "data:;base64," + base64.b64encode(text.encode()).decode()


def machineconfig(
    name: str,
    role: str | None,
    files: Mapping[str, tuple[str, int]] = {},
    units: Sequence[Mapping[str, Any]] = (),
    *,
    ssh_keys: Sequence[str] = (),
    kernel_arguments: Sequence[str] = (),
    password_hash: str | None = None,
) -> dict[str, Any]:
    """A MachineConfig for pool ``role`` (None: no role label, as a rendered config): files (path →
    (text, mode)), systemd units, core's ssh keys and password hash, kernel arguments."""
    config: dict[str, Any] = {
        "ignition": {"version": "3.2.0"},
        "storage": {
            "files": [
                {"path": path, "mode": mode, "overwrite": True, "contents": {"source": data_url(text)}}
                for path, (text, mode) in sorted(files.items())
            ]
        },
        "systemd": {"units": [dict(u) for u in units]},
    }
    if ssh_keys or password_hash:
        core: dict[str, Any] = {"name": "core", "sshAuthorizedKeys": list(ssh_keys)}
        if password_hash:
            core["passwordHash"] = password_hash
        config["passwd"] = {"users": [core]}
    spec: dict[str, Any] = {"config": config}
    if kernel_arguments:
        spec["kernelArguments"] = list(kernel_arguments)
    metadata: dict[str, Any] = {"name": name}
    if role is not None:
        metadata["labels"] = {names.ROLE_LABEL: role}
    return {"apiVersion": names.API_VERSION, "kind": "MachineConfig", "metadata": metadata, "spec": spec}


def unit(name: str, what: str, *, enabled: bool = True) -> dict[str, Any]:
    return {"name": name, "enabled": enabled, "contents": UNIT_TEMPLATE.format(what=what)}


def base_machineconfigs(role: str) -> list[dict[str, Any]]:
    """What an installer leaves for a pool: a role file, a unit, kernel arguments and core's ssh key."""
    return [
        machineconfig(
            f"00-{role}",
            role,
            {f"/etc/mcosup-demo/{role}.conf": (f"role={role}\n", 0o644)},
            [unit(f"{role}-agent.service", f"{role} agent")],
            kernel_arguments=["console=ttyS0"],
        ),
        machineconfig(f"99-{role}-ssh", role, ssh_keys=[SSH_KEY]),
    ]


def pool_object(name: str, max_unavailable: int | str | None = None) -> dict[str, Any]:
    """A MachineConfigPool shaped like the MCO's built-in ones."""
    spec: dict[str, Any] = {
        "machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: name}},
        "nodeSelector": {"matchLabels": {ROLE_NODE_LABEL + name: ""}},
        "paused": False,
    }
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfigPool",
        "metadata": {"name": name, "labels": {"machineconfiguration.openshift.io/mco-built-in": ""}},
        "spec": spec,
    }


def node_object(name: str, role: str) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                ROLE_NODE_LABEL + role: "",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
            },
        },
        "spec": {},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "nodeInfo": {"osImage": "Fake CoreOS", "kubeletVersion": "v1.32.0"},
        },
    }


def docker_secret(
    name: str, namespace: str, host: str, creds: tuple[str, str], *, legacy: bool = False
) -> dict[str, Any]:
    """A registry credential Secret; ``legacy``: of type dockercfg (the bare auths map)."""
    auths = {host: {"auth": base64.b64encode(":".join(creds).encode()).decode()}}
    payload = auths if legacy else {"auths": auths}
    key = ".dockercfg" if legacy else ".dockerconfigjson"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/dockercfg" if legacy else "kubernetes.io/dockerconfigjson",
        "data": {key: base64.b64encode(json.dumps(payload).encode()).decode()},
    }


def machineosconfig(
    pool: str,
    push_spec: str,
    containerfile: str | None = None,
    *,
    pull_secret: str = "demo-pull-secret",
    push_secret: str = "demo-push-secret",
) -> dict[str, Any]:
    """An admin's MachineOSConfig opting ``pool`` in: images pushed to ``push_spec`` (its tag replaced per
    build), the local cluster's registry Secrets, and a ``NoArch`` Containerfile when given."""
    spec: dict[str, Any] = {
        "machineConfigPool": {"name": pool},
        "imageBuilder": {"imageBuilderType": "Job"},
        "baseImagePullSecret": {"name": pull_secret},
        "renderedImagePushSecret": {"name": push_secret},
        "renderedImagePushSpec": push_spec,
    }
    if containerfile is not None:
        spec["containerFile"] = [{"containerfileArch": "NoArch", "content": containerfile}]
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineOSConfig",
        "metadata": {"name": pool},
        "spec": spec,
    }
