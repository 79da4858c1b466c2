"""The rollout plan: which nodes of a pool get a new target, when, and what the pool status says.

Pure: no I/O, no clock reads, no memory between calls. Everything is derived from the pool and node
objects as the API server holds them (plus the nodes the controller is about to cordon or is
draining), so a restarted supervisor computes the same plan and never exceeds
``maxUnavailable`` (contract section 5).

Choices where the contract leaves room, following the MCO's node controller:

- ``maxUnavailable``: an int, or a percent of the pool's nodes rounded **down**; a result of 0 becomes 1
  (the MCO does ``GetScaledValueFromIntOrPercent(..., roundUp=false)`` then ``max(..., 1)``; the CRD
  says "You cannot set this value to 0 to stop updates (it will default back to 1)").
- A node mid-update (asked to run something it does not run yet) is given the new target without
  taking a free slot: it is counted already. A node unavailable for reasons of its own (not Ready,
  an admin's cordon, no daemon report yet, degraded) may come back by itself while we update it, so
  updating it must fit the cap *without* it: the number of nodes unavailable because of updates stays
  within ``maxUnavailable``, and the total does too unless nodes fail on their own. Candidates: nodes
  unavailable now first, then nodes that downloaded the image ahead of their turn (contract 12.1),
  then by zone (``topology.kubernetes.io/zone``; nodes without a zone last), then oldest
  ``creationTimestamp``, then name.
- Staging (contract 12.1, :mod:`mcosup.supervisor.stagingplan`): when it is in use, an available node
  whose image is still downloading does not take its turn (it stays available and its slot stays free
  for a staged node), so the first wave starts once its nodes have staged; the pool's progress counts
  such nodes as ``staging``. Past the staging timeout it takes its turn unstaged (``Plan.late`` says
  why; the controller logs it and records a Warning Event on the pool). A legacy target, or a node
  already unavailable, has nothing to wait for.
- A node we cordoned but have not yet given its target is in its drain phase; while the pool is paused
  or holding for an image, such a node is released (uncordoned) instead of being left cordoned.
- A node selected by several pools belongs to one: ``master`` first, then a custom pool, ``worker``
  last (the MCO's rule); ties by name.
- The image: an opted-in pool's image is its MachineOSConfig's current MachineOSBuild's
  ``status.digestedImagePushSpec``, used only when that build Succeeded for the pool's current rendered
  config (:func:`mcosup.model.machineosbuild.image_for_pool`, the structured hand-off). The pool's
  ``newestImageEquivalentConfig`` alone is not enough: right after a new render it still holds the
  previous config's image.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import heapq
import math
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mcosup.model import names, selectors
from mcosup.model.conditions import Condition
from mcosup.model.node import NodeView, Target
from mcosup.model.objects import ObjView, rendered_config
from mcosup.supervisor import haltplan, stagingplan, windowplan

#: Annotation the kubelet puts on static (mirror) pods.
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
#: The condition types this controller owns on a pool; every other condition is left as it is.
OWN_CONDITIONS = (names.UPDATED, names.UPDATING, names.DEGRADED, names.NODE_DEGRADED)
DEFAULT_MAX_UNAVAILABLE = 1


class RolloutError(ValueError):
    """The pool's spec cannot be acted on; the message names the pool, the field and the fix."""


class Phase(enum.Enum):
    """Where a node stands against the pool's target; the pool status message counts these."""

    UPDATED = "updated"
    DRAINING = "draining"  # cordoned (or about to be) for the new target, target not yet set
    UPDATING = "updating"  # target set, daemon not done yet
    REBOOTING = "rebooting"
    DEGRADED = "degraded"
    NOT_READY = "not ready"
    STAGING = "staging"  # not started: downloading the target's image ahead of its turn (12.1)
    WAITING = "waiting"  # not at the target, not started

    # Members are singletons compared by identity: hash them so too. (Enum's own __hash__ hashes the
    # name in Python code; a plan counts one phase per node of the pool, thousands per plan.)
    __hash__ = object.__hash__


# Pools and their nodes.


def selector_matches(
    selector: ObjView | None, labels: Mapping[str, str], *, empty_matches_all: bool = False
) -> bool:
    """A metav1.LabelSelector against a label set; an invalid selector matches nothing. By default a
    missing or empty selector matches nothing too: a pool must say which nodes it manages (the MCO
    refuses to act on a pool selecting everything). PodDisruptionBudgets pass ``empty_matches_all``,
    as policy/v1 defines."""
    if empty_matches_all and selector is not None:
        return selectors.safe_selector_matches(selector, labels)
    return selectors.pool_selects_node(selector, labels)


def pool_of_node(node: ObjView, pools: Iterable[ObjView]) -> str | None:
    """The one pool a node belongs to, or None (:func:`mcosup.model.selectors.pool_of_node`)."""
    return selectors.pool_of_node((node.get("metadata") or {}).get("labels") or {}, pools)


# The pool's target.


def _condition(pool: ObjView, type_: str) -> ObjView | None:
    for cond in (pool.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond  # type: ignore[no-any-return]
    return None


def build_state(pool: ObjView) -> str | None:
    """The build condition that is True, if any."""
    for type_ in names.BUILD_CONDITIONS:
        cond = _condition(pool, type_)
        if cond is not None and cond.get("status") == "True":
            return type_
    return None


def pool_target(pool: ObjView, image: str | None, opted_in: bool) -> tuple[Target | None, str | None]:
    """(target, None), or (None, why the pool holds its nodes where they are). ``opted_in`` is
    :func:`mcosup.model.machineosconfig.opted_in` of the pool."""
    rendered = rendered_config(pool)
    if not rendered:
        return None, "no rendered config yet (spec.configuration.name is empty)"
    if not opted_in:
        return Target(names.MODE_LEGACY, rendered, None), None
    if image:
        return Target(names.MODE_LAYERED, rendered, image), None
    state = build_state(pool) or names.BUILD_PENDING
    return None, f"waiting for the image of {rendered} ({state}); nodes keep what they run"


def max_unavailable(pool: ObjView, node_count: int) -> int:
    """Resolve ``spec.maxUnavailable`` against the pool's node count (see the module docstring)."""
    name = (pool.get("metadata") or {}).get("name", "?")
    raw = (pool.get("spec") or {}).get("maxUnavailable")
    if raw is None:
        return DEFAULT_MAX_UNAVAILABLE
    fix = 'set it to a whole number of nodes such as 1, or a percent such as "20%"'
    if isinstance(raw, bool):
        raise RolloutError(f"MachineConfigPool {name}: spec.maxUnavailable={raw!r} is not valid; {fix}")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and re.fullmatch(r"\d+%", raw.strip()):
        value = math.floor(int(raw.strip()[:-1]) * node_count / 100)
    elif isinstance(raw, str) and raw.strip().isdigit():
        # Kubernetes refuses a digit string for an int-or-percent field; so do we, with the fix.
        raise RolloutError(f"MachineConfigPool {name}: spec.maxUnavailable={raw!r} is a string; {fix}")
    else:
        raise RolloutError(f"MachineConfigPool {name}: spec.maxUnavailable={raw!r} is not valid; {fix}")
    if value < 0:
        raise RolloutError(f"MachineConfigPool {name}: spec.maxUnavailable={raw!r} is negative; {fix}")
    return max(value, 1)


# The plan.


@dataclasses.dataclass(frozen=True)
class Plan:
    pool: str
    target: Target | None
    #: Why no target (build pending, no rendered config), or None.
    hold: str | None
    paused: bool
    #: A spec problem (bad maxUnavailable): nothing new starts; the message names the fix.
    error: str | None
    capacity: int
    #: Nodes counted unavailable now, sorted.
    unavailable: tuple[str, ...]
    #: Nodes to take to the target now, in order: cordon (unless already unschedulable), drain, then
    #: one patch with the mode label and desired annotations. Includes drains already under way.
    start: tuple[str, ...]
    #: Nodes that finished (at target, Done, current == desired) and that we cordoned: uncordon.
    uncordon: tuple[str, ...]
    #: Nodes we cordoned for a target that is no longer to be rolled out (paused, held): uncordon.
    release: tuple[str, ...]
    phases: Mapping[str, Phase]
    #: How many nodes are in each phase.
    counts: Mapping[Phase, int]
    #: The pool status fields this controller owns (counts; ``configuration`` once all are updated).
    status: Mapping[str, Any]
    #: This controller's pool conditions (Updated, Updating, Degraded, NodeDegraded).
    conditions: tuple[Condition, ...]
    #: A node rolled back from the target (contract 12.3): nothing new starts.
    halt: haltplan.Halt | None = None
    #: Nodes starting their turn without the image staged (past the staging timeout) → why.
    late: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Seconds until a node waiting for its staging turns late (plan again then), or None.
    staging_wake: float | None = None


def _order_key(view: NodeView, image: str | None) -> tuple[int, int, str, str, str]:
    """Candidate order among nodes equally (un)available (contract section 5: unavailable nodes first,
    then by zone, then oldest)."""
    return (
        # Contract 12.1: a node that has downloaded the image is unavailable for drain and reboot only.
        0 if image is not None and view.staged_image == image else 1,
        0 if view.zone is not None else 1,
        view.zone or "",
        view.created,
        view.name,
    )


@dataclasses.dataclass(frozen=True)
class Tally:
    """Each node's phase, and what the pool status counts."""

    phases: dict[str, Phase]
    counts: collections.Counter[Phase]
    #: Nodes updated and available.
    ready: int
    unavailable: int
    degraded: list[NodeView]


def _phase(v: NodeView, given: bool, busy: bool, downloading: bool) -> Phase:
    """A node's phase. ``given``: it was given the pool's target; ``busy``: a step or drain is under way
    on it, or the plan starts it; ``downloading``: it is staging the image before its turn."""
    if v.converged:  # its daemon said Done for what it was given
        if given:
            return Phase.UPDATED
        if busy or v.cordoned_by_us:
            return Phase.DRAINING
        if not v.ready:
            return Phase.NOT_READY
        return Phase.STAGING if downloading else Phase.WAITING
    if v.state == names.STATE_DEGRADED:
        return Phase.DEGRADED
    if v.state == names.STATE_REBOOTING:
        return Phase.REBOOTING
    return Phase.UPDATING  # to the target, or still on its way to an earlier one


def plan_rollout(
    pool: ObjView,
    nodes: Iterable[NodeView],
    *,
    image: str | None,
    opted_in: bool,
    in_flight: Iterable[str] = (),
    drain_stuck: Mapping[str, str] | None = None,
    gate: windowplan.Gate = windowplan.OPEN,
    staging: stagingplan.Waits | None = None,
) -> Plan:
    """Decide what to do now for ``pool`` whose nodes are ``nodes`` (as :class:`NodeView`: the caller
    keeps each node's view from one change of the node to the next rather than building it per plan).

    ``image`` is the pool's image for its current rendered config
    (:func:`~mcosup.model.machineosbuild.image_for_pool`);
    ``opted_in`` whether the pool is opted in (:func:`mcosup.model.machineosconfig.opted_in`).
    ``in_flight`` names nodes the controller has written to (or is about to) whose change its cache
    has not shown yet: they count as unavailable. ``drain_stuck`` maps node → message for drains past
    ``drainTimeout``. ``gate`` says whether a new node update may start now (maintenance windows,
    :mod:`mcosup.supervisor.windowplan`); updates already started go on either way. ``staging``: None
    when nodes do not stage ahead of their turn, else how long each has been staging and the bound
    (:mod:`mcosup.supervisor.stagingplan`).
    """
    name = str(pool["metadata"]["name"])
    spec = pool.get("spec") or {}
    paused = bool(spec.get("paused"))
    views = list(nodes)  # in no order: each output below is ordered by itself
    flying = set(in_flight)
    target, hold = pool_target(pool, image, opted_in)
    error = None
    try:
        capacity = max_unavailable(pool, len(views))
    except RolloutError as exc:
        error, capacity = str(exc), 0

    # One pass over the pool for everything later steps ask of each node, its phase included (a plan
    # runs on every change of a pool of thousands of nodes; each pass over it costs as much as the
    # rest of the plan). What the pass cannot know yet (which nodes start, which are downloading) is
    # mended afterwards for those few nodes.
    unavailable: set[str] = set()
    # Unavailable for reasons of its own (not Ready, an admin's cordon, no daemon report yet), not
    # because an update is under way: such a node may come back by itself, so updating it must fit the
    # cap without it.
    external: set[str] = set()
    given: set[str] = set()  # the nodes given the target
    not_given: list[NodeView] = []
    uncordon: list[str] = []
    done_cordoned: list[str] = []  # converged, cordoned by us, not given the target
    reporting: list[NodeView] = []  # Degraded: the only nodes a halt can name
    phases: dict[str, Phase] = {}
    ready = down = 0
    for v in views:
        n = v.name
        busy = n in flying
        if busy:
            unavailable.add(n)
        elif v.unavailable:
            unavailable.add(n)
            if not v.mid_update and not v.cordoned_by_us:
                external.add(n)
        down += v.unavailable
        at = target is not None and v.at(target)
        if at:
            given.add(n)
            ready += v.converged and not v.unavailable
        else:
            not_given.append(v)
        if v.state == names.STATE_DEGRADED:
            reporting.append(v)
        phases[n] = _phase(v, at, busy, False)
        if v.cordoned_by_us and not busy and v.converged:
            (uncordon if at else done_cordoned).append(n)

    started: list[NodeView] = []
    late: dict[str, str] = {}
    downloading: set[str] = set()
    staging_wake = None
    halt = haltplan.halt(name, reporting, target)
    rolling = target is not None and not paused and not error and gate.error is None and halt is None
    # Cordoned for a target that is not to be rolled out now (paused, holding, bad spec): released.
    release = [] if rolling else done_cordoned
    if target is not None and rolling:
        load = len(unavailable)  # unavailable now, whatever the cause
        ours = load - len(external)  # unavailable because of a rollout
        resumed = haltplan.unacknowledged(reporting, target)
        candidates = [v for v in not_given if v.name not in resumed] if resumed else not_given
        turns = {v.name: staging.turn(v, target) for v in candidates} if staging is not None else {}
        ready_turn = stagingplan.Turn.READY

        def order(v: NodeView) -> tuple[int, int, str, str, str]:
            return _order_key(v, target.image)

        # Unavailable nodes first (in order): those mid-update go on, counted already; an external one
        # may take a slot of the rollout's own.
        for v in sorted((v for v in candidates if v.name in unavailable), key=order):
            turn = turns.get(v.name, ready_turn)
            if v.name not in external:
                started.append(v)  # mid-update already: counted in both
            elif turn is not stagingplan.Turn.STAGING and gate.may_start and ours < capacity:
                started.append(v)
                ours += 1
        # Then as many available ones as there are free slots, the first in order. One still
        # downloading stays available until it has the image: its slot waits for a staged node. Only
        # the chosen few are ordered (a large pool has a handful of free slots and thousands waiting).
        free = capacity - load
        if free > 0 and gate.may_start:
            waiting = (
                v
                for v in candidates
                if v.name not in unavailable and turns.get(v.name, ready_turn) is not stagingplan.Turn.STAGING
            )
            for v in heapq.nsmallest(free, waiting, key=order):
                started.append(v)
                load += 1
                ours += 1
                if (
                    turns.get(v.name) is stagingplan.Turn.LATE
                    and staging is not None
                    and target.image is not None
                ):
                    late[v.name] = stagingplan.late_message(v.name, target.image, staging.timeout)
        if staging is not None:
            downloading = {
                n for n, t in turns.items() if t is stagingplan.Turn.STAGING and n in staging.waited
            }
            if downloading:
                staging_wake = max(0.0, staging.timeout - max(staging.waited[n] for n in downloading))
        # The phases the pass could not know: the nodes this plan starts, and those downloading.
        starting = {v.name for v in started}
        mend = (
            [v for v in candidates if v.name in downloading or v.name in starting] if downloading else started
        )
        for v in mend:
            phases[v.name] = _phase(v, False, v.name in starting or v.name in flying, v.name in downloading)

    degraded = sorted(reporting, key=operator.attrgetter("name"))
    tally = Tally(phases, collections.Counter(phases.values()), ready, down, degraded)
    status, conds = pool_status(
        pool,
        tally,
        target,
        hold=hold,
        paused=paused,
        error=error,
        drain_stuck=drain_stuck or {},
        gate=gate,
        halt=halt,
    )
    return Plan(
        pool=name,
        target=target,
        hold=hold,
        paused=paused,
        error=error,
        capacity=capacity,
        unavailable=tuple(sorted(unavailable)),
        start=tuple(v.name for v in started),
        uncordon=tuple(sorted(uncordon)),
        release=tuple(sorted(release)),
        phases=tally.phases,
        counts=tally.counts,
        status=status,
        conditions=conds,
        halt=halt,
        late=late,
        staging_wake=staging_wake,
    )


# Status.

_PHASE_ORDER = (
    Phase.DRAINING,
    Phase.UPDATING,
    Phase.REBOOTING,
    Phase.DEGRADED,
    Phase.NOT_READY,
    Phase.STAGING,
    Phase.WAITING,
)


def progress_message(phases: Mapping[str, Phase]) -> str:
    """ "3/10 updated; 1 draining, 1 rebooting"."""
    return _progress(collections.Counter(phases.values()), len(phases))


def _progress(counts: Mapping[Phase, int], total: int) -> str:
    text = f"{counts[Phase.UPDATED]}/{total} updated"
    rest = [f"{counts[p]} {p.value}" for p in _PHASE_ORDER if counts[p]]
    return text + ("; " + ", ".join(rest) if rest else "")


def _reporting(degraded: Sequence[NodeView]) -> str:
    text = "; ".join(f"node {v.name} is reporting: {v.reason or 'Degraded'}" for v in degraded)
    return f"{len(degraded)} degraded: {text}"


def _cond(type_: str, ok: bool, reason: str, message: str) -> Condition:
    return Condition(type_, "True" if ok else "False", reason, message)


def pool_status(
    pool: ObjView,
    tally: Tally,
    target: Target | None,
    *,
    hold: str | None,
    paused: bool,
    error: str | None,
    drain_stuck: Mapping[str, str],
    gate: windowplan.Gate = windowplan.OPEN,
    halt: haltplan.Halt | None = None,
) -> tuple[dict[str, Any], tuple[Condition, ...]]:
    """The status fields and this controller's conditions."""
    total, updated, degraded = len(tally.phases), tally.counts[Phase.UPDATED], tally.degraded
    progress = _progress(tally.counts, total)
    all_updated = target is not None and updated == total

    if target is not None and all_updated:
        upd = _cond(names.UPDATED, True, "AllNodesUpdated", f"all nodes run {target.describe()}")
        uping = _cond(names.UPDATING, False, "AllNodesUpdated", progress)
    elif paused:
        upd = _cond(names.UPDATED, False, "Paused", f"pool is paused: {progress}")
        uping = _cond(names.UPDATING, False, "Paused", f"pool is paused: {progress}")
    elif target is None:
        upd = _cond(names.UPDATED, False, "WaitingForImage", f"{progress}; {hold}")
        uping = _cond(names.UPDATING, True, "WaitingForImage", f"{progress}; {hold}")
    elif halt is not None:
        reason, msg = names.REASON_ROLLOUT_HALTED, f"{progress}; {halt.message}"
        upd, uping = _cond(names.UPDATED, False, reason, msg), _cond(names.UPDATING, False, reason, msg)
    elif not gate.may_start and gate.error is None:
        reason, msg = names.REASON_OUTSIDE_MAINTENANCE_WINDOW, f"{progress}; {gate.message}"
        upd, uping = _cond(names.UPDATED, False, reason, msg), _cond(names.UPDATING, False, reason, msg)
    else:
        msg = f"{progress}; target {target.describe()}"
        upd = _cond(names.UPDATED, False, "NodesUpdating", msg)
        uping = _cond(names.UPDATING, True, "NodesUpdating", msg)

    if degraded:
        node_deg = _cond(names.NODE_DEGRADED, True, "NodeDegraded", _reporting(degraded))
    else:
        node_deg = _cond(names.NODE_DEGRADED, False, "AsExpected", "no node reports Degraded")

    render = _condition(pool, names.RENDER_DEGRADED)
    problems: list[tuple[str, str]] = []
    if halt is not None:
        problems.append((names.REASON_ROLLOUT_HALTED, halt.message))
    if error:
        problems.append(("InvalidSpec", error))
    if gate.error:
        problems.append((names.REASON_INVALID_MAINTENANCE_WINDOW, gate.error))
    for node_name in sorted(drain_stuck):
        problems.append((names.REASON_DRAIN_STUCK, drain_stuck[node_name]))
    # The halt's message already carries the reason of each node it names: said once is enough.
    if others := [v for v in degraded if halt is None or v.name not in halt.nodes]:
        problems.append(("NodeDegraded", _reporting(others)))
    if render is not None and render.get("status") == "True":
        problems.append((names.RENDER_DEGRADED, str(render.get("message", ""))))
    if problems:
        deg = _cond(names.DEGRADED, True, problems[0][0], "; ".join(m for _, m in problems))
    else:
        deg = _cond(names.DEGRADED, False, "AsExpected", "no drain is stuck and no node is degraded")

    status: dict[str, Any] = {
        "machineCount": total,
        "updatedMachineCount": updated,
        "readyMachineCount": tally.ready,
        "unavailableMachineCount": tally.unavailable,
        "degradedMachineCount": len(degraded),
    }
    generation = (pool.get("metadata") or {}).get("generation")
    if generation is not None:
        status["observedGeneration"] = generation
    if all_updated:
        status["configuration"] = dict((pool.get("spec") or {}).get("configuration") or {})
    return status, (upd, uping, deg, node_deg)
