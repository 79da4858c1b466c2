"""Admission verdicts (contract sections 7 and 11): one function per kind, and :func:`review` to dispatch.

Pure: an :class:`~webhooks.review.AdmissionRequest` and :class:`~webhooks.facts.ClusterFacts` in, a
:class:`~webhooks.review.Verdict` out. Nothing here writes anything, so every verdict is dry-run safe.
Every denial names the object (kind and name), the field, and what to do instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mcosup.model import machineosconfig, names, objects
from mcosup.model.imageref import InvalidImageRef, parse_image_ref
from mcosup.model.machineconfig import problems, undeliverable_files
from mcosup.model.node import DAEMON_ANNOTATIONS, SUPERVISOR_ANNOTATIONS, SUPERVISOR_LABELS
from webhooks.facts import ClusterFacts
from webhooks.review import AdmissionRequest, MalformedReview, Verdict

# A denial lists at most this many problems; kubectl shows the whole message, so keep it readable.
_MAX_LISTED = 20

_UNDELIVERABLE_FIX = (
    "an OS image owns /etc and /usr only, so the daemon would have to write this file directly, which "
    "layered mode forbids; move the file under /etc or /usr, or create it at boot with a systemd unit "
    "or a tmpfiles.d line in /etc/tmpfiles.d/"
)


def _name(request: AdmissionRequest) -> str:
    obj = request["object"] or request["oldObject"] or {}
    metadata = obj.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if isinstance(name, str) and name:
        return name
    if isinstance(metadata, Mapping) and isinstance(metadata.get("generateName"), str):
        return str(metadata["generateName"]) + "<generated>"
    return request["name"] or "<unnamed>"


def _listing(header: str, lines: Sequence[str]) -> str:
    shown = [f"  - {line}" for line in lines[:_MAX_LISTED]]
    if len(lines) > _MAX_LISTED:
        shown.append(f"  - ... and {len(lines) - _MAX_LISTED} more")
    return header + "\n" + "\n".join(shown)


def _object(request: AdmissionRequest) -> dict[str, Any]:
    obj = request["object"]
    if obj is None:
        raise MalformedReview(f"request.object is required for {request['operation']}")
    return obj


def _rendered_by_supervisor(request: AdmissionRequest, name: str, facts: ClusterFacts) -> bool:
    return request["userInfo"]["username"] == facts.supervisor_username and name.startswith(
        names.RENDERED_PREFIX
    )


def machineconfig_verdict(request: AdmissionRequest, facts: ClusterFacts) -> Verdict:
    """MachineConfig create/update: valid Ignition; nothing an opted-in pool's image cannot deliver."""
    if request["operation"] not in ("CREATE", "UPDATE"):
        return Verdict.allow()
    mc = _object(request)
    name = _name(request)
    old = request["oldObject"] if request["operation"] == "UPDATE" else None
    labels = objects.labels_of(mc)
    spec_unchanged = old is not None and old.get("spec") == mc.get("spec")
    if spec_unchanged and old is not None and objects.labels_of(old) == labels:
        # Metadata-only change (finalizers, ownerReferences, annotations): never block garbage
        # collection or controllers over a spec that was admitted earlier.
        return Verdict.allow()

    lines = [] if spec_unchanged else [f"{p.field}: {p.message}" for p in problems(mc)]
    layered = facts.layered_pools_selecting(labels)
    if layered and not _rendered_by_supervisor(request, name, facts):
        pool_names = ", ".join(p.name for p in layered)
        by_label = ", ".join(p.name for p in layered if not p.by_machineosconfig)
        by_object = ", ".join(p.name for p in layered if p.by_machineosconfig)
        opt_out = " and ".join(
            ([f"remove label {names.LAYERING_ENABLED} from pool {by_label}"] if by_label else [])
            + ([f"delete {names.MACHINEOSCONFIG_KIND} {by_object}"] if by_object else [])
        )
        for field, path in undeliverable_files(mc):
            lines.append(
                f"{field}: {path} cannot be delivered to layered pool {pool_names}: {_UNDELIVERABLE_FIX}; "
                f"or {opt_out} to return it to file-by-file configuration"
            )
    if lines:
        return Verdict.deny(_listing(f"MachineConfig {name} is refused:", lines))
    warnings = [
        f"pool {p.name} is layered: this change triggers an image build, then a rolling reboot of its nodes"
        for p in layered
        if not spec_unchanged
    ]
    return Verdict.allow(*warnings)


def _changed(old: Mapping[str, str], new: Mapping[str, str], keys: Sequence[str]) -> list[str]:
    return [key for key in keys if old.get(key) != new.get(key)]


def _field(kind: str, key: str) -> str:
    return f"metadata.{kind}[{key}]"


def node_verdict(request: AdmissionRequest, facts: ClusterFacts) -> Verdict:
    """Node update: mode and desired* belong to the supervisor; reports to the node's own daemon."""
    if request["operation"] != "UPDATE" or request["subResource"]:
        return Verdict.allow()
    new = _object(request)
    old = request["oldObject"]
    if old is None:
        # Without the old object every guarded key would look newly set: refuse to guess.
        raise MalformedReview("request.oldObject is required for a Node UPDATE")
    node = _name(request)
    user = request["userInfo"]["username"]
    if user == facts.supervisor_username:
        return Verdict.allow()

    old_labels, new_labels = objects.labels_of(old), objects.labels_of(new)
    old_ann, new_ann = objects.annotations_of(old), objects.annotations_of(new)
    supervisor_fields = [_field("labels", k) for k in _changed(old_labels, new_labels, SUPERVISOR_LABELS)]
    supervisor_fields += [
        _field("annotations", k) for k in _changed(old_ann, new_ann, SUPERVISOR_ANNOTATIONS)
    ]
    daemon_fields = [_field("annotations", k) for k in _changed(old_ann, new_ann, DAEMON_ANNOTATIONS)]

    if supervisor_fields:
        layered = old_labels.get(names.DAEMON_MODE) == names.MODE_LAYERED or names.DESIRED_IMAGE in old_ann
        if layered and old_ann.get(names.DESIRED_CONFIG) != new_ann.get(names.DESIRED_CONFIG):
            return Verdict.deny(
                f"Node {node} is layered ({names.DAEMON_MODE}={names.MODE_LAYERED}): "
                f"{_field('annotations', names.DESIRED_CONFIG)} cannot be set by {user}; direct "
                "MachineConfig application is blocked in layered mode. Change the pool's MachineConfigs and "
                "mcosup builds a new image and rolls it out, or remove label "
                f"{names.LAYERING_ENABLED} from the pool to return its nodes to file-by-file configuration"
            )
        return Verdict.deny(
            f"Node {node}: {', '.join(supervisor_fields)} may only be changed by mcosup's supervisor "
            f"({facts.supervisor_username}), not by {user}. Revert the change: to move nodes between modes "
            f"add or remove label {names.LAYERING_ENABLED} on their MachineConfigPool, and to stop updates "
            "set the pool's spec.paused: true"
        )
    if daemon_fields:
        if user == facts.daemon_username:
            own = request["userInfo"]["extra"].get(names.NODE_NAME_EXTRA, [])
            if not own:
                return Verdict.deny(
                    f"Node {node}: {', '.join(daemon_fields)} may only be changed by the daemon of node "
                    f"{node}, and this request's credential names no node (user extra "
                    f"{names.NODE_NAME_EXTRA} is missing); run the daemon with its pod's bound "
                    "service account token (the default projected token), which carries the node name"
                )
            if node not in own:
                return Verdict.deny(
                    f"Node {node}: {', '.join(daemon_fields)} may only be changed by the daemon running on "
                    f"node {node}; this request comes from the daemon on node {own[0]}. A daemon reports "
                    "only its own node: check the daemon's NODE_NAME (it must be the pod's spec.nodeName)"
                )
            return Verdict.allow()
        return Verdict.allow(
            f"Node {node}: {', '.join(daemon_fields)} are the daemon's report of the node's state; "
            f"changing them by hand ({user}) is a recovery step: "
            "the daemon overwrites them on its next report"
        )
    return Verdict.allow()


def pool_verdict(request: AdmissionRequest, facts: ClusterFacts) -> Verdict:
    """MachineConfigPool: opting in (or re-selecting while in) is refused over undeliverable files."""
    if request["operation"] not in ("CREATE", "UPDATE"):
        return Verdict.allow()
    pool = _object(request)
    name = _name(request)
    old = request["oldObject"] if request["operation"] == "UPDATE" else None
    now_layered = machineosconfig.opted_in(pool, facts.machineosconfigs)
    was_layered = old is not None and machineosconfig.opted_in(old, facts.machineosconfigs)
    if not now_layered:
        if was_layered:
            return Verdict.allow(
                f"pool {name} opts out of layering: its nodes are rolled back to the stock OS image and "
                "file-by-file configuration, one reboot per node within spec.maxUnavailable"
            )
        return Verdict.allow()
    spec = pool.get("spec") if isinstance(pool.get("spec"), Mapping) else {}
    selector = spec.get("machineConfigSelector") if isinstance(spec, Mapping) else None
    old_spec = old.get("spec") if old is not None and isinstance(old.get("spec"), Mapping) else {}
    old_selector = old_spec.get("machineConfigSelector") if isinstance(old_spec, Mapping) else None
    if was_layered and selector == old_selector:
        return Verdict.allow()

    lines = _undeliverable_selected(selector if isinstance(selector, Mapping) else None, facts)
    if lines:
        field = (
            f"metadata.labels[{names.LAYERING_ENABLED}]" if not was_layered else "spec.machineConfigSelector"
        )
        action = f"cannot add label {names.LAYERING_ENABLED}" if not was_layered else "cannot select them"
        return Verdict.deny(
            _listing(
                f"MachineConfigPool {name}: {field}: {action} while it selects MachineConfigs that write "
                f"paths an OS image cannot deliver ({', '.join(names.IMAGE_UNDELIVERABLE_PREFIXES)}); "
                f"{_UNDELIVERABLE_FIX}; then try again. Offending files:",
                lines,
            )
        )
    if not was_layered:
        return Verdict.allow(
            f"pool {name} opts in to layering: mcosup builds an OS image from its configuration "
            f"(ConfigMap {facts.namespace}/{names.BUILD_CONFIG_CM} is required) and then rebases its nodes "
            "onto it, one reboot per node"
        )
    return Verdict.allow()


def _undeliverable_selected(selector: Mapping[str, Any] | None, facts: ClusterFacts) -> list[str]:
    """Each file an image cannot deliver in the MachineConfigs ``selector`` selects, by config and path."""
    return [
        f"MachineConfig {(mc.get('metadata') or {}).get('name', '')} {field}: {path}"
        for mc in facts.machineconfigs_selected_by(selector)
        for field, path in undeliverable_files(mc)
    ]


def machineosconfig_verdict(request: AdmissionRequest, facts: ClusterFacts) -> Verdict:
    """MachineOSConfig create/update (contract section 11): a spec a build can use, for a pool that
    exists and can be layered; Secrets not created yet are a warning (builds wait for them)."""
    if request["operation"] not in ("CREATE", "UPDATE"):
        return Verdict.allow()
    mosc = _object(request)
    name = _name(request)
    old = request["oldObject"] if request["operation"] == "UPDATE" else None
    kind = f"{names.MACHINEOSCONFIG_KIND} {name}"
    # mcosup's settings annotations are judged when they change (a bad one an object already had is
    # not held against an edit of something else, such as mc/rebuild).
    settings = [
        p
        for p in machineosconfig.annotation_problems(mosc)
        if old is None or p not in machineosconfig.annotation_problems(old)
    ]
    if old is not None and old.get("spec") == mosc.get("spec"):
        # Otherwise metadata-only (mc/rebuild, the current build's annotation, finalizers): the spec was
        # judged when admitted.
        return Verdict.deny(_listing(f"{kind} is refused:", settings)) if settings else Verdict.allow()
    lines = machineosconfig.spec_problems(mosc) + settings
    pool_name = machineosconfig.pool_of(mosc)
    pool = facts.pool(pool_name) if pool_name else None
    if pool_name and pool is None:
        lines.append(
            f"{kind} spec.machineConfigPool.name: MachineConfigPool {pool_name} does not exist: create the "
            "pool first, or name an existing one (kubectl get machineconfigpools)"
        )
    managed = machineosconfig.is_managed(mosc)
    if pool is not None and not managed and not (old is not None and pool.layered):
        # An admin's MachineOSConfig is an opt-in, judged as the label is (the label's own object is
        # judged when the label is added).
        undeliverable = _undeliverable_selected(pool.machine_config_selector, facts)
        if undeliverable:
            lines.append(
                f"{kind} spec.machineConfigPool.name: opts pool {pool_name} in to layering while it selects "
                f"MachineConfigs that write paths an OS image cannot deliver "
                f"({', '.join(names.IMAGE_UNDELIVERABLE_PREFIXES)}); {_UNDELIVERABLE_FIX}; then try again. "
                "Offending files:"
            )
            lines += undeliverable
    if lines:
        return Verdict.deny(_listing(f"{kind} is refused:", lines))
    warnings = []
    if facts.secret_names is not None:
        for field, secret in machineosconfig.secret_refs(mosc):
            if secret not in facts.secret_names:
                warnings.append(
                    f"{kind} {field}: Secret {secret} does not exist in namespace {facts.namespace} yet: "
                    f"builds wait until it is created (kubectl -n {facts.namespace} create secret "
                    f"docker-registry {secret} ...)"
                )
    user = request["userInfo"]["username"]
    if managed and user != facts.supervisor_username:
        warnings.append(
            f"{kind} is made by mcosup from pool {pool_name}'s label {names.LAYERING_ENABLED} (label "
            f"{names.MANAGED_BY_LABEL}=true): the supervisor replaces its spec from ConfigMap "
            f"{facts.namespace}/{names.BUILD_CONFIG_CM}; edit that ConfigMap instead, or remove label "
            f"{names.MANAGED_BY_LABEL} to make this object yours"
        )
    if old is None and not managed and pool is not None and not pool.layered:
        warnings.append(
            f"pool {pool_name} opts in to layering: mcosup builds an OS image from its configuration and "
            "then rebases its nodes onto it, one reboot per node"
        )
    return Verdict.allow(*warnings)


def configmap_verdict(request: AdmissionRequest, facts: ClusterFacts) -> Verdict:
    """ConfigMap ``on-cluster-build-config``: required keys, a parseable pullspec, a known builder."""
    if request["operation"] not in ("CREATE", "UPDATE"):
        return Verdict.allow()
    cm = _object(request)
    name = _name(request)
    namespace = request["namespace"] or str((cm.get("metadata") or {}).get("namespace") or "")
    if name != names.BUILD_CONFIG_CM or namespace != facts.namespace:
        return Verdict.allow()
    raw = cm.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    lines: list[str] = []
    warnings: list[str] = []
    for key in names.REQUIRED_BUILD_CONFIG_KEYS:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            what = "is missing" if key not in data else "is empty"
            lines.append(f"data.{key} {what}: {_REQUIRED_HINTS[key]}")
    pullspec = data.get(names.FINAL_IMAGE_PULLSPEC_KEY)
    if isinstance(pullspec, str) and pullspec.strip():
        try:
            parse_image_ref(pullspec)
        except InvalidImageRef as exc:
            lines.append(
                f"data.{names.FINAL_IMAGE_PULLSPEC_KEY}: {exc}; expected the repository to push built images "
                "to, e.g. registry.example.com/namespace/os-image:latest"
            )
    builder = data.get(names.IMAGE_BUILDER_TYPE_KEY)
    if builder not in (None, "", *names.IMAGE_BUILDER_TYPES):
        lines.append(
            f"data.{names.IMAGE_BUILDER_TYPE_KEY}: {builder!r} is not a known builder type: use "
            f"{' or '.join(names.IMAGE_BUILDER_TYPES)}, or omit the key for the default"
        )
    if lines:
        return Verdict.deny(_listing(f"ConfigMap {namespace}/{name} is refused:", lines))
    if facts.secret_names is not None:
        for key in (names.BASE_IMAGE_PULL_SECRET_KEY, names.FINAL_IMAGE_PUSH_SECRET_KEY):
            secret = str(data.get(key, "")).strip()
            if secret and secret not in facts.secret_names:
                warnings.append(
                    f"ConfigMap {namespace}/{name}: data.{key} names Secret {secret}, which does not exist "
                    f"in namespace {namespace} yet: builds wait until it is created (type "
                    "kubernetes.io/dockerconfigjson)"
                )
    return Verdict.allow(*warnings)


_REQUIRED_HINTS = {
    names.BASE_IMAGE_PULL_SECRET_KEY: (
        "name the Secret (kubernetes.io/dockerconfigjson) used to pull the base OS image"
    ),
    names.FINAL_IMAGE_PUSH_SECRET_KEY: (
        "name the Secret (kubernetes.io/dockerconfigjson) used to push built images"
    ),
    names.FINAL_IMAGE_PULLSPEC_KEY: (
        "give the repository built images are pushed to, e.g. registry.example.com/namespace/os-image:latest"
    ),
}


def review(request: AdmissionRequest, facts: ClusterFacts) -> Verdict:
    """The verdict for ``request``, dispatched on its kind; kinds without a rule are allowed."""
    kind = request["kind"]
    key = (kind["group"], kind["kind"])
    if key == (names.GROUP, "MachineConfig"):
        return machineconfig_verdict(request, facts)
    if key == (names.GROUP, "MachineConfigPool"):
        return pool_verdict(request, facts)
    if key == (names.GROUP, names.MACHINEOSCONFIG_KIND):
        return machineosconfig_verdict(request, facts)
    if key == ("", "Node"):
        return node_verdict(request, facts)
    if key == ("", "ConfigMap"):
        return configmap_verdict(request, facts)
    return Verdict.allow(
        f"mcosup's admission webhook has no rule for {kind['group'] or 'core'}/{kind['kind']}: "
        "check the rules of its ValidatingWebhookConfiguration"
    )
