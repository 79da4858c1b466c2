"""The opt-in controller (contract sections 2 and 11): the managed MachineOSConfigs, layering readiness,
the builder pod's life, opt-out cleanup.

One key for the whole namespace: whether the builder must run depends on every pool at once, and there
are few pools. ``reconcile`` reads only caches, so it is cheap to run on any change of pools,
MachineOSConfigs, the build ConfigMaps, their Secrets or the builder pod. Each pass, in order:

1. the managed MachineOSConfigs are made, kept in step or deleted (:func:`optinplan.managed_steps`);
2. opted-out pools lose their build conditions and image annotation, and build objects whose pool is
   not opted in any more are deleted;
3. each opted-in pool's build settings are validated (its admin's MachineOSConfig, else the build
   ConfigMap): a pool with problems gets ``LayeringReady=False, InvalidConfig`` naming each one;
4. the builder pod runs while at least one opted-in pool can build or a MachineOSBuild being deleted
   awaits its image's pruning (:func:`builderpodplan.awaiting_prune`), and is deleted otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from mcosup.control.clock import Clock
from mcosup.control.controller import Result
from mcosup.control.poolstatus import update_pool_status
from mcosup.kube import errors
from mcosup.kube.cache import Informer
from mcosup.kube.client import Kube
from mcosup.kube.resources import CONFIGMAPS, MACHINECONFIGPOOLS, MACHINEOSCONFIGS, PODS, SECRETS
from mcosup.model import conditions, machineosconfig, names
from mcosup.model.conditions import Condition
from mcosup.model.objects import Obj
from mcosup.runtime.logs import fields
from mcosup.runtime.metrics import Metrics
from mcosup.supervisor import builderpodplan, optinplan

log = logging.getLogger(__name__)

SORTED = orjson.OPT_SORT_KEYS

KEY = "builder"
#: How often to look at a pod that is starting or going away (pod status changes also wake us).
POLL_SECONDS = 2.0
LAYERING_CONDITIONS = (*names.BUILD_CONDITIONS, names.LAYERING_READY)


@dataclasses.dataclass
class Caches:
    pools: Informer
    configmaps: Informer  # every ConfigMap of the namespace
    secrets: Informer  # every Secret of the namespace
    pods: Informer  # every Pod of the namespace (the builder and build pods)
    machineosconfigs: Informer
    machineosbuilds: Informer  # the builder stays while one being deleted awaits its image's pruning


class OptInController:
    def __init__(
        self,
        kube: Kube,
        caches: Caches,
        *,
        namespace: str,
        pod_spec: builderpodplan.BuilderPodSpec,
        clock: Clock,
        metrics: Metrics,
        backoff: float = 5.0,
    ):
        self.kube = kube
        self.caches = caches
        self.namespace = namespace
        self.pod_spec = pod_spec
        self.clock = clock
        self.metrics = metrics
        self.restarts = builderpodplan.RestartTracker(base=backoff)
        # The builder pod as last seen while it was wanted, so a pod deleted behind our back counts as a
        # failure (with backoff) rather than being recreated in a tight loop.
        self._last_seen: Obj | None = None
        # Managed MachineOSConfig writes the API server refused, by (name, spec): not tried again.
        self._refused: set[tuple[str, bytes]] = set()

    async def reconcile(self, key: str) -> Result:
        configmap = self._configmap
        secret = self._secret
        await self._keep_managed(
            optinplan.managed_steps(
                list(self.caches.pools.items()),
                list(self.caches.machineosconfigs.items()),
                configmap,
                secret,
                self.namespace,
            )
        )
        pools = list(self.caches.pools.items())
        moscs = list(self.caches.machineosconfigs.items())
        opted = [p for p in pools if machineosconfig.opted_in(p, moscs)]
        self.metrics.opted_in_pools.set(len(opted))
        for pool in pools:
            if not machineosconfig.opted_in(pool, moscs):
                await self._clean_up_opted_out(pool)
        await self._delete_orphan_build_objects({names.label_value(p["metadata"]["name"]) for p in opted})
        pod = self.caches.pods.get(names.BUILDER_POD, self.namespace)
        pruning = builderpodplan.awaiting_prune(self.caches.machineosbuilds.items())
        if not opted and not pruning:
            return await self._ensure_no_builder(pod)
        problems = optinplan.settings_problems(opted, moscs, configmap, secret, self.namespace)
        for pool in opted:
            if found := problems[pool["metadata"]["name"]]:
                invalid = Condition(
                    names.LAYERING_READY, "False", names.REASON_INVALID_CONFIG, "; ".join(found)
                )
                await self._set_ready([pool], invalid)
        buildable = [p for p in opted if not problems[p["metadata"]["name"]]]
        if not buildable and not pruning:
            await self._ensure_no_builder(pod)
            return Result()
        return await self._ensure_builder(pod, buildable)

    def _configmap(self, name: str) -> Obj | None:
        return self.caches.configmaps.get(name, self.namespace)

    def _secret(self, name: str) -> Obj | None:
        return self.caches.secrets.get(name, self.namespace)

    async def _keep_managed(self, steps: list[optinplan.Step]) -> None:
        """Execute the managed MachineOSConfigs' steps, each with an Event on the object. A conflict or a
        vanished object only means the cache is behind: the write's own watch event brings the next pass.
        A write the API server refuses is reported once per body, not on every pass."""
        for step in steps:
            refused_key = (step.name, orjson.dumps(getattr(step, "body", {}).get("spec"), option=SORTED))
            if refused_key in self._refused:
                continue
            try:
                if isinstance(step, optinplan.Create):
                    written = await self.kube.create(MACHINEOSCONFIGS, step.body)
                    what = f"made from pool {step.name}'s {names.LAYERING_ENABLED} label"
                    reason = "Created"
                elif isinstance(step, optinplan.Update):
                    written = await self.kube.replace(MACHINEOSCONFIGS, step.name, step.body)
                    what = f"updated from ConfigMap {self.namespace}/{names.BUILD_CONFIG_CM}"
                    reason = "Updated"
                else:
                    await self.kube.delete(MACHINEOSCONFIGS, step.name, uid=step.uid)
                    written = _machineosconfig_ref(step.name, step.uid)
                    what = f"deleted: {step.why}"
                    reason = "Deleted"
            except (errors.AlreadyExists, errors.Conflict, errors.NotFound):
                continue
            except (errors.Invalid, errors.BadRequest) as exc:
                # Refused by the API server (a pullspec the CRD's rule rejects, a Containerfile over its
                # length): the label form still builds from the ConfigMap; say so without stopping.
                self._refused.add(refused_key)
                message = f"cannot write MachineOSConfig {step.name} made from the pool's label: {exc}"
                log.warning("%s", message, extra=fields(pool=step.name))
                pool = self.caches.pools.get(step.name)
                if pool is not None:
                    await self.kube.record_event(
                        pool, reason="MachineOSConfigRefused", message=message, type_="Warning"
                    )
                continue
            log.info("MachineOSConfig %s", what, extra=fields(pool=step.name))
            await self.kube.record_event(written, reason=reason, message=f"MachineOSConfig {what}")

    async def _ensure_builder(self, pod: Obj | None, opted: list[Obj]) -> Result:
        now = self.clock.now()
        requeue: float | None = None
        if pod is not None and pod["metadata"].get("deletionTimestamp"):
            requeue = POLL_SECONDS  # going away: wait for it before creating the next one
        elif pod is not None and builderpodplan.finished(pod):
            delay = self.restarts.failed(now, _lifetime(pod))
            self.metrics.builder_restarts.inc()
            log.warning(
                "builder pod ended (%s); recreating in %.0fs",
                _phase(pod),
                delay,
                extra=fields(pod=names.BUILDER_POD),
            )
            await self._delete_pod(pod)
            self._last_seen = None
            requeue = delay
        elif pod is None:
            if self._last_seen is not None:
                delay = self.restarts.failed(now, _lifetime(self._last_seen))
                self.metrics.builder_restarts.inc()
                log.warning(
                    "builder pod vanished; recreating in %.0fs", delay, extra=fields(pod=names.BUILDER_POD)
                )
                self._last_seen = None
            if now < self.restarts.not_before:
                requeue = self.restarts.not_before - now
            else:
                await self._create_pod()
                requeue = POLL_SECONDS
        elif builderpodplan.running(pod):
            lifetime = _lifetime(pod)
            if lifetime is not None and lifetime >= builderpodplan.QUICK_FAILURE_SECONDS:
                self.restarts.healthy()
            else:
                requeue = builderpodplan.QUICK_FAILURE_SECONDS
        else:
            requeue = POLL_SECONDS  # Pending: wake up to report Running
        if (
            pod is not None
            and not builderpodplan.finished(pod)
            and not pod["metadata"].get("deletionTimestamp")
        ):
            self._last_seen = pod
        if pod is not None and builderpodplan.running(pod) and not pod["metadata"].get("deletionTimestamp"):
            ready = Condition(
                names.LAYERING_READY, "True", "BuilderRunning", "the Machine OS Builder is running"
            )
        elif self.restarts.crashlooping:
            ready = Condition(
                names.LAYERING_READY,
                "False",
                names.REASON_BUILDER_CRASHLOOPING,
                f"the Machine OS Builder pod failed {self.restarts.quick_failures} times in a row; "
                f"see `kubectl -n {self.namespace} logs {names.BUILDER_POD}` (recreated with backoff)",
            )
        else:
            ready = Condition(
                names.LAYERING_READY,
                "False",
                names.REASON_BUILDER_STARTING,
                "the Machine OS Builder pod is starting",
            )
        await self._set_ready(opted, ready)
        return Result(requeue_after=requeue)

    async def _ensure_no_builder(self, pod: Obj | None) -> Result:
        self._last_seen = None
        if pod is None:
            return Result()
        if not pod["metadata"].get("deletionTimestamp"):
            log.info(
                "no pool needs the builder (or its config is invalid): deleting its pod",
                extra=fields(pod=names.BUILDER_POD),
            )
            await self._delete_pod(pod)
        # The contract wants the supervisor to wait until the pod is really gone.
        return Result(requeue_after=POLL_SECONDS)

    async def _create_pod(self) -> None:
        try:
            await self.kube.create(PODS, builderpodplan.manifest(self.pod_spec), namespace=self.namespace)
            log.info("created the builder pod", extra=fields(pod=names.BUILDER_POD))
        except errors.AlreadyExists:
            pass  # another writer (or our previous attempt) won: adopt it on the next pass

    async def _delete_pod(self, pod: Obj) -> None:
        try:
            await self.kube.delete(
                PODS, names.BUILDER_POD, namespace=self.namespace, uid=pod["metadata"]["uid"]
            )
        except (errors.NotFound, errors.Conflict):
            pass  # already gone, or already replaced

    async def _set_ready(self, pools: list[Obj], ready: Condition) -> None:
        for pool in pools:
            current = conditions.find((pool.get("status") or {}).get("conditions"), names.LAYERING_READY)
            if current and (current.get("status"), current.get("reason"), current.get("message")) == (
                ready.status,
                ready.reason,
                ready.message,
            ):
                continue
            await update_pool_status(self.kube, pool, set_conditions=[ready], events=True)

    async def _clean_up_opted_out(self, pool: Obj) -> None:
        """Opt-out: build conditions and the image annotation go; build objects are deleted below."""
        name = pool["metadata"]["name"]
        status_conds = (pool.get("status") or {}).get("conditions") or []
        if any(c.get("type") in LAYERING_CONDITIONS for c in status_conds):
            log.info("pool opted out: removing its build conditions", extra=fields(pool=name))
            await update_pool_status(self.kube, pool, remove_conditions=LAYERING_CONDITIONS)
        if names.NEWEST_IMAGE_ANNOTATION in (pool["metadata"].get("annotations") or {}):
            await self.kube.patch(
                MACHINECONFIGPOOLS, name, {"metadata": {"annotations": {names.NEWEST_IMAGE_ANNOTATION: None}}}
            )

    async def _delete_orphan_build_objects(self, opted: set[str]) -> None:
        """Build objects (by label) whose pool is no longer opted in, or gone. ``opted`` holds the opted-in
        pools' names as label values (cut to 63 characters, as the builder writes them)."""
        sources = (
            (self.caches.pods, PODS),
            (self.caches.configmaps, CONFIGMAPS),
            (self.caches.secrets, SECRETS),
        )
        for informer, resource in sources:
            for obj in informer.items():
                meta = obj["metadata"]
                labels = meta.get("labels") or {}
                pool = labels.get(names.TARGET_POOL_LABEL, "")
                if names.BUILD_OBJECT_LABEL not in labels or pool in opted or meta.get("deletionTimestamp"):
                    continue
                log.info(
                    "deleting build object of opted-out pool", extra=fields(pool=pool, object=meta["name"])
                )
                try:
                    await self.kube.delete(resource, meta["name"], namespace=self.namespace)
                except errors.NotFound:
                    pass


def _machineosconfig_ref(name: str, uid: str | None) -> Obj:
    """What an Event about a deleted MachineOSConfig needs to name it."""
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.MACHINEOSCONFIG_KIND,
        "metadata": {"name": name, "uid": uid or ""},
    }


def _phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase", "Unknown"))


def _lifetime(pod: Mapping[str, Any]) -> float | None:
    """Seconds the pod's container ran (or has been running), when the status says."""
    status = pod.get("status") or {}
    start = status.get("startTime")
    end = None
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or {}
        end = term.get("finishedAt") or end
    if not start:
        return None
    try:
        t0 = datetime.datetime.fromisoformat(start.replace("Z", "+00:00"))
        t1 = (
            datetime.datetime.fromisoformat(end.replace("Z", "+00:00"))
            if end
            else datetime.datetime.now(datetime.UTC)
        )
    except ValueError:
        return None
    return (t1 - t0).total_seconds()
