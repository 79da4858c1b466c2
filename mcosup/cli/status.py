"""``mcosup status``: a human summary of pools, their current builds, nodes and the builder pod.

Readable at any terminal width, 80 columns included: one line per pool with what an admin scans for
(opt-in form, rendered config, nodes updated, the build state as one word, the build's age and
duration), then, indented below it, what is too long for a column (the current MachineOSBuild, the
image by digest) and every condition that needs attention, wrapped. Long values are shortened the way
an admin can still search for them (``rendered-worker-3f2a9c1b…``, ``…@sha256:4f2a9c1e7b3d…``), and
only when the full form does not fit. The layout is pure (:func:`pool_rows`, :func:`render`), so it is
tested at several widths without a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcosup.model import conditions, machineosbuild, names
from mcosup.model.machineosconfig import admins_machineosconfig, machineosconfig_for, opted_in
from mcosup.model.selectors import pool_selects_node
from mcosup.runtime.settings import KubeSettings, namespace_from_env

HELP = "a summary of pools, builds and nodes"

Obj = Mapping[str, Any]

#: Pool conditions shown below a pool while they say something is wrong (status True).
_ATTENTION_TRUE = (
    names.DEGRADED,
    names.NODE_DEGRADED,
    names.RENDER_DEGRADED,
    names.BUILD_FAILED,
    names.BUILD_INTERRUPTED,
)
#: Pool build conditions as the one word the BUILD column shows when no MachineOSBuild says more.
_POOL_BUILD_WORDS = {
    names.BUILD_PENDING: "Pending",
    names.BUILDING: "Building",
    names.BUILD_SUCCESS: "Succeeded",
    names.BUILD_FAILED: "Failed",
    names.BUILD_INTERRUPTED: "Interrupted",
}
_MESSAGE_LINES = 3
_DIGEST_SHOWN = 12
_HASH_SHOWN = 8


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, else in-cluster config)")
    parser.add_argument("--namespace", help="namespace of mcosup (default: $MCOSUP_NAMESPACE)")


@dataclass(frozen=True, slots=True)
class PoolRow:
    """What ``mcosup status`` shows of one pool; "-" where there is nothing to show."""

    name: str
    #: ``no``, ``label`` (the label, with or without the MachineOSConfig made from it) or ``MOSC`` (an
    #: admin's MachineOSConfig).
    layered: str
    config: str
    nodes: str
    #: The current build's state in one word: Pending, Prepared, Building, Succeeded, Failed, Interrupted.
    build: str
    build_name: str
    age: str
    duration: str
    image: str
    #: ``<type>: <message>`` of each condition that needs attention.
    attention: tuple[str, ...]


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def human_duration(delta: dt.timedelta) -> str:
    """A duration as ``kubectl get`` prints ages: ``45s``, ``4m10s``, ``57m``, ``3h4m``, ``40h``, ``3d4h``."""
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "0s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _meta(obj: Obj) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _status(obj: Obj | None) -> Mapping[str, Any]:
    status = (obj or {}).get("status")
    return status if isinstance(status, Mapping) else {}


def build_word(build: Obj | None, pool: Obj) -> str:
    """The build state in one word: the MachineOSBuild's, else the pool's build condition's, else "-"."""
    if build is not None:
        return machineosbuild.state(build) or "Pending"
    for type_, word in _POOL_BUILD_WORDS.items():
        if conditions.is_true(pool, type_):
            return word
    return "-"


def _attention(pool: Obj) -> tuple[str, ...]:
    shown = []
    for cond in _status(pool).get("conditions") or []:
        type_, status = cond.get("type"), cond.get("status")
        if (type_ in _ATTENTION_TRUE and status == "True") or (
            type_ == names.LAYERING_READY and status == "False"
        ):
            reason = f" ({cond['reason']})" if cond.get("reason") not in (None, "", type_) else ""
            shown.append(f"{type_}{reason}: {cond.get('message') or ''}".strip())
    return tuple(shown)


def pool_rows(
    pools: Iterable[Obj],
    nodes: Sequence[Obj],
    machineosconfigs: Sequence[Obj],
    machineosbuilds: Iterable[Obj],
    now: dt.datetime,
) -> list[PoolRow]:
    """What to show of each pool, in name order."""
    builds = {str(_meta(b).get("name")): b for b in machineosbuilds}
    rows = []
    for pool in sorted(pools, key=lambda p: str(_meta(p).get("name", ""))):
        name = str(_meta(pool).get("name", ""))
        spec = pool.get("spec") or {}
        rendered = str((spec.get("configuration") or {}).get("name") or "-")
        # The node controller's membership rule: an empty or invalid nodeSelector manages no node.
        members = [
            n for n in nodes if pool_selects_node(spec.get("nodeSelector"), _meta(n).get("labels") or {})
        ]
        updated = sum(
            1
            for n in members
            if (_meta(n).get("annotations") or {}).get(names.CURRENT_CONFIG) == rendered
            and (_meta(n).get("annotations") or {}).get(names.STATE) == names.STATE_DONE
        )
        layered = "no"
        if opted_in(pool, machineosconfigs):
            layered = "MOSC" if admins_machineosconfig(name, machineosconfigs) is not None else "label"
        mosc = machineosconfig_for(name, machineosconfigs) if layered != "no" else None
        build_name = machineosbuild.current_build_name(mosc)
        build = builds.get(build_name) if build_name else None
        created = _time(_meta(build).get("creationTimestamp")) if build is not None else None
        start, end = _time(_status(build).get("buildStart")), _time(_status(build).get("buildEnd"))
        # The current build's image once it succeeded (what the rollout takes), else the last one.
        built = conditions.is_true(build or {}, names.MOSB_SUCCEEDED)
        image = (
            (_status(build).get("digestedImagePushSpec") if built else None)
            or _status(mosc).get("currentImagePullSpec")
            or (_meta(pool).get("annotations") or {}).get(names.NEWEST_IMAGE_ANNOTATION)
            or "-"
        )
        rows.append(
            PoolRow(
                name=name,
                layered=layered,
                config=rendered,
                nodes=f"{updated}/{len(members)}",
                build=build_word(build, pool) if layered != "no" else "-",
                build_name=build_name or "-",
                age=human_duration(now - created) if created else "-",
                duration=human_duration((end or now) - start) if start else "-",
                image=str(image),
                attention=_attention(pool),
            )
        )
    return rows


def _short_config(rendered: str, hash_only: bool) -> str:
    """``rendered-<pool>-<hash>`` with the hash cut to its first 8 hex (what ``grep`` still finds)."""
    head, sep, digest = rendered.rpartition("-")
    if not sep or not rendered.startswith(names.RENDERED_PREFIX) or len(digest) <= _HASH_SHOWN:
        return rendered
    return digest[:_HASH_SHOWN] + "…" if hash_only else f"{head}-{digest[:_HASH_SHOWN]}…"


def _fit(text: str, room: int) -> str:
    """``text`` in ``room`` columns: a digest shortened first, then the end cut with an ellipsis."""
    if len(text) <= room:
        return text
    repo, sep, digest = text.partition("@sha256:")
    if sep and len(digest) > _DIGEST_SHOWN:
        text = f"{repo}{sep}{digest[:_DIGEST_SHOWN]}…"
        if len(text) <= room:
            return text
    return text[: max(room - 1, 0)] + "…"


_HEADERS = ("POOL", "LAYERED", "CONFIG", "NODES", "BUILD", "AGE", "DURATION")


def _table(cells: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in cells) for i in range(len(_HEADERS))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def render(rows: Sequence[PoolRow], builder: Obj | None, now: dt.datetime, width: int) -> list[str]:
    """The lines ``mcosup status`` prints, none wider than ``width`` (taken as 40 when narrower)."""
    width = max(width, 40)
    for config_form in ("full", "short", "hash"):
        cells = [_HEADERS] + [
            (
                r.name,
                r.layered,
                r.config if config_form == "full" else _short_config(r.config, config_form == "hash"),
                r.nodes,
                r.build,
                r.age,
                r.duration,
            )
            for r in rows
        ]
        table = _table(cells)
        if max(len(line) for line in table) <= width:
            break
    lines = [_fit(table[0], width)]
    for row, line in zip(rows, table[1:], strict=True):
        lines.append(_fit(line, width))
        for label, value in (("build", row.build_name), ("image", row.image)):
            if value != "-":
                lines.append(_fit(f"  {label}  {value}", width))
        for text in row.attention:
            wrapped = textwrap.wrap(
                text, width, initial_indent="  ! ", subsequent_indent="    ", break_on_hyphens=False
            )
            if len(wrapped) > _MESSAGE_LINES:
                wrapped = [*wrapped[: _MESSAGE_LINES - 1], _fit(wrapped[_MESSAGE_LINES - 1] + " …", width)]
            lines.extend(_fit(w, width) for w in wrapped)
    if builder is None:
        text = "builder pod: none (it runs while some pool is opted in with valid settings)"
    else:
        status = _status(builder)
        started = _time(status.get("startTime"))
        since = f", started {human_duration(now - started)} ago" if started else ""
        text = f"builder pod {_meta(builder).get('name')}: {status.get('phase', 'Pending')}{since}"
    return [*lines, "", _fit(text, width)]


async def collect(
    settings: KubeSettings, namespace: str
) -> tuple[
    list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], Obj | None
]:
    """Pools, nodes, MachineOSConfigs, MachineOSBuilds and the builder pod (None when absent)."""
    from mcosup.kube import client as kclient
    from mcosup.kube import errors
    from mcosup.kube.resources import MACHINECONFIGPOOLS, MACHINEOSBUILDS, MACHINEOSCONFIGS, NODES, PODS

    # A few reads and out: the light transport spares the user aiohttp's ~0.15 s of imports.
    async with kclient.connect(settings, light=True) as kube:
        pools, _ = await kube.list(MACHINECONFIGPOOLS)
        nodes, _ = await kube.list(NODES)
        layering: list[list[dict[str, Any]]] = []
        for resource in (MACHINEOSCONFIGS, MACHINEOSBUILDS):
            try:
                items, _ = await kube.list(resource)
            except errors.NotFound:  # a cluster without the CRD: only labels opt in
                items = []
            layering.append(items)
        try:
            builder: Obj | None = await kube.get(PODS, names.BUILDER_POD, namespace=namespace)
        except errors.NotFound:
            builder = None
    return pools, nodes, layering[0], layering[1], builder


def main(args: argparse.Namespace) -> int:
    settings = KubeSettings.from_env(os.environ, kubeconfig=args.kubeconfig)
    pools, nodes, moscs, builds, builder = asyncio.run(
        collect(settings, namespace_from_env(os.environ, args.namespace))
    )
    now = dt.datetime.now(dt.UTC)
    # $COLUMNS, else the terminal's width, else 80 (piped output).
    width = shutil.get_terminal_size((80, 24)).columns
    print("\n".join(render(pool_rows(pools, nodes, moscs, builds, now), builder, now, width)))
    return 0
