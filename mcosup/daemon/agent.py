"""The daemon's loop: observe the Node and the host, plan, run the plan, report on the Node.

Level-triggered: every pass re-reads the Node, the rendered config, the ConfigMaps and the host, and a
pass with nothing to do only makes sure the Node's report is right. What the agent reads and writes in
the cluster goes through the :class:`Cluster` seam (the real one is :mod:`mcosup.daemon.cluster`), so
this module has no Kubernetes client in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from mcosup.daemon import plan as p
from mcosup.daemon.certplan import REGISTRY_CERTS_DIR, USER_CA_PATH, certificate_paths, plan_certificates
from mcosup.daemon.executor import RebootRequested, StepFailed, run_record
from mcosup.daemon.host import Host, HostError
from mcosup.daemon.hostfacts import Applied, HostFacts
from mcosup.daemon.journal import DaemonState, HealthGate, Journal, PlanRecord, RolledBack
from mcosup.daemon.steps import Reboot
from mcosup.kube import errors
from mcosup.model import disruption, health, names
from mcosup.model import node as nodeproto
from mcosup.model.hostconfig import ConfigError, parse_machineconfig
from mcosup.model.node import NodeView, Target
from mcosup.model.objects import Obj
from mcosup.runtime.logs import fields
from mcosup.runtime.settings import AgentSettings

log = logging.getLogger(__name__)

#: Target of the certificate track (it has no config or image of its own).
CERTIFICATES = Target(mode="certificates", config=names.NODE_CERTIFICATES_CM)
#: Longest wait, in seconds, between two looks at a node's health while its health gate is open
#: (a Node change, such as it turning Ready, is seen at once).
HEALTH_POLL = 5.0


class Cluster(Protocol):
    """What the daemon needs from the API: its Node, rendered configs, two ConfigMaps, its pool's
    health-check time, a Node patch."""

    def node(self) -> Obj | None: ...
    def machineconfig(self, name: str) -> Obj | None: ...
    def configmap(self, name: str) -> Obj | None: ...
    async def wait_changed(self, seconds: float) -> None: ...
    async def patch_node_annotations(self, annotations: Mapping[str, str | None]) -> None: ...
    def health_check_seconds(self) -> int:
        """The ``mc/health-check-seconds`` of the node's pool (:mod:`mcosup.model.health`)."""
        ...


class Agent:
    def __init__(
        self,
        cluster: Cluster,
        host: Host,
        *,
        node_name: str,
        settings: AgentSettings | None = None,
        journal: Journal | None = None,
        wall: Callable[[], float] = time.time,
    ):
        self.cluster = cluster
        #: Wall-clock seconds: a health gate's deadline must survive the daemon's restarts and reboots.
        self.wall = wall
        self.host = host
        self.node_name = node_name
        self.settings = settings or AgentSettings()
        self.journal = journal or Journal(host)
        self._where = fields(node=node_name)
        self._sent: dict[str, str | None] = {}
        self._sent_from: str | None = None
        self._policy_error: str | None = None
        self._backoff = errors.RetryPolicy(base=self.settings.backoff_initial, cap=self.settings.backoff_max)

    async def run(self) -> None:
        """Reconcile until cancelled; raises :class:`RebootRequested` when the host reboots."""
        failures = 0
        while True:
            try:
                await self.reconcile()
                failures = 0
                delay = self.settings.resync
            except RebootRequested:
                raise
            except Exception as exc:
                failures += 1
                if errors.transient(exc):
                    # The API server throttled, failed or was out of reach (its client already tried
                    # again): nothing is wrong with the node's update, so it is not reported; the pass
                    # is tried again (it is idempotent), at the server's Retry-After when it gave one.
                    delay = self._backoff.delay(exc, failures)
                    log.info("API server unavailable: %s; retrying in %.1fs", exc, delay, extra=self._where)
                else:
                    delay = min(self._backoff.cap, self._backoff.base * 2 ** (failures - 1))
                    await self._degraded(exc, delay)
            await self.cluster.wait_changed(delay)

    async def _degraded(self, exc: Exception, delay: float) -> None:
        if isinstance(exc, p.PlanError | StepFailed | HostError | ConfigError | health.HealthCheckError):
            reason = str(exc)
            log.warning("degraded: %s; retrying in %.0fs", reason, delay, extra=self._where)
        else:
            reason = f"internal error: {type(exc).__name__}: {exc}"
            log.exception("pass failed; retrying in %.0fs", delay, extra=self._where)
        try:
            await self._report(nodeproto.degraded(reason))
        except Exception as report_exc:
            log.warning("cannot report Degraded on the node: %s", report_exc, extra=self._where)

    async def reconcile(self) -> None:
        """One level-triggered pass: certificates, then the node's config, then the report."""
        node = self.cluster.node()
        if node is None:
            log.info("node %s not found yet", self.node_name, extra=self._where)
            return
        view = NodeView.of(node)
        state = self.journal.load()
        await self._certificates(state)
        target = p.target_of(view)
        if target is None:
            log.debug("node has no desired config yet", extra=self._where)
            return
        if state.rolled_back is not None and await self._rolled_back(state, target):
            return
        if state.health is not None and state.health.image != target.image:
            state.health = None  # given something else: that image's gate is moot
            self.journal.save(state)
        revert = p.reverting(target, view, HostFacts(applied=state.applied))
        if state.plan is not None and (state.plan.target, state.plan.revert) != (target, revert):
            log.info("target changed to %s; abandoning plan %s", target, state.plan.key, extra=self._where)
            state.abandon_plan()
            self.journal.save(state)
        if state.plan is None:
            plan = await self._plan(view, state)
            if plan is not None and plan.steps:
                log.info(
                    "plan %s: %d step(s) to %s",
                    plan.key(),
                    len(plan.steps),
                    plan.target,
                    extra=self._where,
                )
                state.plan = PlanRecord.start(plan)
                # Only a plan that boots something is gated: a live apply (contract 12.2) only stages
                # its image, and rolling back from it would boot the deployment before the running one.
                if plan.target.image and any(isinstance(s, Reboot) for s in plan.steps):
                    state.health = HealthGate(plan.target.image, previous=state.applied)
                self.journal.save(state)
        if state.plan is not None:
            # A retry after a failure stays Degraded (with its reason) until it succeeds, rather than
            # flapping through Working on every attempt.
            if self._annotations().get(names.STATE) != names.STATE_DEGRADED:
                await self._report(nodeproto.working())
            await run_record(
                self.host, self.journal, state, "plan", on_reboot=self._rebooting, node=self.node_name
            )
        if state.health is not None:
            await self._health_gate(state)
        report = nodeproto.done(target)
        if state.applied is not None and state.applied.live is not None:
            report[names.LAST_APPLIED_WITHOUT_REBOOT] = state.applied.live
        await self._report(report)
        await self._stage(view)

    async def _stage(self, view: NodeView) -> None:
        """Contract 12.1: download ``stagingImage`` ahead of the node's turn, the node staying Done
        (schedulable, available); report ``stagedImage``. A failed download is logged and tried again
        on the next pass: the node's turn pulls the image anyway."""
        image = view.staging_image
        if image is None or image in (view.current_image, view.desired_image):
            if view.staged_image is not None:
                await self._report({names.STAGED_IMAGE: None})
            return
        if view.staged_image == image:
            return
        log.info("downloading %s ahead of the node's turn", image, extra=self._where)
        try:
            await self.host.pull(image)
        except HostError as exc:
            log.warning("cannot download %s ahead of the node's turn: %s", image, exc, extra=self._where)
            return
        await self._report({names.STAGED_IMAGE: image})

    # The health gate (contract 12.3).

    async def _health_gate(self, state: DaemonState) -> None:
        """Return once the node is healthy on the image it booted; past the pool's deadline, roll the
        host back (raises :class:`RebootRequested`)."""
        gate = state.health
        assert gate is not None
        if gate.since is None:
            gate.since = self.wall()
            self.journal.save(state)
        seconds = self.cluster.health_check_seconds()
        while True:
            why = await self._unhealthy()
            if why is None:
                log.info("healthy on %s", gate.image, extra=self._where)
                state.health = None
                self.journal.save(state)
                return
            left = gate.since + seconds - self.wall()
            if left <= 0:
                log.warning("%s did not become healthy: %s; rolling back", gate.image, why, extra=self._where)
                state.rolled_back = RolledBack(
                    gate.image, f"{why} within {seconds}s of booting it", boot_from=self.host.boot_id()
                )
                state.applied, state.health = gate.previous, None
                self.journal.save(state)
                await self._roll_back(state.rolled_back, state)
            log.info("waiting up to %.0fs for health on %s: %s", left, gate.image, why, extra=self._where)
            await self.cluster.wait_changed(min(left, HEALTH_POLL))

    async def _unhealthy(self) -> str | None:
        """Why the node is not healthy now, or None: Ready, and the host's boot-complete check passed."""
        node = self.cluster.node()
        if node is None or not NodeView.of(node).ready:
            return f"node {self.node_name} is not Ready"
        return await self.host.boot_complete()

    async def _rolled_back(self, state: DaemonState, target: Target) -> bool:
        """True while the node's target is still the image the host was rolled back from: the
        rollback is finished if need be, and reported. A new target forgets it (and is tried)."""
        rolled = state.rolled_back
        assert rolled is not None
        if target.image != rolled.image:
            log.info("given %s after rolling back from %s", target, rolled.image, extra=self._where)
            # An unfinished restore is moot: the plan for the new target compares every file it writes
            # with the disk.
            state.rolled_back, state.restore = None, None
            self.journal.save(state)
            return False
        if self.host.boot_id() == rolled.boot_from:
            await self._roll_back(rolled, state)  # its reboot has not happened yet
        await self._report(health.rolled_back(rolled.image, rolled.why))
        await self._restore(state, rolled)
        return True

    async def _restore(self, state: DaemonState, rolled: RolledBack) -> None:
        """Give the host back, with no reboot, what the node ran before the bad image and reports again
        (:func:`~mcosup.daemon.plan.plan_after_rollback`): planned once after the rollback's reboot and
        journalled, so a crash or a failure resumes at the step not done. A failure is logged and tried
        on the next pass: the node keeps reporting the rollback, which is what halts its pool."""
        try:
            if not rolled.restored:
                applied = state.applied
                steps = p.plan_after_rollback(
                    applied, await self._facts(p.paths_to_read(None, applied), applied)
                )
                if applied is not None and steps:
                    back = Target(applied.mode, applied.config.name, applied.image)
                    state.restore = PlanRecord.start(p.Plan(back, steps))
                    log.info(
                        "after the rollback: %d step(s) to give the host back %s",
                        len(steps),
                        back,
                        extra=self._where,
                    )
                rolled.restored = True
                self.journal.save(state)
            if state.restore is not None:
                await run_record(
                    self.host, self.journal, state, "restore", on_reboot=self._rebooting, node=self.node_name
                )
        except (HostError, StepFailed) as exc:
            log.warning(
                "cannot give the host back what it ran before %s: %s; retrying on the next pass",
                rolled.image,
                exc,
                extra=self._where,
            )

    async def _roll_back(self, rolled: RolledBack, state: DaemonState) -> None:
        """Boot the previous deployment: report the rollback, run it (once), reboot."""
        await self._report(health.rolled_back(rolled.image, rolled.why))
        if not rolled.requested:
            await self.host.rollback()
            rolled.requested = True
            self.journal.save(state)
        log.info("rebooting to roll back from %s", rolled.image, extra=self._where)
        await self.host.reboot()
        raise RebootRequested(f"roll back from {rolled.image}")

    async def _plan(self, view: NodeView, state: DaemonState) -> p.Plan | None:
        rendered_obj = self.cluster.machineconfig(view.desired_config or "")
        rendered = parse_machineconfig(rendered_obj) if rendered_obj is not None else None
        facts = await self._facts(p.paths_to_read(rendered, state.applied), state.applied)
        osimage = self.cluster.configmap(names.OSIMAGEURL_CM)
        stock = ((osimage or {}).get("data") or {}).get(names.BASE_OS_CONTAINER_IMAGE_KEY) or None
        return p.plan_config(view, rendered, facts, stock_image=stock, policy=self._disruption_policy())

    async def _facts(self, paths: set[str], applied: Applied | None) -> HostFacts:
        """What the host reports: its deployments and the current contents of ``paths``."""
        booted, staged = await self.host.deployments()
        disk = {path: self.host.read_file(path) for path in sorted(paths)}
        return HostFacts(booted=booted, staged=staged, applied=applied, disk=disk)

    def _disruption_policy(self) -> disruption.Policy | None:
        """Contract 12.2; an invalid policy is logged once and every change reboots until it is fixed."""
        policy, error = disruption.policy_of(self.cluster.configmap(names.NODE_DISRUPTION_POLICY_CM))
        if error is not None and error != self._policy_error:
            log.warning("%s", error, extra=self._where)
        self._policy_error = error
        return policy

    async def _certificates(self, state: DaemonState) -> None:
        """Contract 6.4: every mode, paused pool or not, before anything else."""
        if state.certs is not None:
            await run_record(self.host, self.journal, state, "certs", on_reboot=self._rebooting)
        cm = self.cluster.configmap(names.NODE_CERTIFICATES_CM)
        data: Mapping[str, str] | None = None if cm is None else (cm.get("data") or {})
        paths = {*certificate_paths(data).values(), USER_CA_PATH}
        disk = {path: self.host.read_file(path) for path in sorted(paths)}
        registries = frozenset(self.host.list_dir(REGISTRY_CERTS_DIR))
        steps = plan_certificates(data, disk, registries)
        if not steps:
            return
        state.certs = PlanRecord.start(p.Plan(CERTIFICATES, steps))
        self.journal.save(state)
        await run_record(self.host, self.journal, state, "certs", on_reboot=self._rebooting)

    async def _rebooting(self, step: Reboot) -> None:
        await self._report(nodeproto.rebooting())

    def _annotations(self) -> dict[str, str | None]:
        """The Node's annotations as far as we know: the cache, plus our patches it has not shown yet."""
        meta = (self.cluster.node() or {}).get("metadata") or {}
        have: dict[str, str | None] = dict(meta.get("annotations") or {})
        # Until the cache holds a newer version of the Node than the one we patched from, what we sent
        # is the truth.
        if meta.get("resourceVersion") != self._sent_from:
            self._sent.clear()
        have.update(self._sent)
        return have

    async def _report(self, annotations: Mapping[str, str | None]) -> None:
        have = self._annotations()
        change = {k: v for k, v in annotations.items() if have.get(k) != v}
        if change:
            log.info("reporting %s", change, extra=self._where)
            version = ((self.cluster.node() or {}).get("metadata") or {}).get("resourceVersion")
            await self.cluster.patch_node_annotations(change)
            if version != self._sent_from:
                self._sent.clear()
            self._sent.update(change)
            self._sent_from = version
