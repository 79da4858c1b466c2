"""The Machine OS Builder pod: its manifest, when it is needed, and its restart policy. Pure.

The supervisor owns the pod's life (``restartPolicy: Never``): when it exits or vanishes while still
needed, it is recreated after an exponential backoff, and three quick failures in a row are reported
as ``BuilderCrashLooping``.

It is needed while a pool can build, and also while a MachineOSBuild being deleted still carries
``mc/prune-image`` (:func:`awaiting_prune`): only the builder deletes its image and removes that
finalizer, so after the last pool opts out (its MachineOSConfig deleted, its builds with it) the
builder stays until every image is dealt with — the deletion waits while a node still names the
image — rather than leaving objects nobody releases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from mcosup.model import names
from mcosup.model.objects import Obj

#: A builder that ran at least this long before failing is not "quick": its backoff starts over.
QUICK_FAILURE_SECONDS = 120.0
#: Quick failures in a row before the pool is told the builder is crash-looping.
CRASHLOOP_AFTER = 3


@dataclasses.dataclass(frozen=True)
class BuilderPodSpec:
    namespace: str
    image: str
    #: The supervisor's Deployment (name, uid) when running in a cluster: the pod's owner, so uninstalling
    #: mcosup removes it too.
    owner: tuple[str, str] | None = None
    command: tuple[str, ...] = ("mcosup", "builder")
    #: Extra environment (the build settings the supervisor was given).
    env: tuple[tuple[str, str], ...] = ()
    cpu_request: str = "50m"
    memory_request: str = "128Mi"


def manifest(spec: BuilderPodSpec) -> Obj:
    metadata: Obj = {
        "name": names.BUILDER_POD,
        "namespace": spec.namespace,
        "labels": {names.BUILDER_APP_LABEL: names.BUILDER_APP_VALUE},
    }
    if spec.owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": spec.owner[0],
                "uid": spec.owner[1],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "serviceAccountName": names.BUILDER_SA,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "machine-os-builder",
                    "image": spec.image,
                    "command": list(spec.command),
                    "env": [
                        {"name": "MCOSUP_NAMESPACE", "value": spec.namespace},
                        *({"name": k, "value": v} for k, v in spec.env),
                    ],
                    "resources": {"requests": {"cpu": spec.cpu_request, "memory": spec.memory_request}},
                    "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
                }
            ],
        },
    }


def awaiting_prune(machineosbuilds: Iterable[Mapping[str, Any]]) -> list[str]:
    """The MachineOSBuilds being deleted whose image the builder has still to deal with."""
    return sorted(
        str(meta.get("name", ""))
        for mosb in machineosbuilds
        if (meta := mosb.get("metadata") or {}).get("deletionTimestamp")
        and names.PRUNE_IMAGE_FINALIZER in (meta.get("finalizers") or ())
    )


def finished(pod: Mapping[str, Any]) -> bool:
    """The pod will never run again (restartPolicy Never): it must be replaced."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def running(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return all(
        c.get("ready", False) or "running" in (c.get("state") or {})
        for c in status.get("containerStatuses") or [{}]
    )


@dataclasses.dataclass
class RestartTracker:
    """Backoff state of the builder pod's restarts (memory only: a supervisor restart starts afresh)."""

    base: float = 5.0
    cap: float = 300.0
    quick_failures: int = 0
    restarts: int = 0
    not_before: float = 0.0

    def failed(self, now: float, lifetime: float | None) -> float:
        """Record an exit/vanishing after ``lifetime`` seconds; returns the delay before recreating."""
        self.restarts += 1
        if lifetime is not None and lifetime >= QUICK_FAILURE_SECONDS:
            self.quick_failures = 1
        else:
            self.quick_failures += 1
        delay = min(self.cap, self.base * 2 ** (self.quick_failures - 1))
        self.not_before = now + delay
        return float(delay)

    @property
    def crashlooping(self) -> bool:
        return self.quick_failures >= CRASHLOOP_AFTER

    def healthy(self) -> None:
        """The pod has been running for a while: forget past failures."""
        self.quick_failures = 0
