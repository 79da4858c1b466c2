"""What the story chaos runner judges a run by, over the whole watch history (pure: histories in, the
violations found out, each a sentence naming the object and the recorded version).

A history is a list of (sequence, ADDED|MODIFIED|DELETED, object) as :class:`~mcosup.sim.recorder.Recorder`
keeps it. The end-state checks (convergence, leftovers, the rendered config) read the objects as they
are at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mcosup.model import names, rendering
from mcosup.sim.invariants import most_unavailable, not_converged
from mcosup.sim.recorder import Entry

Obj = Mapping[str, Any]


def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _live(obj: Obj) -> bool:
    """A Pod still doing something: not terminal and not being deleted."""
    phase = (obj.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not _meta(obj).get("deletionTimestamp")


def _replay(history: Iterable[Entry], keep: Callable[[Obj], bool]) -> Iterable[tuple[int, dict[str, Obj]]]:
    """After each recorded version: the objects ``keep`` selects, by namespace/name."""
    current: dict[str, Obj] = {}
    for seq, kind, obj in history:
        key = f"{_meta(obj).get('namespace', '')}/{_meta(obj).get('name', '')}"
        if kind == "DELETED" or not keep(obj):
            current.pop(key, None)
        else:
            current[key] = obj
        yield seq, current


def max_unavailable(nodes: Iterable[Entry], workers: Sequence[str], limit: int, *, since: int) -> list[str]:
    worst, seq, down = most_unavailable(nodes, workers, since=since)
    if worst > limit:
        return [f"{worst} worker nodes unavailable at once ({', '.join(down)}) at Node version {seq}"]
    if worst == 0:
        return ["the Node history shows no node ever updating: the maxUnavailable check proved nothing"]
    return []


def builder_pods(pods: Iterable[Entry]) -> list[str]:
    def builder(obj: Obj) -> bool:
        return (_meta(obj).get("labels") or {}).get(names.BUILDER_APP_LABEL) == names.BUILDER_APP_VALUE

    out = []
    for seq, live in _replay(pods, lambda o: builder(o) and _live(o)):
        if len(live) > 1:
            out.append(f"{len(live)} builder pods running at Pod version {seq}: {sorted(live)}")
    return out


def builds_in_flight(pods: Iterable[Entry]) -> list[str]:
    def build(obj: Obj) -> bool:
        return names.BUILD_OBJECT_LABEL in (_meta(obj).get("labels") or {})

    out = []
    for seq, live in _replay(pods, lambda o: build(o) and _live(o)):
        by_pool: dict[str, list[str]] = {}
        for key, pod in live.items():
            by_pool.setdefault(str(_meta(pod)["labels"].get(names.TARGET_POOL_LABEL)), []).append(key)
        out += [
            f"pool {pool}: {len(keys)} builds in flight at Pod version {seq}: {sorted(keys)}"
            for pool, keys in by_pool.items()
            if len(keys) > 1
        ]
    return out


def images_recorded(pools: Iterable[Entry], built_for: Callable[[str], str | None]) -> list[str]:
    """Each time a pool's image annotation takes a new value, the config the image was built for
    (``built_for(image)``, from its label in the registry) is the pool's current config."""
    out = []
    last: dict[str, str | None] = {}
    seen: set[str] = set()
    for seq, kind, pool in pools:
        name = str(_meta(pool).get("name"))
        image = (_meta(pool).get("annotations") or {}).get(names.NEWEST_IMAGE_ANNOTATION)
        if kind == "DELETED":
            last.pop(name, None)
            continue
        if image and image != last.get(name):
            seen.add(str(image))
            current = ((pool.get("spec") or {}).get("configuration") or {}).get("name")
            config = built_for(str(image))
            if config != current:
                out.append(
                    f"pool {name}: image {image} (built for {config}) recorded at pool version {seq} "
                    f"while its current config was {current}"
                )
        last[name] = image
    if not seen:
        out.append("the pool history records no image: the check of recorded images proved nothing")
    return out


def end_state(
    pool: Obj,
    nodes: Sequence[Obj],
    machineconfigs: Sequence[Obj],
    leftovers: Sequence[str],
) -> list[str]:
    """At the end: every node of the pool on its current config in legacy mode, none cordoned by
    mcosup, nothing of the builds left, and the rendered config the merge of the MachineConfigs."""
    name = str(_meta(pool)["name"])
    out = []
    if why := not_converged(pool, nodes, image=None, layered=False):
        out.append(f"pool {name} did not converge: {why}")
    for n in nodes:
        if (_meta(n).get("annotations") or {}).get(names.CORDONED_BY) or (n.get("spec") or {}).get(
            "unschedulable"
        ):
            out.append(f"node {_meta(n)['name']} left cordoned")
    out += [f"left behind: {x}" for x in leftovers]
    current = ((pool.get("spec") or {}).get("configuration") or {}).get("name")
    sources = [mc for mc in machineconfigs if not str(_meta(mc)["name"]).startswith("rendered-")]
    expected = rendering.render(name, rendering.select(pool, sources)).name
    if current != expected:
        out.append(f"pool {name} runs {current}, but its MachineConfigs merge into {expected}")
    return out


#: A traceback right after a line saying the work is retried is a handled failure, not a crash.
HANDLED = ("retrying", "will retry", "retry in")


def crash_in_log(text: str) -> str | None:
    """The first sign of a crash in a process's log: a traceback nothing said was handled, or a task
    whose exception nobody read."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "Task exception was never retrieved" in line:
            return "\n".join(lines[i : i + 30])
        if line.startswith("Traceback (most recent call last)"):
            before = lines[i - 1] if i else ""
            if not any(h in before for h in HANDLED):
                return "\n".join(lines[max(0, i - 1) : i + 30])
    return None
