"""The node controller: rolls each pool's target out to its nodes, drains them, reports pool status.

Level-triggered: pool, node and pod events only enqueue pool names; ``reconcile(pool)`` reads the
caches, asks :func:`mcosup.supervisor.rolloutplan.plan_rollout` what to do and does it:

- uncordon nodes that finished (only those carrying ``cordoned-by=mcosup``);
- for each node the plan starts: cordon it with ``cordoned-by=mcosup`` in one write (never a node that
  is already unschedulable: that cordon is someone else's), drain it in a background task, and once
  drained set the mode label and desired annotations in **one** merge patch;
- write the pool's counts and its Updated/Updating/Degraded/NodeDegraded conditions.

A reconcile decides and returns: each node's steps (uncordon; cordon then target) run as a task of
their own and enqueue the pool again when answered, so a node that finishes while other nodes' writes
are under way is seen at once rather than after them. A node with a step under way gets no other one.

Every node write carries the resourceVersion the decision was made on, so a node that changed since
(daemon report, admin cordon) gives a 409 and a fresh decision instead of a blind write. The cap on
unavailable nodes comes from the cluster state; the only memory is a safety margin over it: nodes
this process is writing to or draining count as unavailable, and a node it has written to is seen as
its write returned it until the cache catches up. After a restart that memory is empty and the freshly
listed caches are exact, so the cap holds across restarts too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

from mcosup.control.clock import Clock, RealClock
from mcosup.control.controller import Controller, Result, by_name
from mcosup.control.poolstatus import update_pool_status
from mcosup.control.queue import WorkQueue
from mcosup.kube import errors
from mcosup.kube.cache import Informer
from mcosup.kube.client import Kube
from mcosup.kube.resources import MACHINECONFIGPOOLS, NODES
from mcosup.model import conditions, machineosbuild, machineosconfig, names
from mcosup.model.node import NodeView, Target, cordon_patch, staging_patch, target_patch, uncordon_patch
from mcosup.model.objects import Obj
from mcosup.runtime.logs import fields
from mcosup.runtime.metrics import Metrics
from mcosup.runtime.settings import RolloutSettings
from mcosup.supervisor import drain, haltplan, rolloutplan, stagingplan, windowplan
from mcosup.supervisor.rolloutplan import Phase

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Drain:
    pool: str
    task: asyncio.Task[None]
    wake: asyncio.Event


class NodeRollout:
    """Run with ``await NodeRollout(...).run()`` inside the supervisor's task group (once per
    leadership term; cancelling it ends the term's drains too).

    The informers are shared with other controllers and run by the caller; ``run`` waits until they
    have listed before reconciling anything, so no decision is ever made on a half-filled cache.
    ``pods`` must cover every namespace (a drain evicts whatever runs on the node).
    """

    def __init__(
        self,
        kube: Kube,
        *,
        pools: Informer,
        nodes: Informer,
        pods: Informer,
        machineosconfigs: Informer | None = None,
        machineosbuilds: Informer | None = None,
        settings: RolloutSettings | None = None,
        clock: Clock | None = None,
        image_for: Callable[[Obj], str | None] | None = None,
        workers: int = 2,
        metrics: Metrics | None = None,
        skip_drain: Callable[[NodeView, Target], str | None] | None = None,
        stage_ahead: bool = True,
    ):
        self.kube = kube
        # Contract 12.2 (:mod:`mcosup.supervisor.nodedisruption`): why a node's change needs neither
        # cordon nor drain, or None when it does. Without it every node is drained.
        self.skip_drain = skip_drain
        # Contract 12.1 (:mod:`mcosup.supervisor.stagingplan`): nodes download the image ahead of their turn.
        self.stage_ahead = stage_ahead
        self.pools = pools
        self.nodes = nodes
        self.pods = pods
        # The opt-in is the pool's label or its MachineOSConfig; without this cache (a rollout on its
        # own, in tests and benchmarks) only the label opts pools in.
        self.machineosconfigs = machineosconfigs
        # The hand-off: a pool's image is its MachineOSConfig's current MachineOSBuild's digest.
        self.machineosbuilds = machineosbuilds
        self.settings = settings or RolloutSettings()
        self.clock: Clock = clock or RealClock()
        self.image_for = image_for or self._image_of_current_build
        self.metrics = metrics
        self.controller: Controller[str] = Controller(
            "rollout", self.reconcile, workers=workers, queue=WorkQueue(clock=self.clock), metrics=metrics
        )
        self.status_writer: Controller[str] = Controller(
            "rollout-status",
            self._flush_status,
            queue=WorkQueue(clock=self.clock),
            metrics=metrics,
            expected_errors=(errors.Conflict,),
        )
        self._pending_status: dict[str, rolloutplan.Plan] = {}
        self._status_written_at: dict[str, float] = {}
        self._events: asyncio.Queue[tuple[Obj, str, str, Literal["Normal", "Warning"], dt.datetime]] = (
            asyncio.Queue()
        )
        self._tg: asyncio.TaskGroup | None = None
        self._drains: dict[str, _Drain] = {}
        # Nodes with a step under way (see :meth:`_step`), and pools whose staging writes are.
        self._steps: set[str] = set()
        # Each node's view as last seen or written: an event that leaves its standing
        # (:meth:`NodeView.standing`) unchanged enqueues nothing. Views, not standings: they are the
        # ones the view cache holds already, where a standing per node was 6 MB more at 20,000 nodes.
        self._seen: dict[str, NodeView] = {}
        self._staging: set[str] = set()
        self._drained: set[str] = set()
        self._stuck: dict[str, drain.Stuck] = {}
        self._pool_written: dict[str, Obj] = {}  # pool -> our last status write's result
        self._written: dict[str, tuple[Obj, float]] = {}  # node -> (our last write's result, when)
        self._targeted: dict[str, Target] = {}  # target patches whose completion gets an Event
        # Contract 12.1: node -> (image it is asked to stage, when this process first saw that), and the
        # image each node last took its turn without staged (reported once).
        self._asked: dict[str, tuple[str, float]] = {}
        self._late: dict[str, str] = {}
        # Each node's pool, kept up to date event by event: a reconcile reads its pool's members
        # instead of matching every node of the cluster against every pool (O(nodes x pools) per
        # reconcile was most of the supervisor's time at 5,000 nodes).
        self._node_pool: dict[str, str] = {}
        # Each pool's cached nodes and their views, by name, kept the same way: a plan copies two dicts
        # instead of looking up every node of its pool (a sixth of the controller's time at 1,000 nodes).
        self._member_nodes: dict[str, dict[str, Obj]] = collections.defaultdict(dict)
        self._member_views: dict[str, dict[str, NodeView]] = collections.defaultdict(dict)
        # The pools' node selectors the membership was computed with. When one changes (or a pool
        # comes or goes) every node's pool is computed again, once, by the next reconcile.
        self._selectors: dict[str, Any] = {}
        self._membership_stale = True
        # Each node's view, computed once per version of the node rather than once per reconcile.
        self._views = nodes.derive(NodeView.of)
        # The pods on each node: a drain reads its node's, not every pod of the cluster.
        self._pods_on = pods.index(lambda pod: (pod.get("spec") or {}).get("nodeName") or None)
        self.controller.watch(pools, self._pools_of_pool_event)
        self.controller.watch(nodes, self._pools_of_node_event)
        if machineosconfigs is not None:
            # A MachineOSConfig is named like the pool it opts in.
            self.controller.watch(machineosconfigs, by_name)
        if machineosbuilds is not None:
            self.controller.watch(machineosbuilds, _pool_of_build)
        # Not controller keys: a running drain waits on its node's and pods' changes.
        nodes.subscribe(self._wake_drain_of_node)
        pods.subscribe(self._wake_drain_of_pod)

    # Wiring.

    async def run(self) -> None:
        """Reconcile until cancelled; drains run as tasks of this call and end with it."""
        for informer in (self.pools, self.nodes, self.pods, self.machineosconfigs, self.machineosbuilds):
            if informer is not None:
                await informer.listed.wait()
        # A new leadership term starts from the cluster alone: another replica may have acted since.
        self._drained.clear()
        self._stuck.clear()
        self._written.clear()
        self._pool_written.clear()
        self._targeted.clear()
        self._asked.clear()
        self._steps.clear()
        self._staging.clear()
        # Every pool is planned first thing below, seeing each node as the cache holds it now: an event
        # that leaves a node's standing so needs no plan of its own. (Emptying this instead made the
        # first event of every node after each start plan its whole pool: at 20,000 nodes that was
        # three quarters of the supervisor's time while it caught up.) A view recorded from an earlier
        # term's write is replaced, as that write is forgotten above.
        self._seen = {node["metadata"]["name"]: self._views.of(node) for node in self.nodes.items()}
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for pool in self.pools.items():
                    self.controller.enqueue(pool["metadata"]["name"])
                tg.create_task(self.status_writer.run())
                tg.create_task(self._send_events())
                await self.controller.run()
        finally:
            self._tg = None
            self._drains.clear()

    def _pools_of_pool_event(self, event: str, pool: Mapping[str, Any]) -> list[str]:
        name = pool["metadata"]["name"]
        selector = None if event == "DELETED" else (pool.get("spec") or {}).get("nodeSelector")
        if event != "DELETED" and name in self._selectors and self._selectors[name] == selector:
            return [name]  # a status write, a new target: the same nodes
        # Nodes may change pools (a deleted custom pool's nodes fall back to worker): every pool is
        # reconciled, with its members computed afresh.
        if event == "DELETED":
            self._selectors.pop(name, None)
        else:
            self._selectors[name] = selector
        self._membership_stale = True
        return [name, *(other["metadata"]["name"] for other in self.pools.items())]

    def _pools_of_node_event(self, event: str, node: Mapping[str, Any]) -> list[str]:
        """The pool the node was in and the one it is in now; none when the node stays in its pool
        and nothing a plan reads changed (our own write coming back, a daemon's Working report): at
        a few events per node per rollout, that is most of a large pool's plans saved."""
        name = node["metadata"]["name"]
        previous = self._node_pool.pop(name, None)
        keys = [previous] if previous else []
        if previous:
            self._member_nodes[previous].pop(name, None)
            self._member_views[previous].pop(name, None)
        pool = None if event == "DELETED" else rolloutplan.pool_of_node(node, self.pools.items())
        if pool:
            keys.append(pool)
            view = self._place(typing.cast(Obj, node), pool)
            seen = self._seen.get(name)
            if previous == pool and seen is not None and seen.standing() == view.standing():
                return []
            self._seen[name] = view
        if event == "DELETED":
            self._seen.pop(name, None)
            self._written.pop(name, None)
            self._targeted.pop(name, None)
            self._asked.pop(name, None)
            self._late.pop(name, None)
            self._drained.discard(name)
        return keys

    def _place(self, node: Obj, pool: str) -> NodeView:
        """Record ``node`` (as cached) as a member of ``pool``; its view."""
        name = node["metadata"]["name"]
        view = self._views.of(node, ("", name))
        self._node_pool[name] = pool
        self._member_nodes[pool][name] = node
        self._member_views[pool][name] = view
        return view

    def _members(self, pool_name: str) -> tuple[dict[str, NodeView], dict[str, Obj]]:
        """The pool's cached nodes' views and the nodes, by name (copies: the caller may change them)."""
        if self._membership_stale:
            self._membership_stale = False
            pools = list(self.pools.items())
            self._node_pool.clear()
            self._member_nodes.clear()
            self._member_views.clear()
            for node in self.nodes.items():
                if pool := rolloutplan.pool_of_node(node, pools):
                    self._place(node, pool)
        return dict(self._member_views.get(pool_name, {})), dict(self._member_nodes.get(pool_name, {}))

    def _wake_drain_of_node(self, _: str, node: Mapping[str, Any]) -> None:
        if (d := self._drains.get(node["metadata"]["name"])) is not None:
            d.wake.set()

    def _wake_drain_of_pod(self, _: str, pod: Mapping[str, Any]) -> None:
        if (d := self._drains.get((pod.get("spec") or {}).get("nodeName") or "")) is not None:
            d.wake.set()

    # Reconcile.

    def _image_of_current_build(self, pool: Obj) -> str | None:
        moscs = self.machineosconfigs.items() if self.machineosconfigs is not None else ()
        mosc = machineosconfig.machineosconfig_for(pool["metadata"]["name"], moscs)
        builds = self.machineosbuilds
        return machineosbuild.image_for_pool(pool, mosc, builds.get if builds is not None else lambda _: None)

    async def reconcile(self, pool_name: str) -> Result | None:
        pool = self.pools.get(pool_name)
        if pool is None:
            for node, d in list(self._drains.items()):
                if d.pool == pool_name:
                    self._cancel_drain(node)
            return None
        image = self.image_for(pool)
        now = dt.datetime.fromtimestamp(self.clock.wall(), dt.UTC)
        gate = windowplan.gate(pool, now, self.settings.window_margin)
        plan, by_name, views = self._plan(pool, image, gate)
        if haltplan.resume_requested(self._newest(pool)):
            if not await self._resume(pool, plan, by_name):
                return Result(requeue_after=self.settings.conflict_retry)
            plan, by_name, views = self._plan(pool, image, gate)
        for name in plan.uncordon:
            self._step(name, pool_name, True, self._uncordon, by_name[name], pool, finished=True)
        for name in plan.release:
            self._step(name, pool_name, True, self._uncordon, by_name[name], pool, finished=False)
        self._count_nodes(pool_name, plan)

        starting = set(plan.start)
        for name in list(self._drains):
            if self._drains[name].pool == pool_name and name not in starting:
                self._cancel_drain(name)
        if (target := plan.target) is not None:
            for name in plan.start:
                self._step(name, pool_name, False, self._advance, by_name[name], pool, target)
        # The status is written by its own worker, latest plan wins: a status write never delays a
        # node's next step.
        self._pending_status[pool_name] = plan
        self.status_writer.enqueue(pool_name)
        self._report_late(pool, plan)
        if self.stage_ahead and pool_name not in self._staging:
            self._stage(pool_name, plan, by_name, views)
        for name, was in list(self._targeted.items()):
            # A node we cordoned hears it from its uncordon (one Event per update, not two).
            if (
                name in by_name
                and plan.phases.get(name) is Phase.UPDATED
                and was == plan.target
                and not views[name].cordoned_by_us
            ):
                del self._targeted[name]
                self._event(by_name[name], NODES, "Updated", f"node {name} runs {was.describe()}")

        pending = plan.status.get("updatedMachineCount") != plan.status.get("machineCount")
        # Outside a maintenance window with nothing under way, the pool sleeps until the window opens.
        waits = [self.settings.resync] if plan.start or (pending and gate.may_start) else []
        if pending and gate.wake_after is not None:
            waits.append(gate.wake_after)
        if plan.staging_wake is not None:
            waits.append(plan.staging_wake)  # a node's staging turns late then
        return Result(requeue_after=min(waits)) if waits else None

    def _plan(
        self, pool: Obj, image: str | None, gate: windowplan.Gate
    ) -> tuple[rolloutplan.Plan, dict[str, Obj], dict[str, NodeView]]:
        """The plan, and the pool's nodes and views it was made from, by name."""
        views, by_name = self._current_members(pool["metadata"]["name"])
        moscs = self.machineosconfigs.items() if self.machineosconfigs is not None else ()
        plan = rolloutplan.plan_rollout(
            pool,
            views.values(),
            image=image,
            opted_in=machineosconfig.opted_in(pool, moscs),
            in_flight=[n for n in (*self._drains, *self._steps) if n in by_name],
            drain_stuck={n: s.message for n, s in self._stuck.items() if n in by_name},
            gate=gate,
            staging=self._staging_waits(views.values(), image),
        )
        return plan, by_name, views

    def _staging_waits(self, views: Iterable[NodeView], image: str | None) -> stagingplan.Waits | None:
        """How long each node has been asked to stage ``image``, counted from when this process first
        saw it asked (contract 12.1); None when nodes do not stage ahead."""
        if not self.stage_ahead:
            return None
        now = self.clock.now()
        waited: dict[str, float] = {}
        for v in views:
            if image is None or v.staging_image != image:
                self._asked.pop(v.name, None)
                continue
            asked, since = self._asked.get(v.name, (None, now))
            if asked != image:
                self._asked[v.name] = (image, since := now)
            waited[v.name] = now - since
        return stagingplan.Waits(self.settings.staging_timeout, waited)

    def _report_late(self, pool: Obj, plan: rolloutplan.Plan) -> None:
        """Say once per node and image why a node takes its turn without the image staged."""
        image = plan.target.image if plan.target is not None else None
        for name, why in plan.late.items():
            if image is None or self._late.get(name) == image:
                continue
            self._late[name] = image
            log.warning("%s", why, extra=fields(pool=plan.pool, node=name))
            self._event(pool, MACHINECONFIGPOOLS, "StagingTimedOut", why, warning=True)

    def _count_nodes(self, pool_name: str, plan: rolloutplan.Plan) -> None:
        """The ``mcosup_nodes{pool,state}`` gauge: the pool's nodes by where they stand."""
        if self.metrics is None:
            return
        for phase in Phase:
            self.metrics.nodes.labels(pool_name, phase.value).set(plan.counts.get(phase, 0))

    def _current_members(self, pool_name: str) -> tuple[dict[str, NodeView], dict[str, Obj]]:
        """The pool's cached nodes and their views, by name, each node replaced by the version our own
        last write returned while the cache has not caught up with it: decisions never rest on a
        version older than what we wrote."""
        now = self.clock.now()
        views, by_name = self._members(pool_name)
        for name, (written, when) in list(self._written.items()):
            view = views.get(name)
            if view is None:
                continue  # another pool's node
            if _caught_up(view.resource_version, _rv(written)):
                del self._written[name]
            elif now - when > self.settings.expectation_timeout:
                log.warning("cache never showed our write to node %s", name, extra=fields(node=name))
                del self._written[name]
            else:
                by_name[name], views[name] = written, NodeView.of(written)
        return views, by_name

    async def _patch_node(self, node: Obj, patch: dict[str, Any], what: str) -> Obj | None:
        """The node as written, or None when it changed or vanished since the decision (409/404)."""
        name = node["metadata"]["name"]
        try:
            written = await self.kube.patch(NODES, name, patch)
        except (errors.Conflict, errors.NotFound) as exc:
            log.info("%s of node %s deferred: %s", what, name, exc.reason or exc, extra=fields(node=name))
            return None
        self._written[name] = (written, self.clock.now())
        # The plan after this write sees it already (through ``_written``): its echo from the watch
        # needs no plan of its own.
        self._seen[name] = NodeView.of(written)
        return written

    async def _uncordon(self, node: Obj, pool: Obj, *, finished: bool) -> bool:
        view = NodeView.of(node)
        if await self._patch_node(node, uncordon_patch(view), "uncordon") is None:
            return False
        self._drained.discard(view.name)
        if finished:
            target = self._targeted.pop(view.name, None)
            text = (
                f"node {view.name} updated to {target.describe()}; uncordoned"
                if target
                else f"uncordoned node {view.name}"
            )
            self._event(node, NODES, "Updated", text)
        else:
            why = "the pool is paused" if (pool.get("spec") or {}).get("paused") else "its target is on hold"
            self._event(node, NODES, "UpdateDeferred", f"uncordoned node {view.name}: {why}")
        log.info("uncordoned node %s", view.name, extra=fields(pool=pool["metadata"]["name"], node=view.name))
        return True

    def _newest(self, pool: Obj) -> Obj:
        """The cached pool, or our last write of it while the cache has not shown that yet."""
        mine = self._pool_written.get(pool["metadata"]["name"])
        return mine if mine is not None and not _caught_up(_rv(pool), _rv(mine)) else pool

    async def _resume(self, pool: Obj, plan: rolloutplan.Plan, by_name: Mapping[str, Obj]) -> bool:
        """``mc/resume-rollout``: give each rolled-back node back what it runs (see
        :mod:`~mcosup.supervisor.haltplan`), then remove the annotation. False to retry."""
        pool_name = pool["metadata"]["name"]
        halt = plan.halt
        for name in halt.nodes if halt is not None else ():
            view = NodeView.of(by_name[name])
            back = haltplan.running(view)
            if back is None:
                continue
            if await self._patch_node(by_name[name], target_patch(view, back), "resume") is None:
                return False
            self._event(
                by_name[name],
                NODES,
                "RolloutResumed",
                f"node {name} rolled back from {view.desired_image or view.desired_config}: given back "
                f"{back.describe()}; it gets the pool's target again once its daemon reports Done",
            )
        patch = {"metadata": {"annotations": {names.RESUME_ROLLOUT: None}}}
        try:
            self._pool_written[pool_name] = await self.kube.patch(MACHINECONFIGPOOLS, pool_name, patch)
        except (errors.Conflict, errors.NotFound):
            return False
        text = (
            f"rollout of {halt.what} resumed on request ({names.RESUME_ROLLOUT}): nodes "
            f"{', '.join(halt.nodes)} try it again"
            if halt is not None
            else f"{names.RESUME_ROLLOUT} removed: MachineConfigPool {pool_name}'s rollout was not halted"
        )
        self._event(pool, MACHINECONFIGPOOLS, "RolloutResumed", text)
        log.info("%s", text, extra=fields(pool=pool_name))
        return True

    async def _advance(self, node: Obj, pool: Obj, target: Target) -> bool | None:
        """One step for a node the plan starts: cordon, drain (in the background), set target. None when
        nothing was written (the node waits for its drain)."""
        view = NodeView.of(node)
        pool_name = pool["metadata"]["name"]
        if (
            self.skip_drain is not None
            and not view.cordoned_by_us
            and view.name not in self._drains
            and (why := self.skip_drain(view, target)) is not None
        ):
            how = f"updated without cordon or drain ({why})"
            return await self._set_target(node, view, pool_name, target, "UpdateStarted", how)
        if not view.unschedulable and view.name not in self._drains:
            cordoned = await self._patch_node(node, cordon_patch(view), "cordon")
            if cordoned is None:
                return False
            log.info("cordoned node %s", view.name, extra=fields(pool=pool_name, node=view.name))
            node, view = cordoned, NodeView.of(cordoned)
            if not drain.pods_to_drain(self._pods_on.get(view.name), view.name, node_ready=view.ready):
                # Nothing to evict: the target follows at once, and one Event tells both.
                how = "cordoned (nothing to drain)"
                return await self._set_target(node, view, pool_name, target, "UpdateStarted", how)
            self._event(
                node, NODES, "UpdateStarted", f"cordoned node {view.name} to update it to {target.describe()}"
            )
        if view.name in self._drained and view.unschedulable:
            return await self._set_target(node, view, pool_name, target, "Drained", "drained")
        self._ensure_drain(view.name, pool_name)
        return None  # the drain enqueues the pool when it ends

    async def _set_target(
        self, node: Obj, view: NodeView, pool_name: str, target: Target, reason: str, how: str
    ) -> bool:
        if await self._patch_node(node, target_patch(view, target), "target") is None:
            return False
        self._drained.discard(view.name)
        self._stuck.pop(view.name, None)
        self._targeted[view.name] = target
        self._event(node, NODES, reason, f"node {view.name} {how}; target set to {target.describe()}")
        log.info(
            "node %s target %s (%s)",
            view.name,
            target.describe(),
            how,
            extra=fields(pool=pool_name, node=view.name),
        )
        return True

    def _step(
        self,
        node: str,
        pool_name: str,
        replan: bool,
        work: Callable[..., Awaitable[bool | None]],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Run ``work(*args)`` for ``node`` in the background unless a step of the node is under way.
        When it wrote (True) and ``replan``, the pool is reconciled again at once (the step freed a
        slot; a started node's next news is its daemon's report, which brings its own reconcile, unless
        the report came while the step was under way and its reconcile saw the node busy); when
        a write was refused (False: the node changed since the decision) or failed, after
        ``conflict_retry``; None: nothing was written."""
        if node in self._steps or self._tg is None:
            return
        self._steps.add(node)

        async def step() -> None:
            done: bool | None = False
            try:
                done = await work(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "step for node %s failed; it is retried", node, extra=fields(pool=pool_name, node=node)
                )
            finally:
                self._steps.discard(node)
                if done is False:
                    self.controller.queue.add_after(pool_name, self.settings.conflict_retry)
                elif done and (replan or self._news_since_write(node)):
                    self.controller.enqueue(pool_name)

        self._tg.create_task(step(), name=f"step-{node}")

    def _news_since_write(self, node: str) -> bool:
        """The cache shows a version of ``node`` newer than our last write of it."""
        cached, mine = self.nodes.get(node), self._written.get(node)
        if cached is None or mine is None:
            return False
        now, written = _rv(cached), _rv(mine[0])
        return now != written and _caught_up(now, written)

    def _stage(
        self,
        pool_name: str,
        plan: rolloutplan.Plan,
        by_name: Mapping[str, Obj],
        views: Mapping[str, NodeView],
    ) -> None:
        """Set or clear ``mc/stagingImage`` as :func:`stagingplan.plan_staging` says (contract 12.1), in
        the background; the pool's next staging decision waits for these writes to be answered."""
        # A halted image (contract 12.3) is staged nowhere: no other node gets it, not even its download.
        target = plan.target if plan.halt is None else None
        changes = stagingplan.plan_staging(
            views.values(), target, capacity=plan.capacity, updating=plan.start
        )
        if not changes or self._tg is None:
            return
        self._staging.add(pool_name)

        async def stage() -> None:
            written: list[Obj | None] = []
            try:
                writes = [
                    self._patch_node(by_name[name], staging_patch(views[name], image), "staging")
                    for name, image in sorted(changes.items())
                ]
                written = await asyncio.gather(*writes)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("staging writes failed; they are retried", extra=fields(pool=pool_name))
            finally:
                self._staging.discard(pool_name)
                if written and all(w is not None for w in written):
                    self.controller.enqueue(pool_name)
                else:
                    self.controller.queue.add_after(pool_name, self.settings.conflict_retry)

        self._tg.create_task(stage(), name=f"staging-{pool_name}")

    # Drains.

    def _ensure_drain(self, node: str, pool: str) -> None:
        if node in self._drains or self._tg is None:
            return
        wake = asyncio.Event()
        task = self._tg.create_task(self._drain(node, pool, wake), name=f"drain-{node}")
        self._drains[node] = _Drain(pool, task, wake)

    def _cancel_drain(self, node: str) -> None:
        d = self._drains.pop(node, None)
        if d is not None:
            d.task.cancel()
        self._stuck.pop(node, None)

    async def _drain(self, node: str, pool: str, wake: asyncio.Event) -> None:
        try:
            result = await drain.drain_node(
                self.kube,
                node,
                pods=lambda: self._pods_on.get(node),
                node_state=lambda: self.nodes.get(node),
                wake=wake,
                clock=self.clock,
                settings=self.settings.drain,
                on_stuck=lambda stuck: self._on_stuck(pool, stuck),
            )
            if not result.node_gone:
                self._drained.add(node)
            self._stuck.pop(node, None)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("drain of node %s failed; it is retried", node, extra=fields(pool=pool, node=node))
        finally:
            current = self._drains.get(node)
            if current is not None and current.task is asyncio.current_task():
                del self._drains[node]
            self.controller.enqueue(pool)

    async def _on_stuck(self, pool: str, stuck: drain.Stuck) -> None:
        self._stuck[stuck.node] = stuck
        log.warning("%s", stuck.message, extra=fields(pool=pool, node=stuck.node))
        node = self.nodes.get(stuck.node)
        if node is not None:
            self._event(node, NODES, names.REASON_DRAIN_STUCK, stuck.message, warning=True)
        self.controller.enqueue(pool)

    # Status and events.

    async def _flush_status(self, pool_name: str) -> Result | None:
        plan = self._pending_status.get(pool_name)
        pool = self.pools.get(pool_name)
        if plan is None or pool is None:
            return None
        wait = self._status_written_at.get(pool_name, -1e9) + self.settings.status_interval - self.clock.now()
        if wait > 0 and not self._transitions(pool, plan):
            return Result(requeue_after=wait)
        del self._pending_status[pool_name]
        try:
            await self._write_status(pool, plan)
        except BaseException:
            # Retried with backoff by the controller; a newer plan, if any, wins meanwhile.
            self._pending_status.setdefault(pool_name, plan)
            raise
        self._status_written_at[pool_name] = self.clock.now()
        return None

    def _transitions(self, pool: Obj, plan: rolloutplan.Plan) -> bool:
        mine = self._pool_written.get(pool["metadata"]["name"])
        if mine is not None and not _caught_up(_rv(pool), _rv(mine)):
            pool = mine
        status = pool.get("status") or {}
        before = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        if any(before.get(c.type) != c.status for c in plan.conditions):
            return True
        # Settling (nothing unavailable any more, everything updated) is news too, not a mere count.
        settled = (
            status.get("unavailableMachineCount") == 0,
            status.get("updatedMachineCount") == status.get("machineCount"),
        )
        new = plan.status
        return settled != (
            new.get("unavailableMachineCount") == 0,
            new.get("updatedMachineCount") == new.get("machineCount"),
        )

    async def _write_status(self, pool: Obj, plan: rolloutplan.Plan) -> None:
        name = pool["metadata"]["name"]
        # Our previous status write may not be in the cache yet: start from it, not from an older
        # version that would only earn a 409 and a re-read.
        mine = self._pool_written.get(name)
        if mine is not None and not _caught_up(_rv(pool), _rv(mine)):
            pool = mine
        before = {c.get("type"): c.get("status") for c in (pool.get("status") or {}).get("conditions") or []}
        written = await update_pool_status(
            self.kube, pool, set_conditions=plan.conditions, status_fields=dict(plan.status)
        )
        if written is pool:
            return
        self._pool_written[name] = written
        for cond in plan.conditions:
            if before.get(cond.type) != cond.status:
                self._event(
                    written,
                    MACHINECONFIGPOOLS,
                    cond.reason,
                    f"{cond.type}={cond.status}: {cond.message}",
                    warning=conditions.is_bad(cond),
                )

    def event(self, obj: Obj, kind: Any, reason: str, message: str, *, warning: bool = False) -> None:
        """Queue an Event for a hook of this controller (e.g. an invalid ``node-disruption-policy``)."""
        self._event(obj, kind, reason, message, warning=warning)

    def _event(self, obj: Obj, kind: Any, reason: str, message: str, *, warning: bool = False) -> None:
        """Queue an Event; one sender records them in order. Events are best effort, never a step: a
        burst of them (a wave of nodes finishing) must not crowd out the writes that move nodes on."""
        ref = {**obj, "kind": kind.kind, "apiVersion": kind.api_version}
        when = dt.datetime.fromtimestamp(self.clock.wall(), dt.UTC)
        self._events.put_nowait((ref, reason, message, "Warning" if warning else "Normal", when))

    async def _send_events(self) -> None:
        while True:
            ref, reason, message, type_, when = await self._events.get()
            try:
                await self.kube.record_event(ref, reason=reason, message=message, type_=type_, when=when)
            except Exception:
                log.exception("recording event %s failed", reason)
            finally:
                self._events.task_done()

    async def events_sent(self) -> None:
        """Return once every Event queued so far has been sent (or given up on)."""
        await self._events.join()


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _caught_up(cached: str, written: str) -> bool:
    """Whether the cache shows our write. resourceVersions are opaque, but every API server in use
    (etcd's revision, the emulator's counter) issues increasing integers: compare them as such,
    else fall back to equality."""
    if cached == written:
        return True
    with contextlib.suppress(ValueError):
        return int(cached) >= int(written)
    return False


def _pool_of_build(_: str, mosb: Mapping[str, Any]) -> list[str]:
    """A MachineOSBuild's pool: its MachineOSConfig's name, which is the pool's."""
    name = ((mosb.get("spec") or {}).get("machineOSConfig") or {}).get("name")
    return [str(name)] if name else []
