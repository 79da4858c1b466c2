"""The Machine OS Builder's reconciler: one key per opted-in pool, level-triggered (contract section 4).

``reconcile(pool)`` reads everything from caches, works out the build the pool needs now (its build
identity) and moves it one step: reuse an image the registry still has, create the build objects,
report the build Pod's progress, record the digest, retry a failure with backoff, or remove builds that
are no longer current. It keeps no state of its own between calls: build Pods are found by name and
labels, and a finished success is recognised from the pool's own status, so a restarted builder
continues where the last one stopped.

Object names carry the identity (``build-<pool>-<16 hex>``, retries ``...-retry-<n>``): a build for
any other name is stale by definition, and nothing from a stale build is ever recorded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import aiohttp

from mcosup.builder import buildplan, buildpods, manifests
from mcosup.control.controller import Result
from mcosup.control.poolstatus import update_pool_status
from mcosup.kube import errors
from mcosup.kube.client import Kube
from mcosup.kube.resources import (
    CONFIGMAPS,
    MACHINECONFIGPOOLS,
    MACHINECONFIGS,
    MACHINEOSBUILDS,
    MACHINEOSCONFIGS,
    PODS,
    Resource,
)
from mcosup.model import conditions, machineosbuild, machineosconfig, names
from mcosup.model.conditions import Condition
from mcosup.model.machineosconfig import BuildSettings, opted_in
from mcosup.model.objects import Obj, ObjView, rendered_config
from mcosup.runtime.logs import fields
from mcosup.runtime.settings import BuilderSettings

log = logging.getLogger(__name__)


class StaleBuild(Exception):
    """A build finished for inputs that are no longer the pool's; reconciling again moves on."""


class Cache(Protocol):
    def get(self, name: str, namespace: str | None = None) -> Obj | None: ...

    def items(self) -> Iterator[Obj]: ...


@dataclasses.dataclass(frozen=True)
class Caches:
    pools: Cache
    machineconfigs: Cache
    configmaps: Cache  # the namespace's
    secrets: Cache  # the namespace's
    pods: Cache  # the namespace's build Pods (label mc/build-object)
    machineosconfigs: Cache
    machineosbuilds: Cache


class _Snapshot:
    """Objects read fresh from the API, answering like a cache."""

    def __init__(self) -> None:
        self._objects: dict[str, Obj] = {}

    def put(self, obj: Obj) -> None:
        self._objects[_name(obj)] = obj

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return self._objects.get(name)

    def items(self) -> Iterator[Obj]:
        return iter(list(self._objects.values()))


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


class Builder:
    """``reconcile(pool_name)`` for the controller runner; see the module docstring."""

    def __init__(
        self,
        kube: Kube,
        caches: Caches,
        settings: BuilderSettings,
        *,
        http: aiohttp.ClientSession,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.kube = kube
        self.caches = caches
        self.settings = settings
        self.http = http
        self.wall_clock = wall_clock
        self.ns = settings.namespace

    # ----------------------------------------------------------------------------------------- reconcile

    async def reconcile(self, pool_name: str) -> Result | None:
        try:
            return await self._reconcile(pool_name)
        except StaleBuild as exc:
            log.info("%s; reconciling again with fresh state", exc, extra=fields(pool=pool_name))
            return Result(requeue_after=0.5)
        except errors.Conflict as exc:
            # A MachineOSBuild or MachineOSConfig changed since the cache showed it.
            log.info("%s; reconciling again with fresh state", exc, extra=fields(pool=pool_name))
            return Result(requeue_after=0.5)

    async def _reconcile(self, pool_name: str) -> Result | None:
        pool = self.caches.pools.get(pool_name)
        if pool is None or not opted_in(pool, self.caches.machineosconfigs.items()):
            # Opt-out cleanup (objects, conditions, annotation) is the supervisor's; only stop building.
            await self._delete_builds(pool_name, keep=None)
            return None
        rendered_name = rendered_config(pool) or ""
        if not rendered_name:
            await self._state(
                pool, names.BUILD_PENDING, "WaitingForRender", "the pool has no rendered config yet"
            )
            return None
        rendered = self.caches.machineconfigs.get(rendered_name)
        if rendered is None:
            await self._state(
                pool,
                names.BUILD_PENDING,
                "WaitingForRender",
                f"rendered config {rendered_name} is not there yet",
            )
            return None
        inputs_or_problem = self._inputs(pool_name, rendered)
        if isinstance(inputs_or_problem, str):
            await self._state(pool, names.BUILD_PENDING, "InvalidConfig", inputs_or_problem)
            return None
        config, inputs = inputs_or_problem
        try:
            plan = buildplan.plan(inputs)
        except buildplan.BuildError as exc:
            await self._delete_builds(pool_name, keep=None)
            await self._state(pool, names.BUILD_FAILED, "CannotBuild", str(exc))
            return None

        mosc = machineosconfig.machineosconfig_for(pool_name, self.caches.machineosconfigs.items())
        if mosc is None:
            await self._state(
                pool,
                names.BUILD_PENDING,
                "WaitingForMachineOSConfig",
                f"MachineOSConfig {pool_name} does not exist yet (the supervisor makes it from the pool's "
                f"{names.LAYERING_ENABLED} label and ConfigMap {self.ns}/{names.BUILD_CONFIG_CM})",
            )
            return None
        mosb_name = machineosbuild.name_for(pool_name, plan.identity)
        mosb = self.caches.machineosbuilds.get(mosb_name)
        built = machineosbuild.succeeded_image(mosb)
        if mosb is not None and built is not None:
            if self._recorded(pool, built):
                await self._set_current(mosc, mosb_name, built)  # nothing written when it is already
                await self._delete_builds(pool_name, keep=None)
                return None
            if machineosbuild.current_build_name(mosc) == mosb_name:
                await self._record(pool, plan, mosb, built, f"built by MachineOSBuild {mosb_name}")
                return None
            # A config seen before: its build is reused when the registry still has the image.
            if await self._in_registry(plan, config) == built:
                await self._record(
                    pool,
                    plan,
                    mosb,
                    built,
                    f"MachineOSBuild {mosb_name} reused: its image is still in the registry",
                )
                return None
            log.info(
                "the registry no longer has %s of MachineOSBuild %s: building it again",
                built,
                mosb_name,
                extra=fields(pool=pool_name),
            )
            await self._delete(MACHINEOSBUILDS, mosb, pool_name)
            return Result(requeue_after=0.5)

        pods = sorted(
            (
                p
                for p in self._pool_objects(self.caches.pods, pool_name)
                if buildpods.belongs_to(_name(p), plan.name)
            ),
            key=lambda p: buildpods.attempt_of(_name(p)),
        )
        if pods and mosb is None:  # objects of a build whose record went missing: record it again
            mosb = await self._ensure_machineosbuild(pool, plan, mosc, config)
        for pod in pods:
            if (pod.get("status") or {}).get("phase") == "Succeeded":
                digest = str(buildpods.termination(pod).get("message") or "").strip()
                try:
                    image = buildplan.digested_pullspec(config.pullspec, digest)
                except ValueError:
                    log.warning(
                        "build pod %s succeeded without a digest in its termination message (%r)",
                        _name(pod),
                        digest[:80],
                        extra=fields(pool=pool_name),
                    )
                    continue
                assert mosb is not None
                mosb = await self._mosb_status(
                    mosb,
                    names.MOSB_SUCCEEDED,
                    digestedImagePushSpec=image,
                )
                await self._record(pool, plan, mosb, image, f"built by {_name(pod)}")
                return None

        live = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        if live:
            pod = live[-1]
            await self._delete_builds(pool_name, keep=plan)
            running = (pod.get("status") or {}).get("phase") == "Running"
            assert mosb is not None
            if running:
                await self._mosb_status(mosb, names.MOSB_BUILDING)
                await self._state(
                    pool,
                    names.BUILDING,
                    "Building",
                    f"{_name(pod)} is building {plan.target} for {rendered_name}",
                )
            else:
                await self._mosb_status(mosb, names.MOSB_PREPARED)
                await self._state(
                    pool,
                    names.BUILD_PENDING,
                    "BuildPodPending",
                    f"{_name(pod)} is waiting to build {plan.target} for {rendered_name}",
                )
            return None

        if not pods:
            if mosb is not None and machineosbuild.is_final(mosb):
                # Failed (or Interrupted) for good and its objects are gone: conditions never change again.
                failed_cond = conditions.find((mosb.get("status") or {}).get("conditions"), names.MOSB_FAILED)
                await self._state(
                    pool,
                    names.BUILD_FAILED,
                    "BuildFailed",
                    f"MachineOSBuild {mosb_name} failed: "
                    f"{(failed_cond or {}).get('message', '')}; giving up until the config changes",
                )
                return None
            reusable = await self._in_registry(plan, config)
            mosb = await self._ensure_machineosbuild(pool, plan, mosc, config)
            if reusable is not None:
                mosb = await self._mosb_status(mosb, names.MOSB_SUCCEEDED, digestedImagePushSpec=reusable)
                await self._record(
                    pool, plan, mosb, reusable, "found in the registry, reused without building"
                )
                return None
            await self._start(pool, plan, config, mosb, attempt=0)
            return None

        # Every attempt so far failed.
        failed = pods[-1]
        attempts = buildpods.attempt_of(_name(failed)) + 1
        log_tail = await self._failure_text(failed)
        if attempts > self.settings.max_retries:
            assert mosb is not None
            await self._mosb_status(
                mosb,
                names.MOSB_FAILED,
                f"the build of {plan.target} failed {attempts} times; last lines of {_name(failed)}:\n"
                f"{log_tail}",
            )
            await self._state(
                pool,
                names.BUILD_FAILED,
                "BuildFailed",
                f"build of {plan.target} for {rendered_name} failed {attempts} times; giving up until the "
                f"config changes. Last lines of {_name(failed)}:\n{log_tail}",
            )
            await self._delete_builds(pool_name, keep=plan)
            return None
        delay = self.settings.retry_backoff * 2 ** (attempts - 1)
        finished = buildpods.parse_time(buildpods.termination(failed).get("finishedAt")) or self.wall_clock()
        wait = finished + delay - self.wall_clock()
        if wait > 0:
            await self._state(
                pool,
                names.BUILD_FAILED,
                "BuildFailed",
                f"build of {plan.target} for {rendered_name} failed (attempt {attempts} of "
                # An absolute time keeps the message (and so the status) stable while waiting.
                f"{self.settings.max_retries + 1}); retrying at {buildpods.rfc3339(finished + delay)}. "
                f"Last lines of {_name(failed)}:\n"
                f"{log_tail}",
            )
            await self._delete_builds(pool_name, keep=plan)
            return Result(requeue_after=wait)
        assert mosb is not None
        await self._start(pool, plan, config, mosb, attempt=attempts)
        return None

    # ----------------------------------------------------------------------------------------- inputs

    def _inputs(
        self,
        pool_name: str,
        rendered: Obj,
        configmaps: Cache | None = None,
        secrets: Cache | None = None,
        machineosconfigs: Cache | None = None,
    ) -> tuple[BuildSettings, buildplan.BuildInputs] | str:
        """The pool's build settings (from its MachineOSConfig, or the one its label stands for) and
        inputs, or why there are none (a message naming objects and fields)."""
        cms = configmaps or self.caches.configmaps
        secret_cache = secrets or self.caches.secrets
        moscs = machineosconfigs or self.caches.machineosconfigs
        config, problems = machineosconfig.pool_settings(
            pool_name,
            moscs.items(),
            lambda name: cms.get(name, self.ns),
            lambda name: secret_cache.get(name, self.ns),
            self.ns,
        )
        if config is None:
            return "; ".join(problems)
        spec = rendered.get("spec") or {}
        base = str(spec.get("osImageURL") or "")
        if not base:
            cm = cms.get(names.OSIMAGEURL_CM, self.ns) or {}
            base = str((cm.get("data") or {}).get(names.BASE_OS_CONTAINER_IMAGE_KEY) or "").strip()
        if not base:
            return (
                f"rendered config {_name(rendered)} has no osImageURL and ConfigMap {self.ns}/"
                f"{names.OSIMAGEURL_CM} has no data.{names.BASE_OS_CONTAINER_IMAGE_KEY}: "
                "set the stock OS image there"
            )
        return config, buildplan.BuildInputs(
            pool=pool_name,
            rendered_name=_name(rendered),
            rendered_spec=spec,
            base_image=base,
            custom_containerfile=config.containerfile,
            pullspec=config.pullspec,
        )

    def _recorded(self, pool: Obj, image: str) -> bool:
        """The pool records ``image`` as its build's (its MachineOSConfig may still lag behind)."""
        annotations = (pool.get("metadata") or {}).get("annotations") or {}
        return annotations.get(names.NEWEST_IMAGE_ANNOTATION) == image and conditions.is_true(
            pool, names.BUILD_SUCCESS
        )

    def _auths(self, config: BuildSettings) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for secret_name in (config.push_secret, config.pull_secret):
            secret = self.caches.secrets.get(secret_name, self.ns) if secret_name else None
            if secret is None:
                continue
            try:
                auths = json.loads(buildplan.dockerconfigjson(secret))["auths"]
            except ValueError:
                continue
            merged.update(auths)
        return merged

    async def _in_registry(self, plan: buildplan.BuildPlan, config: BuildSettings) -> str | None:
        try:
            digest = await manifests.manifest_digest(
                self.http, plan.target, self._auths(config), tls_verify=self.settings.pod.tls_verify
            )
        except manifests.RegistryError as exc:
            log.info(
                "cannot ask the registry for %s (%s): building",
                plan.target,
                exc,
                extra=fields(pool=plan.inputs.pool),
            )
            return None
        if digest is None:
            return None
        return buildplan.digested_pullspec(config.pullspec, digest)

    async def _failure_text(self, pod: Obj) -> str:
        """The last lines of a failed build: its log, else the termination message (logs on error)."""
        text = ""
        # pods/log; the termination message (FallbackToLogsOnError) carries the same tail when the log
        # is gone (the node was lost, the pod evicted).
        try:
            text = await self.kube.pod_log(_name(pod), self.ns, tail_lines=self.settings.log_tail_lines * 4)
        except errors.ApiError:
            pass
        if not text.strip():
            term = buildpods.termination(pod)
            text = (
                str(term.get("message") or "")
                or f"exit code {term.get('exitCode')}, reason {term.get('reason')}"
            )
        return buildpods.tail(text, self.settings.log_tail_lines)

    # ----------------------------------------------------------------------------------------- writes

    async def _ensure_machineosbuild(
        self, pool: Obj, plan: buildplan.BuildPlan, mosc: ObjView, config: BuildSettings
    ) -> Obj:
        """The MachineOSBuild of ``plan`` (created when missing), made the MachineOSConfig's current."""
        labels = {k: v for k, v in plan.labels.items() if k != names.BUILD_OBJECT_LABEL}
        body = machineosbuild.new(mosc, plan.identity, plan.inputs.rendered_name, plan.target, labels)
        name = _name(body)
        try:
            mosb = await self.kube.create(MACHINEOSBUILDS, body)
            log.info(
                "created MachineOSBuild %s for %s", name, plan.target, extra=fields(pool=plan.inputs.pool)
            )
            await self.kube.record_event(
                mosb, reason="Created", message=f"build of {plan.target} for {plan.inputs.rendered_name}"
            )
        except errors.AlreadyExists:
            mosb = await self.kube.get(MACHINEOSBUILDS, name)
        await self._set_current(mosc, name)
        return mosb

    async def _set_current(self, mosc: ObjView, mosb_name: str, image: str | None = None) -> None:
        """Name ``mosb_name`` as the MachineOSConfig's current build (annotation and status), with its
        image once it has one. Writes only what differs."""
        name = _name(mosc)
        if (mosc.get("metadata") or {}).get("annotations", {}).get(
            names.CURRENT_MOSB_ANNOTATION
        ) != mosb_name:
            await self.kube.patch(
                MACHINEOSCONFIGS,
                name,
                {"metadata": {"annotations": {names.CURRENT_MOSB_ANNOTATION: mosb_name}}},
            )
        status = mosc.get("status") or {}
        want: Obj = {
            "observedGeneration": (mosc.get("metadata") or {}).get("generation", 1),
            "machineOSBuild": machineosbuild.reference(mosb_name),
        }
        if image is not None:
            want["currentImagePullSpec"] = image
        if any(status.get(k) != v for k, v in want.items()):
            await self.kube.patch_status(MACHINEOSCONFIGS, name, {"status": want})

    async def _mosb_status(self, mosb: Obj, true_type: str, message: str = "", **status_fields: str) -> Obj:
        """Make ``true_type`` the MachineOSBuild's True condition, with ``buildStart`` when the build
        starts and ``buildEnd`` when it ends; never touches a final one (its conditions are frozen)."""
        if machineosbuild.state(mosb) == true_type or machineosbuild.is_final(mosb):
            return mosb
        status = mosb.get("status") or {}
        now = self.wall_clock()
        new_fields: Obj = dict(status_fields)
        start = buildpods.parse_time(status.get("buildStart"))
        if true_type in (names.MOSB_PREPARED, names.MOSB_BUILDING) and start is None:
            new_fields["buildStart"] = machineosbuild.rfc3339(now)
        elif true_type in names.MOSB_FINAL and start is not None and not status.get("buildEnd"):
            new_fields["buildEnd"] = machineosbuild.rfc3339(max(now, start + 0.001))
        after = conditions.apply(status.get("conditions"), machineosbuild.conditions_for(true_type, message))
        written = await self.kube.patch_status(
            MACHINEOSBUILDS,
            _name(mosb),
            {
                "metadata": {"resourceVersion": mosb["metadata"]["resourceVersion"]},
                "status": {"conditions": after, **new_fields},
            },
        )
        bad = true_type in (names.MOSB_FAILED, names.MOSB_INTERRUPTED)
        text = message or next(
            c.message for c in machineosbuild.conditions_for(true_type) if c.type == true_type
        )
        await self.kube.record_event(
            written, reason=true_type, message=text, type_="Warning" if bad else "Normal"
        )
        return written

    async def _start(
        self, pool: Obj, plan: buildplan.BuildPlan, config: BuildSettings, mosb: Obj, *, attempt: int
    ) -> None:
        """Create the build's objects (idempotent), then remove every other build of the pool."""
        pool_name = plan.inputs.pool
        owner = machineosbuild.owner_reference(mosb)
        opts = self.settings.pod
        refs: list[buildplan.SecretRef | None] = []
        for secret_name in (config.pull_secret, config.push_secret):
            if not secret_name:  # no baseImagePullSecret: the base image is pulled anonymously
                refs.append(None)
                continue
            secret = self.caches.secrets.get(secret_name, self.ns) or {}
            refs.append(
                buildplan.SecretRef(secret_name, str(secret.get("type") or "kubernetes.io/dockerconfigjson"))
            )
        push = refs[1]
        assert push is not None  # a push Secret is required (settings without one do not validate)
        objects: list[tuple[Resource, Obj]] = [
            (CONFIGMAPS, cm) for cm in buildplan.configmaps(plan, opts, owner)
        ]
        pod = buildplan.build_pod(plan, opts, owner, pull=refs[0], push=push)
        pod["metadata"]["name"] = buildpods.pod_name(plan.name, attempt)
        objects.append((PODS, pod))
        for resource, body in objects:
            try:
                await self.kube.create(resource, body, namespace=self.ns)
            except errors.AlreadyExists:
                pass
        log.info(
            "started build %s of %s (attempt %d)",
            _name(pod),
            plan.target,
            attempt + 1,
            extra=fields(pool=pool_name),
        )
        # Supersede: the new build exists before the stale one goes.
        await self._delete_builds(pool_name, keep=plan)
        what = "retrying" if attempt else "started"
        await self._state(
            pool,
            names.BUILD_PENDING,
            "BuildStarted",
            f"{what} {_name(pod)} to build {plan.target} for {plan.inputs.rendered_name}",
        )

    async def _current_identity(self, pool_name: str) -> tuple[Obj, str | None]:
        """The pool read fresh from the API and its build identity computed from fresh reads too.

        Caches lag: recording must not trust them, or a build of a config the pool just left could be
        recorded as its image.
        """
        pool = await self.kube.get(MACHINECONFIGPOOLS, pool_name)
        moscs = _Snapshot()
        try:
            moscs.put(await self.kube.get(MACHINEOSCONFIGS, pool_name))
        except errors.NotFound:
            pass
        rendered_name = rendered_config(pool) or ""
        if not opted_in(pool, moscs.items()) or not rendered_name:
            return pool, None
        try:
            rendered = await self.kube.get(MACHINECONFIGS, rendered_name)
        except errors.NotFound:
            return pool, None
        snapshot = _Snapshot()
        for cm_name in (names.BUILD_CONFIG_CM, names.OSIMAGEURL_CM, names.CUSTOM_DOCKERFILE_CM):
            try:
                snapshot.put(await self.kube.get(CONFIGMAPS, cm_name, namespace=self.ns))
            except errors.NotFound:
                pass
        # Secrets are not part of the identity; the cached ones only have to validate.
        found = self._inputs(pool_name, rendered, snapshot, self.caches.secrets, moscs)
        if isinstance(found, str):
            return pool, None
        return pool, buildplan.build_identity(found[1])

    async def _record(self, pool: Obj, plan: buildplan.BuildPlan, mosb: Obj, image: str, how: str) -> None:
        """Make the Succeeded ``mosb`` the current build of its MachineOSConfig, then of the pool."""
        pool_name = plan.inputs.pool
        fresh, identity = await self._current_identity(pool_name)
        if identity != plan.identity:
            raise StaleBuild(
                f"{plan.name} is no longer the current build of pool {pool_name}: not recording {image}"
            )
        mosc = await self.kube.get(MACHINEOSCONFIGS, pool_name)
        await self._set_current(mosc, _name(mosb), image)
        # The resourceVersion makes the patch fail (409) if the pool changed since it was read.
        fresh = await self.kube.patch(
            MACHINECONFIGPOOLS,
            pool_name,
            {
                "metadata": {
                    "resourceVersion": fresh["metadata"]["resourceVersion"],
                    "annotations": {names.NEWEST_IMAGE_ANNOTATION: image},
                }
            },
        )
        await self._state(
            fresh,
            names.BUILD_SUCCESS,
            "BuildSucceeded",
            f"{image} for {plan.inputs.rendered_name}: {how} [{plan.name}]",
        )
        log.info("recorded image %s (%s)", image, how, extra=fields(pool=pool_name))
        await self._delete_builds(pool_name, keep=None)

    async def _state(self, pool: Obj, true_type: str, reason: str, message: str) -> None:
        """Make ``true_type`` the one True build condition (the others False with the same reason).

        One Event per change of the True condition (not one per condition type touched), recorded where
        the API server accepts Events about a cluster-scoped object: the ``default`` namespace.
        """
        before = conditions.find((pool.get("status") or {}).get("conditions"), true_type)
        updates = [
            Condition(t, "True" if t == true_type else "False", reason, message if t == true_type else "")
            for t in names.BUILD_CONDITIONS
        ]
        written = await update_pool_status(self.kube, pool, set_conditions=updates)
        if before is not None and (before.get("status"), before.get("reason"), before.get("message")) == (
            "True",
            reason,
            message,
        ):
            return
        failed = true_type == names.BUILD_FAILED
        await self.kube.record_event(
            written,
            reason=reason,
            message=f"{true_type}: {message}",
            type_="Warning" if failed else "Normal",
        )

    def _pool_objects(self, cache: Cache, pool_name: str) -> Iterator[Obj]:
        for obj in cache.items():
            labels = _labels(obj)
            if names.BUILD_OBJECT_LABEL in labels and labels.get(
                names.TARGET_POOL_LABEL
            ) == names.label_value(pool_name):
                yield obj

    async def _delete_builds(self, pool_name: str, *, keep: buildplan.BuildPlan | None) -> None:
        """Delete the pool's build objects and unfinished MachineOSBuilds except those of build ``keep``.

        Succeeded MachineOSBuilds stay: they are the record of images a return to their config reuses.
        """
        # Pods first: they use the rest. Secrets are never created by builds (the config's are mounted).
        for resource, cache in ((PODS, self.caches.pods), (CONFIGMAPS, self.caches.configmaps)):
            for obj in list(self._pool_objects(cache, pool_name)):
                if keep is None or not buildpods.belongs_to(_name(obj), keep.name):
                    await self._delete(resource, obj, pool_name)
        keep_mosb = machineosbuild.name_for(pool_name, keep.identity) if keep is not None else None
        for mosb in list(self.caches.machineosbuilds.items()):
            spec = mosb.get("spec") or {}
            if (
                (spec.get("machineOSConfig") or {}).get("name") == pool_name
                and _name(mosb) != keep_mosb
                and machineosbuild.state(mosb) != names.MOSB_SUCCEEDED
            ):
                await self._delete(MACHINEOSBUILDS, mosb, pool_name)

    async def _delete(self, resource: Resource, obj: Obj, pool_name: str) -> None:
        """Delete that very object (uid precondition), unless it is already going."""
        if obj["metadata"].get("deletionTimestamp"):
            return
        name = _name(obj)
        log.info("deleting build object %s %s", resource.kind, name, extra=fields(pool=pool_name))
        try:
            await self.kube.delete(
                resource,
                name,
                namespace=self.ns if resource.namespaced else None,
                uid=obj["metadata"].get("uid"),
            )
        except (errors.NotFound, errors.Conflict):
            pass
