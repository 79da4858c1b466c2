"""The Machine OS Builder's reconciler: one key per opted-in pool, level-triggered (contract section 4).

``reconcile(pool)`` reads the facts from its caches, asks :func:`mcosup.builder.buildplan.decide` for
the pool's next step and executes it: reuse an image the registry still has, create the MachineOSBuild
and the build objects, report the build Pod's progress on both, record the digest, retry a failure with
backoff, or remove builds that are no longer current. It keeps no state of its own between calls: build
Pods are found by name and labels, and a finished build is recognised from its MachineOSBuild, so a
restarted builder continues where the last one stopped.

After the build step each reconcile prunes the pool's MachineOSConfig (:meth:`Builder._prune`, rules in
:mod:`mcosup.builder.pruneplan`, executed by :mod:`mcosup.builder.prune`), opted in or not: builds past
``mc/build-history-limit`` are deleted, and a deleted build's image leaves the registry before its
finalizer ``mc/prune-image`` does. Each MachineOSBuild is stamped with its push Secret
(``mc/push-secret``) so its image can still be deleted after its MachineOSConfig is gone. Finished
builds are pruning's alone; :meth:`Builder._delete_builds` deletes only builds still under way.

Object names carry the identity (``build-<pool>-<16 hex>``, retries ``...-retry-<n>``; the
MachineOSBuild ``<pool>-<16 hex>``): a build for any other name is stale by definition, and nothing from a
stale build is ever recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from mcosup.builder import buildplan, buildpods, manifests, prune
from mcosup.control.controller import Result
from mcosup.control.poolstatus import update_pool_status
from mcosup.kube import errors
from mcosup.kube.client import Kube
from mcosup.kube.resources import (
    CONFIGMAPS,
    JOBS,
    MACHINECONFIGPOOLS,
    MACHINECONFIGS,
    MACHINEOSBUILDS,
    MACHINEOSCONFIGS,
    PODS,
    Resource,
)
from mcosup.kube.transport import Transport
from mcosup.model import conditions, machineosbuild, machineosconfig, names
from mcosup.model.conditions import Condition
from mcosup.model.machineosconfig import BuildSettings, opted_in
from mcosup.model.objects import Obj, ObjView, rendered_config
from mcosup.runtime.logs import fields
from mcosup.runtime.settings import BuilderSettings

log = logging.getLogger(__name__)

A = TypeVar("A")
B = TypeVar("B")

#: Seconds between attempts to delete a pruned build's image while its registry cannot be reached.
PRUNE_RETRY_SECONDS = 15.0


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
    jobs: Cache  # the namespace's build Jobs (label mc/build-object)
    nodes: Cache  # which images nodes name (pruning keeps those)


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


async def _together(a: Coroutine[Any, Any, A], b: Coroutine[Any, Any, B]) -> tuple[A, B]:
    """Both results; the first failure is raised as itself (the reconciler tells conflicts apart)."""
    try:
        async with asyncio.TaskGroup() as tg:
            first, second = tg.create_task(a), tg.create_task(b)
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None
    return first.result(), second.result()


async def _to_the_end(*coros: Coroutine[Any, Any, Any]) -> None:
    """Run all to their end, even when one fails; then raise the first failure as itself."""
    for outcome in await asyncio.gather(*coros, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


def _sooner(a: Result | None, b: Result | None) -> Result | None:
    """The result that reconciles again sooner."""
    after = [r.requeue_after for r in (a, b) if r is not None and r.requeue_after is not None]
    return Result(requeue_after=min(after)) if after else a or b


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
        http: Transport,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.kube = kube
        self.caches = caches
        self.settings = settings
        self.http = http
        self.wall_clock = wall_clock
        self.ns = settings.namespace
        # Problems already reported by an Event (memory only: a restarted builder says them once more).
        self._reported: set[str] = set()

    # ----------------------------------------------------------------------------------------- reconcile

    async def reconcile(self, pool_name: str) -> Result | None:
        try:
            built = await self._reconcile(pool_name)
            pruned = await self._prune(pool_name)
            return _sooner(built, pruned)
        except StaleBuild as exc:
            log.info("%s; reconciling again with fresh state", exc, extra=fields(pool=pool_name))
            return Result(requeue_after=0.5)
        except errors.Conflict as exc:
            # A MachineOSBuild or MachineOSConfig changed since the cache showed it.
            log.info("%s; reconciling again with fresh state", exc, extra=fields(pool=pool_name))
            return Result(requeue_after=0.5)

    async def _reconcile(self, pool_name: str) -> Result | None:
        pool = self.caches.pools.get(pool_name)
        facts = self._facts(pool_name, pool)
        step = buildplan.decide(facts)
        if isinstance(step, buildplan.AskRegistry):
            assert not isinstance(facts.inputs, str)
            assert facts.settings is not None
            answer = buildplan.RegistryAnswer(await self._registry_digest(step.plan, facts.settings))
            facts = dataclasses.replace(facts, registry=answer)
            step = buildplan.decide(facts)
        if isinstance(step, buildplan.AskPods):
            selector = f"{names.BUILD_OBJECT_LABEL},{names.TARGET_POOL_LABEL}={names.label_value(pool_name)}"
            listed, _ = await self.kube.list(PODS, namespace=self.ns, label_selector=selector)
            step = buildplan.decide(dataclasses.replace(facts, job_pods=listed))
        return await self._execute(pool_name, pool, facts, step)

    async def _prune(self, config: str) -> Result | None:
        """Prune MachineOSConfig ``config``'s builds (:func:`~mcosup.builder.pruneplan.plan_pruning`):
        delete those past its history, then deal with the image of each being deleted. Runs whether or
        not the pool is still opted in: a deleted MachineOSConfig's builds are deleted with it."""
        # Imported on first use: the first pruning comes after the first build's Job, so loading its rules
        # then overlaps the build Pod's start instead of delaying the builder's (on the way to the image).
        from mcosup.builder import pruneplan

        mosc = self.caches.machineosconfigs.get(config)
        builds = {_name(b): b for b in self.caches.machineosbuilds.items()}
        plan = pruneplan.plan_pruning(
            config,
            [pruneplan.build_facts(b) for b in builds.values()],
            current=machineosbuild.current_build_name(mosc),
            history=machineosconfig.build_history_limit(mosc or {}),
            in_use=pruneplan.images_in_use(self.caches.nodes.items()),
            now=dt.datetime.fromtimestamp(self.wall_clock(), dt.UTC),
        )
        for problem in plan.problems:  # a bad mc/build-history-limit: said once per wording
            if mosc is not None and problem not in self._reported:
                self._reported.add(problem)
                log.warning("%s", problem, extra=fields(pool=config))
                await self.kube.record_event(
                    mosc, reason="InvalidBuildHistoryLimit", message=problem, type_="Warning"
                )
        for name in plan.delete:
            log.info("pruning MachineOSBuild %s: past the build history", name, extra=fields(pool=config))
            await self._delete(MACHINEOSBUILDS, builds[name], config)
        retry = False
        for step in plan.images:
            mosb = builds[step.build]
            pruned = await prune.prune_build_image(
                self.kube,
                self.http,
                mosb,
                mosc,
                step,
                self._auths(prune.push_secret(mosb, mosc)),
                tls_verify=self.settings.pod.tls_verify,
            )
            retry = retry or (pruned.outcome == "unreachable" and not pruned.released)
        # A node moving off an image wakes the pool (run.wire); only an unreachable registry is polled.
        return Result(requeue_after=PRUNE_RETRY_SECONDS) if retry else None

    def _facts(self, pool_name: str, pool: Obj | None) -> buildplan.Facts:
        """What the decision needs, read from the caches."""
        moscs = self.caches.machineosconfigs
        rendered_name = rendered_config(pool) or "" if pool is not None else ""
        rendered = self.caches.machineconfigs.get(rendered_name) if rendered_name else None
        inputs: buildplan.BuildInputs | str = "no rendered config"
        settings = None
        if rendered is not None:
            found = self._inputs(pool_name, rendered)
            inputs = found if isinstance(found, str) else found[1]
            settings = None if isinstance(found, str) else found[0]
        return buildplan.Facts(
            pool=pool or {},
            opted_in=opted_in(pool, moscs.items()),
            rendered=rendered_name,
            rendered_found=rendered is not None,
            inputs=inputs,
            settings=settings,
            mosc=machineosconfig.machineosconfig_for(pool_name, moscs.items()),
            builds=list(self._builds_of(pool_name)),
            jobs=list(self._pool_objects(self.caches.jobs, pool_name)),
            pods=list(self._pool_objects(self.caches.pods, pool_name)),
        )

    async def _execute(
        self, pool_name: str, pool: Obj | None, facts: buildplan.Facts, step: buildplan.Step
    ) -> Result | None:
        """Carry out one step of :func:`~mcosup.builder.buildplan.decide`."""
        if isinstance(step, buildplan.StopBuilding):
            # Opt-out cleanup (objects, conditions, annotation) is the supervisor's; only stop building.
            await self._delete_builds(pool_name, keep=None)
            return None
        assert pool is not None  # an opted-in pool exists
        if isinstance(step, buildplan.Report):
            if step.drop_builds:
                await self._delete_builds(pool_name, keep=None)
            await self._state(pool, step.condition, step.reason, step.message)
            return None
        assert facts.mosc is not None and facts.settings is not None  # the decision needs both
        plan = step.plan
        rendered_name = plan.inputs.rendered_name
        if isinstance(step, buildplan.Recorded):
            await self._set_current(facts.mosc, step.mosb, step.image)  # nothing written when it is already
            await self._delete_builds(pool_name, keep=None)
            return None
        if isinstance(step, buildplan.Forget):
            log.info(
                "deleting MachineOSBuild %s to build its config again: %s",
                step.mosb,
                step.why,
                extra=fields(pool=pool_name),
            )
            old = self.caches.machineosbuilds.get(step.mosb)
            if old is not None:
                await self._delete(MACHINEOSBUILDS, old, pool_name)
                await self.kube.record_event(
                    dict(facts.mosc),
                    reason="Rebuilding",
                    message=f"MachineOSBuild {step.mosb} deleted: {step.why}",
                )
            return Result(requeue_after=0.5)
        if isinstance(step, buildplan.Rebuilt):
            await self.kube.patch(
                MACHINEOSCONFIGS, pool_name, {"metadata": {"annotations": {names.REBUILD_ANNOTATION: None}}}
            )
            await self.kube.record_event(
                dict(facts.mosc),
                reason="Rebuilding",
                message=f"{names.REBUILD_ANNOTATION} removed: MachineOSBuild {step.mosb} builds it anew",
            )
            return None
        if isinstance(step, buildplan.AskRegistry | buildplan.AskPods):  # answered above
            raise AssertionError(f"asked twice ({type(step).__name__}) for {plan.target}")
        mosb = self.caches.machineosbuilds.get(step.mosb)
        if isinstance(step, buildplan.Start):
            # A new build's Job comes first: it is on the way from opt-in to the image. Its Event and
            # naming it current follow (Follow names it, should the builder stop in between).
            created = None
            if mosb is None:
                mosb, created = await self._create_machineosbuild(plan, facts.mosc, step.mosb)
            await self._start(pool, plan, facts.settings, mosb)
            if created is not None:
                await self._make_current(facts.mosc, mosb, created, plan)
            return None
        if mosb is None:
            mosb, created = await self._create_machineosbuild(plan, facts.mosc, step.mosb)
            await self._make_current(facts.mosc, mosb, created, plan)
        if isinstance(step, buildplan.Record):
            # The fresh reads recording is checked against go alongside the MachineOSBuild's write, and
            # its Event alongside the pool's writes: neither waits on the way to BuildSuccess.
            writes = not self._mosb_final_already(mosb, names.MOSB_SUCCEEDED)
            succeeded, current = await _together(
                self._mosb_status(mosb, names.MOSB_SUCCEEDED, event=False, digestedImagePushSpec=step.image),
                self._current_identity(pool_name),
            )
            await _to_the_end(
                self._record(plan, succeeded, step.image, step.how, current),
                *([self._mosb_event(succeeded, names.MOSB_SUCCEEDED)] if writes else []),
            )
            return None
        if isinstance(step, buildplan.Follow):
            await self._set_current(facts.mosc, step.mosb)  # nothing written when it is already
            await self._delete_builds(pool_name, keep=step.mosb)
            if machineosbuild.builder_job(mosb) is None:  # a start cut short before it named its Job
                mosb = await self.kube.patch_status(
                    MACHINEOSBUILDS,
                    step.mosb,
                    {"status": {"builder": machineosbuild.builder_status(step.job, self.ns)}},
                )
            # A build Pod deleted or evicted mid-build is replaced by the Job: the build stays Building.
            if step.running or machineosbuild.state(mosb) == names.MOSB_BUILDING:
                await self._mosb_status(mosb, names.MOSB_BUILDING)
                await self._state(
                    pool,
                    names.BUILDING,
                    "Building",
                    f"Job {step.job} is building {plan.target} for {rendered_name}",
                )
            else:
                await self._mosb_status(mosb, names.MOSB_PREPARED)
                await self._state(
                    pool,
                    names.BUILD_PENDING,
                    "BuildPodPending",
                    f"Job {step.job} is waiting for a Pod to build {plan.target} for {rendered_name}",
                )
            return None
        if isinstance(step, buildplan.Interrupt):
            try:  # the cache may not show a Job just created: only a Job the API server lacks is gone
                await self.kube.get(JOBS, step.job, namespace=self.ns)
                return Result(requeue_after=0.5)
            except errors.NotFound:
                pass
            message = (
                f"Job {self.ns}/{step.job} was deleted while building {plan.target} for {rendered_name}; "
                "the build starts again as a new MachineOSBuild"
            )
            await self._mosb_status(mosb, names.MOSB_INTERRUPTED, message)
            await self._state(
                pool, names.BUILD_INTERRUPTED, "BuildInterrupted", f"MachineOSBuild {step.mosb}: {message}"
            )
            return None
        # Failed for good: the MachineOSBuild's conditions are final; its objects stay for debugging.
        failed = self.caches.pods.get(step.pod, self.ns) if step.pod else None
        log_tail = await self._failure_text(failed) if failed is not None else ""
        detail = f"{step.why}. Last lines of {step.pod}:\n{log_tail}" if log_tail else step.why
        await self._mosb_status(mosb, names.MOSB_FAILED, detail)
        await self._state(
            pool, names.BUILD_FAILED, "BuildFailed", buildplan.failed_message(plan, step.mosb, detail)
        )
        await self._delete_builds(pool_name, keep=step.mosb)
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

    def _auths(self, *secret_names: str | None) -> dict[str, Any]:
        """The registry auths of the named Secrets (cached); a later Secret's entry for a host wins."""
        merged: dict[str, Any] = {}
        for secret_name in secret_names:
            secret = self.caches.secrets.get(secret_name, self.ns) if secret_name else None
            if secret is None:
                continue
            try:
                auths = json.loads(buildplan.dockerconfigjson(secret))["auths"]
            except ValueError:
                continue
            merged.update(auths)
        return merged

    async def _registry_digest(self, plan: buildplan.BuildPlan, config: BuildSettings) -> str | None:
        """The digest the registry serves for the build's target tag; None when it has none or cannot
        be asked (then the image is built)."""
        try:
            digest = await manifests.manifest_digest(
                self.http,
                plan.target,
                self._auths(config.push_secret, config.pull_secret),
                tls_verify=self.settings.pod.tls_verify,
            )
        except manifests.RegistryError as exc:
            log.info(
                "cannot ask the registry for %s (%s): building",
                plan.target,
                exc,
                extra=fields(pool=plan.inputs.pool),
            )
            return None
        return digest

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

    async def _create_machineosbuild(
        self, plan: buildplan.BuildPlan, mosc: ObjView, name: str
    ) -> tuple[Obj, bool]:
        """MachineOSBuild ``name`` of ``plan``, created (or the one there already), and whether it was."""
        labels = {k: v for k, v in plan.labels.items() if k != names.BUILD_OBJECT_LABEL}
        body = machineosbuild.new(mosc, name, plan.inputs.rendered_name, plan.target, labels)
        # Its image is deleted from the registry before it goes (mcosup.builder.prune), with the push
        # Secret stamped here: its MachineOSConfig, which names it, may be gone by then.
        body["metadata"]["finalizers"] = [names.PRUNE_IMAGE_FINALIZER]
        if secret := prune.push_secret(body, dict(mosc)):
            body["metadata"]["annotations"] = {names.PUSH_SECRET_ANNOTATION: secret}
        try:
            mosb = await self.kube.create(MACHINEOSBUILDS, body)
        except errors.AlreadyExists:
            return await self.kube.get(MACHINEOSBUILDS, name), False
        log.info("created MachineOSBuild %s for %s", name, plan.target, extra=fields(pool=plan.inputs.pool))
        return mosb, True

    async def _make_current(self, mosc: ObjView, mosb: Obj, created: bool, plan: buildplan.BuildPlan) -> None:
        """The Event of a MachineOSBuild just ``created``; name it the MachineOSConfig's current build."""
        if created:
            await self.kube.record_event(
                mosb, reason="Created", message=f"build of {plan.target} for {plan.inputs.rendered_name}"
            )
        await self._set_current(mosc, _name(mosb))

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

    @staticmethod
    def _mosb_final_already(mosb: Obj, true_type: str) -> bool:
        """Whether :meth:`_mosb_status` leaves ``mosb`` as it is: already ``true_type``, or final."""
        return machineosbuild.state(mosb) == true_type or machineosbuild.is_final(mosb)

    async def _mosb_status(
        self, mosb: Obj, true_type: str, message: str = "", *, event: bool = True, **status_fields: Any
    ) -> Obj:
        """Make ``true_type`` the MachineOSBuild's True condition, with ``buildStart`` when the build
        starts and ``buildEnd`` when it ends; never touches a final one (its conditions are frozen).
        Records its Event unless ``event`` is False (the caller then records it with :meth:`_mosb_event`)."""
        if self._mosb_final_already(mosb, true_type):
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
        if event:
            await self._mosb_event(written, true_type, message)
        return written

    async def _mosb_event(self, mosb: Obj, true_type: str, message: str = "") -> None:
        """The Event of ``mosb`` becoming ``true_type``."""
        bad = true_type in (names.MOSB_FAILED, names.MOSB_INTERRUPTED)
        text = message or next(
            c.message for c in machineosbuild.conditions_for(true_type) if c.type == true_type
        )
        await self.kube.record_event(
            mosb, reason=true_type, message=text, type_="Warning" if bad else "Normal"
        )

    async def _start(self, pool: Obj, plan: buildplan.BuildPlan, config: BuildSettings, mosb: Obj) -> None:
        """Create the build's ConfigMaps and Job (idempotent), owned by its MachineOSBuild, then remove
        every other build of the pool."""
        pool_name = plan.inputs.pool
        mosb_name = _name(mosb)
        job_name = machineosbuild.job_name(mosb_name)
        build = dataclasses.replace(plan, name=job_name)
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
        job = buildplan.build_job(
            build,
            opts,
            owner,
            pull=refs[0],
            push=push,
            backoff_limit=self.settings.max_retries,
            deadline_seconds=config.timeout_seconds,
        )
        # The ConfigMaps go together; the Job follows them, as its Pods mount them.
        await _to_the_end(
            *(self._create_if_missing(CONFIGMAPS, cm) for cm in buildplan.configmaps(build, opts, owner))
        )
        await self._create_if_missing(JOBS, job)
        log.info("started Job %s building %s", job_name, plan.target, extra=fields(pool=pool_name))
        await self._mosb_status(
            mosb, names.MOSB_PREPARED, builder=machineosbuild.builder_status(job_name, self.ns)
        )
        # Supersede: the new build exists before the stale one goes.
        await self._delete_builds(pool_name, keep=mosb_name)
        await self._state(
            pool,
            names.BUILD_PENDING,
            "BuildStarted",
            f"started Job {job_name} (MachineOSBuild {mosb_name}) to build {plan.target} for "
            f"{plan.inputs.rendered_name}",
        )

    async def _create_if_missing(self, resource: Resource, body: Obj) -> None:
        """Create ``body`` in the builder's namespace; one already there is left as it is."""
        try:
            await self.kube.create(resource, body, namespace=self.ns)
        except errors.AlreadyExists:
            pass

    async def _current_identity(self, pool_name: str) -> tuple[Obj, str | None]:
        """The pool read fresh from the API and its build identity computed from fresh reads too.

        Caches lag: recording must not trust them, or a build of a config the pool just left could be
        recorded as its image. The reads go together (recording waits on them); the rendered config
        follows once the fresh pool names it, from the cache when it has it: a rendered config's name is
        the hash of its content, so a cached one is as good as a fresh one.
        """
        pool, mosc, *cms = await asyncio.gather(
            self.kube.get(MACHINECONFIGPOOLS, pool_name),
            self._get_if_there(MACHINEOSCONFIGS, pool_name),
            *(
                self._get_if_there(CONFIGMAPS, cm_name)
                for cm_name in (names.BUILD_CONFIG_CM, names.OSIMAGEURL_CM, names.CUSTOM_DOCKERFILE_CM)
            ),
        )
        assert pool is not None  # a get, which raises when there is none
        moscs = _Snapshot()
        if mosc is not None:
            moscs.put(mosc)
        rendered_name = rendered_config(pool) or ""
        if not opted_in(pool, moscs.items()) or not rendered_name:
            return pool, None
        rendered = self.caches.machineconfigs.get(rendered_name) or await self._get_if_there(
            MACHINECONFIGS, rendered_name
        )
        if rendered is None:
            return pool, None
        snapshot = _Snapshot()
        for cm in cms:
            if cm is not None:
                snapshot.put(cm)
        # Secrets are not part of the identity; the cached ones only have to validate.
        found = self._inputs(pool_name, rendered, snapshot, self.caches.secrets, moscs)
        if isinstance(found, str):
            return pool, None
        return pool, buildplan.build_identity(found[1])

    async def _get_if_there(self, resource: Resource, name: str) -> Obj | None:
        """The object read fresh (in the builder's namespace when namespaced), None when there is none."""
        try:
            return await self.kube.get(resource, name, namespace=self.ns if resource.namespaced else None)
        except errors.NotFound:
            return None

    async def _record(
        self,
        plan: buildplan.BuildPlan,
        mosb: Obj,
        image: str,
        how: str,
        current: tuple[Obj, str | None],
    ) -> None:
        """Make the Succeeded ``mosb`` the pool's image, then its MachineOSConfig's current build, if
        the pool's ``current`` identity (:meth:`_current_identity`) is still the plan's.

        The pool first: a write refused there (409) leaves nothing half-recorded, so the next pass
        decides the same way; a MachineOSConfig left behind is caught up by the ``Recorded`` step."""
        pool_name = plan.inputs.pool
        fresh, identity = current
        if identity != plan.identity:
            raise StaleBuild(
                f"{plan.name} is no longer the current build of pool {pool_name}: not recording {image}"
            )
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
            f"{image} for {plan.inputs.rendered_name}: {how}",
        )
        await self._set_current(await self.kube.get(MACHINEOSCONFIGS, pool_name), _name(mosb), image)
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

    def _builds_of(self, pool_name: str) -> Iterator[Obj]:
        """The MachineOSBuilds of the pool's MachineOSConfig (named like the pool)."""
        for mosb in self.caches.machineosbuilds.items():
            if ((mosb.get("spec") or {}).get("machineOSConfig") or {}).get("name") == pool_name:
                yield mosb

    async def _delete_builds(self, pool_name: str, *, keep: str | None) -> None:
        """Delete the pool's build objects and its MachineOSBuilds still under way, except ``keep``'s.

        Finished MachineOSBuilds are pruning's (:meth:`_prune`): Succeeded ones are the record of images a
        return to their config reuses; a Failed or Interrupted one goes once a newer build exists.
        """
        kept = machineosbuild.job_name(keep) if keep is not None else None
        # Jobs first (their Pods go with them), then loose Pods, then the ConfigMaps they read.
        for resource, cache in (
            (JOBS, self.caches.jobs),
            (PODS, self.caches.pods),
            (CONFIGMAPS, self.caches.configmaps),
        ):
            for obj in list(self._pool_objects(cache, pool_name)):
                if kept is None or not buildpods.belongs_to(_name(obj), kept):
                    await self._delete(resource, obj, pool_name)
        for mosb in list(self._builds_of(pool_name)):
            if _name(mosb) != keep and not machineosbuild.is_final(mosb):
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
