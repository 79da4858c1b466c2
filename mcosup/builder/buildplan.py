"""The build plan: everything about one OS image build that can be computed without I/O.

Pure (contract section 4): the build identity, the target tag, the build context (the rendered config
as a root filesystem tree), the Containerfile, the ephemeral ConfigMaps and Secrets and the build Pod
manifest. The builder process only reads inputs from the API, calls these and writes the results.

Choices written down here because the contract is silent on them:

- Files default to mode 0644 and owner root (an image layer has no per-host users to chown to).
- A unit with ``enabled: true`` gets the symlinks ``systemctl enable`` makes on a legacy node: one per
  ``WantedBy=``/``RequiredBy=``/``UpheldBy=``/``Alias=`` of its ``[Install]`` section. A unit whose
  contents name none is static and enabled nowhere, in either mode; ``Also=`` is not followed (list
  those units in the MachineConfig too). A unit with no contents is the base image's own, whose
  ``[Install]`` section the plan cannot read; it is linked into ``multi-user.target.wants``, where
  the stock OS's services are wanted. ``mask: true`` links a unit to /dev/null.
- The Containerfile travels as a plain ``data`` key of the first ConfigMap so a person debugging a
  failed build reads it with ``kubectl get configmap``; the root filesystem travels as a tar (gzipped
  when larger than 64 KiB) split over as many ConfigMaps as needed to stay under ~900 KiB each.
- The pull and push Secrets are mounted as they are; a ``kubernetes.io/dockercfg`` one (a bare auths
  map) is wrapped into ``{"auths": ...}`` by the build script, since buildah reads only that format.
  Without a pull Secret (a MachineOSConfig with no ``baseImagePullSecret``) buildah gets no
  ``--authfile`` for the base image: an anonymous pull.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import gzip
import hashlib
import io
import json
import posixpath
import re
import shlex
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mcosup.builder import buildpods
from mcosup.model import conditions, machineosbuild, names, rendering
from mcosup.model.hostconfig import (
    DEFAULT_FILE_MODE,
    UNIT_DIR,
    ConfigError,
    HostConfig,
    parse_machineconfig,
)
from mcosup.model.machineosconfig import BuildSettings
from mcosup.model.objects import Obj, ObjView, annotations_of
from mcosup.runtime.settings import PodOptions

#: Where the build Pod mounts things. Plain, recognisable paths: the kubelet stand-in rewrites them.
CONTEXT_MOUNT = "/etc/mcosup-build/context"
PULL_MOUNT = "/etc/mcosup-build/pull"
PUSH_MOUNT = "/etc/mcosup-build/push"
WORK_MOUNT = "/var/lib/mcosup-build"
TERMINATION_LOG = "/dev/termination-log"

CONTAINERFILE_KEY = "Containerfile"
ROOTFS_DIR = "rootfs"
#: Above this size the context tar is gzipped (below it gzip saves little and costs a decompress).
GZIP_THRESHOLD = 64 * 1024
#: Raw bytes per ConfigMap: base64 makes them 4/3 larger; 900 KiB encoded leaves room under the
#: API server's 1 MiB object limit for the metadata and the Containerfile.
CHUNK_BYTES = 900 * 1024 * 3 // 4

BASE_IMAGE_WANTED_BY = "multi-user.target"

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class BuildError(ValueError):
    """The rendered config cannot be built into an image; the message names the path or field."""


# --------------------------------------------------------------------------------------------- identity


@dataclasses.dataclass(frozen=True)
class BuildInputs:
    """Everything a build's result depends on."""

    pool: str
    rendered_name: str
    rendered_spec: Obj
    base_image: str
    custom_containerfile: str
    pullspec: str


def build_identity(inputs: BuildInputs) -> str:
    """sha256 (64 hex) over the rendered spec, base image, custom Containerfile and pullspec."""
    material = rendering.canonical_json(
        {
            "spec": inputs.rendered_spec,
            "baseImage": inputs.base_image,
            "containerfile": inputs.custom_containerfile,
            "pullspec": inputs.pullspec,
        }
    )
    return hashlib.sha256(material).hexdigest()


def split_pullspec(pullspec: str) -> tuple[str, str | None, str | None]:
    """``(repository, tag, digest)`` of an image reference; raises ValueError when it is not one."""
    ref = pullspec.strip()
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise ValueError(f"{pullspec!r}: digest {digest!r} is not sha256:<64 hex>")
    tag = None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
    if not ref or ref.endswith("/") or " " in ref or ref != ref.lower():
        raise ValueError(f"{pullspec!r} is not an image reference like registry.example.com/org/os:tag")
    return ref, tag, digest


def target_image(pullspec: str, pool: str, identity: str) -> str:
    """``<repo>:<pool>-<first 16 hex of identity>``; the user's tag or digest is replaced."""
    repo, _, _ = split_pullspec(pullspec)
    return f"{repo}:{pool}-{identity[:16]}"


def digested_pullspec(pullspec: str, digest: str) -> str:
    """``<repo>@sha256:<hex>``: how an image is recorded (never by tag)."""
    repo, _, _ = split_pullspec(pullspec)
    if not _DIGEST_RE.match(digest):
        raise ValueError(f"{digest!r} is not a sha256:<64 hex> digest")
    return f"{repo}@{digest}"


def build_name(pool: str, identity: str) -> str:
    """Name of the build Pod; its ConfigMaps and Secrets share it as a prefix."""
    return f"build-{pool}-{identity[:16]}"


# --------------------------------------------------------------------------------------------- context


@dataclasses.dataclass(frozen=True)
class Entry:
    """One node of the root filesystem tree: a file (``data``) or a symlink (``link``)."""

    path: str  # absolute, normalised
    mode: int = DEFAULT_FILE_MODE
    data: bytes = b""
    link: str | None = None


def _install_links(name: str, contents: str) -> list[str]:
    """The symlinks ``systemctl enable`` makes for a unit, relative to /etc/systemd/system:
    ``<target>.wants/<name>`` for ``WantedBy=``, ``.requires`` for ``RequiredBy=``, ``.upholds`` for
    ``UpheldBy=``, and ``<alias>`` for ``Alias=``."""
    out: list[str] = []
    section = ""
    for raw in contents.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Install" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if key == "Alias":
            out.extend(value.split())
        elif suffix := {"WantedBy": ".wants", "RequiredBy": ".requires", "UpheldBy": ".upholds"}.get(key):
            out.extend(f"{target}{suffix}/{name}" for target in value.split())
    return out


def _file_entries(rendered_name: str, config: HostConfig) -> list[Entry]:
    entries = []
    for f in config.files:
        if (owner := names.image_undeliverable(f.path)) is not None:
            raise BuildError(
                f"rendered config {rendered_name}: file {f.path} is under {owner}, which an OS image "
                "cannot deliver; move it under /etc or /usr, or remove it from the pool's MachineConfigs"
            )
        entries.append(Entry(path=f.path, mode=f.mode, data=f.contents))
    return entries


def _unit_entries(config: HostConfig) -> list[Entry]:
    entries = []
    for unit in config.units:
        if unit.mask:
            entries.append(Entry(path=unit.path, link="/dev/null", mode=0o777))
        elif unit.contents is not None:
            entries.append(Entry(path=unit.path, data=unit.contents.encode()))
        entries.extend(Entry(path=unit.dropin_path(d.name), data=d.contents.encode()) for d in unit.dropins)
        if unit.enabled and not unit.mask:
            if unit.contents is not None:
                link, links = unit.path, _install_links(unit.name, unit.contents)
            else:  # shipped by the base image, in /usr/lib
                link, links = (
                    f"/usr/lib/systemd/system/{unit.name}",
                    [f"{BASE_IMAGE_WANTED_BY}.wants/{unit.name}"],
                )
            entries.extend(Entry(path=f"{UNIT_DIR}/{rel}", link=link, mode=0o777) for rel in links)
    return entries


def build_context(rendered_name: str, spec: Mapping[str, Any]) -> list[Entry]:
    """The root filesystem tree of a rendered config, sorted by path.

    Raises BuildError naming the path of a file an image cannot deliver (contract section 4) or of two
    entries that cannot coexist (a file where another needs a directory).
    """
    # The one reader the legacy daemon uses too, which checks with the webhook's validation first: the
    # builder refuses exactly what admission and render refuse, and lays out what the daemon writes.
    try:
        config = parse_machineconfig({"metadata": {"name": rendered_name}, "spec": spec})
    except ConfigError as exc:
        raise BuildError(str(exc)) from None
    by_path: dict[str, Entry] = {}
    for entry in _file_entries(rendered_name, config) + _unit_entries(config):
        by_path[entry.path] = entry  # units are laid out after files: a unit wins over a file of its path
    paths = sorted(by_path)
    for path in paths:
        parent = posixpath.dirname(path)
        while parent != "/":
            if parent in by_path:
                raise BuildError(
                    f"rendered config {rendered_name}: {parent} is a file "
                    f"but {path} needs it to be a directory"
                )
            parent = posixpath.dirname(parent)
    return [by_path[p] for p in paths]


def containerfile(inputs: BuildInputs) -> str:
    """``FROM`` base, the root filesystem ``COPY``, the labels, then the pool's custom text."""
    labels = " ".join(
        f"{json.dumps(k)}={json.dumps(v)}"
        for k, v in ((names.RENDERED_CONFIG_LABEL, inputs.rendered_name), (names.POOL_LABEL, inputs.pool))
    )
    text = f"FROM {inputs.base_image}\nCOPY {ROOTFS_DIR}/ /\nLABEL {labels}\n"
    custom = inputs.custom_containerfile.strip("\n")
    if custom:
        text += "\n# custom Containerfile of pool " + inputs.pool + "\n" + custom + "\n"
    return text


def context_tar(entries: Sequence[Entry]) -> bytes:
    """A reproducible tar of ``rootfs/<path>`` (mtime 0, owner root), parent directories 0755."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = {ROOTFS_DIR}
        for entry in entries:
            parent = posixpath.dirname(entry.path)
            while parent != "/":
                dirs.add(ROOTFS_DIR + parent)
                parent = posixpath.dirname(parent)
        members: list[tuple[tarfile.TarInfo, bytes | None]] = []
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            members.append((info, None))
        for entry in entries:
            info = tarfile.TarInfo(ROOTFS_DIR + entry.path)
            if entry.link is not None:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.link, 0o777
                members.append((info, None))
            else:
                info.size, info.mode = len(entry.data), entry.mode
                members.append((info, entry.data))
        for info, data in sorted(members, key=lambda m: m[0].name):
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- objects


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    inputs: BuildInputs
    identity: str
    name: str
    target: str
    containerfile: str
    context: tuple[Entry, ...]

    @property
    def labels(self) -> dict[str, str]:
        return {
            names.BUILD_OBJECT_LABEL: "true",
            names.TARGET_POOL_LABEL: names.label_value(self.inputs.pool),
            names.RENDERED_CONFIG_LABEL: names.label_value(self.inputs.rendered_name),
        }

    @functools.cached_property
    def archive(self) -> tuple[str, bytes]:
        """``(file name, bytes)`` of the context archive: ``context.tar`` or ``context.tar.gz``.

        Made once per plan: the ConfigMaps carry it and the build Pod's script names its parts, and a
        build's start is on the path from opt-in to image.
        """
        tar = context_tar(self.context)
        if len(tar) > GZIP_THRESHOLD:
            return "context.tar.gz", gzip.compress(tar, mtime=0)
        return "context.tar", tar


def plan(inputs: BuildInputs) -> BuildPlan:
    """Everything needed to run a build of ``inputs``; raises BuildError when it cannot be built."""
    identity = build_identity(inputs)
    try:
        target = target_image(inputs.pullspec, inputs.pool, identity)
    except ValueError as exc:
        raise BuildError(f"{names.BUILD_CONFIG_CM}: {names.FINAL_IMAGE_PULLSPEC_KEY}: {exc}") from None
    return BuildPlan(
        inputs=inputs,
        identity=identity,
        name=build_name(inputs.pool, identity),
        target=target,
        containerfile=containerfile(inputs),
        context=tuple(build_context(inputs.rendered_name, inputs.rendered_spec)),
    )


def _metadata(name: str, build: BuildPlan, options: PodOptions, owner: Obj | None) -> Obj:
    meta: Obj = {"name": name, "namespace": options.namespace, "labels": dict(build.labels)}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return meta


def configmaps(build: BuildPlan, options: PodOptions, owner: Obj | None = None) -> list[Obj]:
    """The ephemeral ConfigMaps: ``<build>-context-<i>``, the archive split in order across them."""
    archive_name, archive = build.archive
    chunks = [archive[i : i + CHUNK_BYTES] for i in range(0, len(archive), CHUNK_BYTES)] or [b""]
    out = []
    for i, chunk in enumerate(chunks):
        cm: Obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(f"{build.name}-context-{i}", build, options, owner),
            "binaryData": {f"{archive_name}.{i:03d}": base64.b64encode(chunk).decode()},
        }
        if i == 0:
            cm["data"] = {CONTAINERFILE_KEY: build.containerfile}
        out.append(cm)
    return out


def dockerconfigjson(secret: Mapping[str, Any]) -> bytes:
    """Credentials of a dockerconfigjson or dockercfg Secret as ``{"auths": {...}}`` JSON bytes.

    Raises ValueError naming the Secret and what is wrong with it.
    """
    meta = secret.get("metadata") or {}
    where = f"Secret {meta.get('namespace', '')}/{meta.get('name', '?')}".replace(" /", " ")
    data = secret.get("data") or {}
    kind = secret.get("type")
    key = {
        "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
        "kubernetes.io/dockercfg": ".dockercfg",
    }.get(str(kind))
    if key is None:
        raise ValueError(
            f"{where}: type {kind!r} is not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg"
        )
    if key not in data:
        raise ValueError(f"{where}: has no {key} key")
    try:
        parsed = json.loads(base64.b64decode(data[key], validate=True))
    except ValueError:
        raise ValueError(f"{where}: {key} is not base64-encoded JSON") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{where}: {key} is not a JSON object")
    auths = parsed.get("auths") if key == ".dockerconfigjson" else parsed
    if not isinstance(auths, dict):
        raise ValueError(f"{where}: {key} has no auths object")
    return rendering.canonical_json({"auths": auths})


@dataclasses.dataclass(frozen=True)
class SecretRef:
    """A registry credential Secret the build Pod mounts as it is (never copied)."""

    name: str
    type: str = "kubernetes.io/dockerconfigjson"

    @property
    def legacy(self) -> bool:
        """``kubernetes.io/dockercfg``: the bare auths map, which buildah reads only once wrapped."""
        return self.type == "kubernetes.io/dockercfg"

    @property
    def key(self) -> str:
        return ".dockercfg" if self.legacy else ".dockerconfigjson"


def _authfile_lines(role: str, ref: SecretRef | None, mount: str) -> tuple[list[str], str]:
    """Shell lines preparing the ``--authfile`` option of ``role`` (pull/push), and that option ("" for
    no credentials: an anonymous pull)."""
    if ref is None:
        return [], ""
    if not ref.legacy:
        return [], f" --authfile {mount}/config.json"
    path = f"{WORK_MOUNT}/{role}-auth.json"
    return [f'printf \'{{"auths":%s}}\' "$(cat {mount}/dockercfg)" > {path}'], f" --authfile {path}"


def build_script(
    build: BuildPlan,
    options: PodOptions,
    context_parts: Sequence[str],
    pull: SecretRef | None,
    push: SecretRef,
) -> str:
    """The shell script the build container runs: unpack, build, push writing the digest."""
    q = shlex.quote
    storage = f"--storage-driver vfs --root {WORK_MOUNT}/storage --runroot {WORK_MOUNT}/run"
    tls = "" if options.tls_verify else " --tls-verify=false"
    unpack = "tar -xzf -" if context_parts and context_parts[0].endswith(".gz.000") else "tar -xf -"
    parts = " ".join(q(f"{CONTEXT_MOUNT}-{i}/{p}") for i, p in enumerate(context_parts))
    pull_lines, pull_auth = _authfile_lines("pull", pull, PULL_MOUNT)
    push_lines, push_auth = _authfile_lines("push", push, PUSH_MOUNT)
    return "\n".join(
        [
            "set -eu",
            f"mkdir -p {WORK_MOUNT}/context",
            *pull_lines,
            *push_lines,
            f"cat {parts} | (cd {WORK_MOUNT}/context && {unpack})",
            f"buildah {storage} bud --isolation chroot{tls}{pull_auth}"
            f" --file {CONTEXT_MOUNT}-0/{CONTAINERFILE_KEY} --tag {q(build.target)} {WORK_MOUNT}/context",
            f"buildah {storage} push{tls}{push_auth}"
            f" --digestfile {TERMINATION_LOG} {q(build.target)} docker://{q(build.target)}",
            "",
        ]
    )


def build_pod(
    build: BuildPlan,
    options: PodOptions,
    owner: Obj | None = None,
    *,
    pull: SecretRef | None,
    push: SecretRef,
) -> Obj:
    """The build Pod: one buildah container, context from the ConfigMaps, credentials from the Secrets.

    The build config's Secrets are mounted as they are (only their credential key), so no copy of a
    credential is ever written and the builder needs no right to create Secrets.
    """
    cms = configmaps(build, options, owner)
    parts = [next(iter(cm["binaryData"])) for cm in cms]
    volumes: list[Obj] = [
        {"name": f"context-{i}", "configMap": {"name": cm["metadata"]["name"]}} for i, cm in enumerate(cms)
    ]
    mounts: list[Obj] = [
        {"name": f"context-{i}", "mountPath": f"{CONTEXT_MOUNT}-{i}", "readOnly": True}
        for i in range(len(cms))
    ]
    for role, ref, mount in (("pull", pull, PULL_MOUNT), ("push", push, PUSH_MOUNT)):
        if ref is None:
            continue
        item = {"key": ref.key, "path": "dockercfg" if ref.legacy else "config.json"}
        volumes.append({"name": f"{role}-secret", "secret": {"secretName": ref.name, "items": [item]}})
        mounts.append({"name": f"{role}-secret", "mountPath": mount, "readOnly": True})
    volumes.append({"name": "work", "emptyDir": {}})
    mounts.append({"name": "work", "mountPath": WORK_MOUNT})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(build.name, build, options, owner),
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": options.service_account,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "build",
                    "image": options.buildah_image,
                    "command": ["/bin/sh", "-c", build_script(build, options, parts, pull, push)],
                    "env": [
                        {"name": "STORAGE_DRIVER", "value": "vfs"},
                        {"name": "BUILDAH_ISOLATION", "value": "chroot"},
                    ],
                    "resources": {"requests": {"cpu": options.cpu_request, "memory": options.memory_request}},
                    # buildah's chroot isolation needs to create mount and user namespaces.
                    "securityContext": {"privileged": True},
                    "terminationMessagePath": TERMINATION_LOG,
                    # The digest on success; the log's tail when the build fails before writing it, so
                    # the failure is readable from the Pod's status alone.
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        },
    }


def build_job(
    build: BuildPlan,
    options: PodOptions,
    owner: Obj | None = None,
    *,
    pull: SecretRef | None,
    push: SecretRef,
    backoff_limit: int,
    deadline_seconds: int,
) -> Obj:
    """The build Job (contract section 4): the build Pod as its template (``restartPolicy: Never``), retried
    ``backoff_limit`` times by the Job controller, stopped after ``deadline_seconds``."""
    pod = build_pod(build, options, pull=pull, push=push)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(build.name, build, options, owner),
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": deadline_seconds,
            "template": {"metadata": {"labels": dict(build.labels)}, "spec": pod["spec"]},
        },
    }


# --------------------------------------------------------------------------------------------- decide
#
# What the builder does next for one pool, from facts read out of its caches (and, when the decision
# needs it, the registry's answer): a small step the reconciler in ``build`` executes. Table-tested.


@dataclasses.dataclass(frozen=True)
class RegistryAnswer:
    """What the registry serves for the build's target tag: a digest, or None (it has no such image)."""

    digest: str | None


@dataclasses.dataclass(frozen=True)
class Facts:
    """Everything a pool's next build step depends on."""

    pool: ObjView
    opted_in: bool
    #: The pool's rendered config's name ("" when it has none yet), and whether that object exists.
    rendered: str
    rendered_found: bool
    #: The build inputs, or why there are none (a message naming the object, the field and the fix).
    inputs: BuildInputs | str
    #: The settings the inputs come from (Secrets to mount and to ask the registry with, the timeout).
    settings: BuildSettings | None
    #: The pool's MachineOSConfig (an admin's, or the one its label stands for), None until it exists.
    mosc: ObjView | None
    #: The MachineOSBuilds, the build Jobs and the build Pods of the pool.
    builds: Sequence[ObjView]
    jobs: Sequence[ObjView]
    pods: Sequence[ObjView]
    #: None until the registry was asked (see :class:`AskRegistry`).
    registry: RegistryAnswer | None = None
    #: The build Job's Pods as the API server lists them, None until it was asked (see :class:`AskPods`).
    job_pods: Sequence[ObjView] | None = None


@dataclasses.dataclass(frozen=True)
class StopBuilding:
    """The pool is not opted in: delete its unfinished builds (the rest of opt-out is the supervisor's)."""


@dataclasses.dataclass(frozen=True)
class Report:
    """Make ``condition`` the pool's True build condition; ``drop_builds``: delete its unfinished builds."""

    condition: str
    reason: str
    message: str
    drop_builds: bool = False


@dataclasses.dataclass(frozen=True)
class AskRegistry:
    """Ask the registry for the build's target tag, then decide again with the answer."""

    plan: BuildPlan


@dataclasses.dataclass(frozen=True)
class AskPods:
    """The cache shows Job ``job`` Complete but none of its Pods with the image's digest: Jobs and Pods
    come from two watches, and one can lag (cut, relisting) behind the other. List the Job's Pods from
    the API server, then decide again with them."""

    plan: BuildPlan
    job: str


@dataclasses.dataclass(frozen=True)
class Recorded:
    """The pool records build ``mosb``'s image: keep the MachineOSConfig in step, drop other builds."""

    plan: BuildPlan
    mosb: str
    image: str


@dataclasses.dataclass(frozen=True)
class Record:
    """Build ``mosb`` (created when missing) Succeeded with ``image``: make it the pool's current one."""

    plan: BuildPlan
    mosb: str
    image: str
    how: str


@dataclasses.dataclass(frozen=True)
class Forget:
    """Delete MachineOSBuild ``mosb`` so that its config is built again (``why``)."""

    plan: BuildPlan
    mosb: str
    why: str


@dataclasses.dataclass(frozen=True)
class Rebuilt:
    """The rebuild asked for by ``mc/rebuild`` has its new MachineOSBuild: remove the annotation."""

    plan: BuildPlan
    mosb: str


@dataclasses.dataclass(frozen=True)
class Start:
    """Create build ``mosb`` (when missing), its ConfigMaps and its Job."""

    plan: BuildPlan
    mosb: str


@dataclasses.dataclass(frozen=True)
class Follow:
    """Build ``mosb``'s Job is waiting for its Pod (``running`` False) or building: report it."""

    plan: BuildPlan
    mosb: str
    job: str
    running: bool


@dataclasses.dataclass(frozen=True)
class Failed:
    """Build ``mosb`` failed for good (``why``); ``pod``: the last attempt, whose log tells more."""

    plan: BuildPlan
    mosb: str
    why: str
    pod: str | None


@dataclasses.dataclass(frozen=True)
class Interrupt:
    """Build ``mosb``'s Job was deleted mid-build: the build is Interrupted (then starts again anew)."""

    plan: BuildPlan
    mosb: str
    job: str


Step = (
    StopBuilding
    | Report
    | AskRegistry
    | AskPods
    | Recorded
    | Record
    | Forget
    | Rebuilt
    | Start
    | Follow
    | Failed
    | Interrupt
)


def _name(obj: ObjView) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _phase(pod: ObjView) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _recorded(pool: ObjView, image: str) -> bool:
    """The pool records ``image`` (annotation and BuildSuccess)."""
    annotations = (pool.get("metadata") or {}).get("annotations") or {}
    return annotations.get(names.NEWEST_IMAGE_ANNOTATION) == image and conditions.is_true(
        pool, names.BUILD_SUCCESS
    )


def _pods_of(pods: Iterable[ObjView], job: str) -> list[ObjView]:
    """Job ``job``'s Pods, oldest first."""
    return sorted(
        (p for p in pods if _owned_by(p, job)),
        key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""),
    )


def _built_image(pods: Sequence[ObjView], pullspec: str) -> str | None:
    """The image a Pod that succeeded wrote the digest of (in its termination message), if one did."""
    for pod in pods:
        if _phase(pod) == "Succeeded":
            digest = str(buildpods.termination(pod).get("message") or "").strip()
            try:
                return digested_pullspec(pullspec, digest)
            except ValueError:
                continue  # no digest in its termination message: not a result
    return None


def _owned_by(pod: ObjView, job: str) -> bool:
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("kind") == "Job" and r.get("name") == job for r in refs)


def _job_end(job: ObjView) -> Mapping[str, Any] | None:
    """The Job's terminal condition (``Complete`` or ``Failed`` True), None while it runs."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond  # type: ignore[no-any-return]
    return None


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60}m{rest % 60}s"


def failed_message(build: BuildPlan, mosb_name: str, detail: str) -> str:
    """The pool's BuildFailed message for a build that failed for good with ``detail`` (its record's
    Failed message): the same words whether the failure was just seen or read back from the record."""
    return (
        f"build of {build.target} for {build.inputs.rendered_name} (MachineOSBuild {mosb_name}): {detail}\n"
        "Giving up until the config changes."
    )


def decide(facts: Facts) -> Step:
    """The pool's next build step (contract sections 4 and 11)."""
    if not facts.opted_in:
        return StopBuilding()
    pending = names.BUILD_PENDING
    if not facts.rendered:
        return Report(pending, "WaitingForRender", "the pool has no rendered config yet")
    if not facts.rendered_found:
        return Report(pending, "WaitingForRender", f"rendered config {facts.rendered} is not there yet")
    if isinstance(facts.inputs, str):
        return Report(pending, "InvalidConfig", facts.inputs)
    try:
        build = plan(facts.inputs)
    except BuildError as exc:
        return Report(names.BUILD_FAILED, "CannotBuild", str(exc), drop_builds=True)
    pool_name = facts.inputs.pool
    if facts.mosc is None:
        return Report(
            pending,
            "WaitingForMachineOSConfig",
            f"MachineOSConfig {pool_name} does not exist yet (the supervisor makes it from the pool's "
            f"{names.LAYERING_ENABLED} label and ConfigMap {names.BUILD_CONFIG_CM})",
        )
    base = machineosbuild.name_for(pool_name, build.identity)
    starts = sorted(
        (restart, b)
        for b in facts.builds
        if (restart := machineosbuild.restart_of(_name(b), base)) is not None
    )
    restart, mosb = starts[-1] if starts else (0, None)
    if mosb is not None and (mosb.get("metadata") or {}).get("deletionTimestamp"):
        # Being deleted, held by its image's pruning (a node may still boot it): it is no build to
        # follow or reuse, and its name is taken until it goes, so the next build is the next restart.
        restart, mosb = restart + 1, None
    mosb_name = machineosbuild.name_for(pool_name, build.identity, restart)
    if names.REBUILD_ANNOTATION in annotations_of(facts.mosc):
        # mc/rebuild: the finished build goes, a new one starts (never a reuse), then the annotation goes.
        if mosb is None:
            return Start(build, mosb_name)
        if machineosbuild.is_final(mosb):
            return Forget(build, mosb_name, f"{names.REBUILD_ANNOTATION} on MachineOSConfig {pool_name}")
        return Rebuilt(build, mosb_name)
    built = machineosbuild.succeeded_image(mosb)
    if built is not None:
        if _recorded(facts.pool, built):
            return Recorded(build, mosb_name, built)
        if machineosbuild.current_build_name(facts.mosc) == mosb_name:
            return Record(build, mosb_name, built, f"built by MachineOSBuild {mosb_name}")
        # A config seen before: its build is reused when the registry still has the image.
        if facts.registry is None:
            return AskRegistry(build)
        if facts.registry.digest is not None and built.endswith("@" + facts.registry.digest):
            return Record(
                build,
                mosb_name,
                built,
                f"MachineOSBuild {mosb_name} reused: its image is still in the registry",
            )
        return Forget(build, mosb_name, "the registry no longer has its image")
    if mosb is None:
        if facts.registry is None:
            return AskRegistry(build)
        if facts.registry.digest is not None:
            image = digested_pullspec(facts.inputs.pullspec, facts.registry.digest)
            return Record(build, mosb_name, image, "found in the registry, reused without building")
        return Start(build, mosb_name)
    state = machineosbuild.state(mosb)
    if state == names.MOSB_INTERRUPTED:
        return Start(build, machineosbuild.name_for(pool_name, build.identity, restart + 1))
    if state == names.MOSB_FAILED:
        failed = conditions.find((mosb.get("status") or {}).get("conditions"), names.MOSB_FAILED) or {}
        return Report(
            names.BUILD_FAILED,
            "BuildFailed",
            failed_message(build, mosb_name, str(failed.get("message", ""))),
        )
    job_name = machineosbuild.job_name(mosb_name)
    job = next((j for j in facts.jobs if _name(j) == job_name), None)
    if job is None:
        if machineosbuild.builder_job(mosb) is not None:
            return Interrupt(build, mosb_name, job_name)
        return Start(build, mosb_name)
    pods = _pods_of(facts.pods, job_name)
    # A Pod that succeeded with the digest is the result: the Job's Complete condition comes up to a
    # sync period (1 s) later and adds nothing.
    if (pushed := _built_image(pods, facts.inputs.pullspec)) is not None:
        return Record(build, mosb_name, pushed, f"built by Job {job_name}")
    end = _job_end(job)
    if end is None:
        return Follow(build, mosb_name, job_name, any(_phase(p) == "Running" for p in pods))
    if end.get("type") == "Complete":
        # Never failed on the Pod cache alone: its watch may not have shown the Pod's success yet.
        if facts.job_pods is None:
            return AskPods(build, job_name)
        listed = _pods_of(facts.job_pods, job_name)
        if (pushed := _built_image(listed, facts.inputs.pullspec)) is not None:
            return Record(build, mosb_name, pushed, f"built by Job {job_name}")
        last = _name(listed[-1]) if listed else None
        return Failed(build, mosb_name, f"Job {job_name} completed without writing the image's digest", last)
    last = _name(pods[-1]) if pods else None
    if end.get("reason") == "DeadlineExceeded":
        timeout = facts.settings.timeout_seconds if facts.settings else 0
        why = (
            f"Job {job_name} ran longer than the build timeout of {_duration(timeout)} "
            f"({names.BUILD_TIMEOUT_ANNOTATION} on MachineOSConfig {pool_name}): raise the annotation, "
            "or make the build faster"
        )
        return Failed(build, mosb_name, why, last)
    attempts = int((job.get("status") or {}).get("failed") or 0)
    return Failed(build, mosb_name, f"Job {job_name} failed {attempts} times ({end.get('reason')})", last)
