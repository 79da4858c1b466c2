"""``mcosup status``: a human summary of pools, builds, nodes and the builder pod, from any kubeconfig."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mcosup.model import conditions, names
from mcosup.model.machineosconfig import opted_in
from mcosup.model.selectors import pool_selects_node
from mcosup.runtime.settings import KubeSettings, namespace_from_env

# rich and the client stack load when the command runs, not for `mcosup --help`.
if TYPE_CHECKING:
    from rich.table import Table

HELP = "a summary of pools, builds and nodes"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, else in-cluster config)")
    parser.add_argument("--namespace", help="namespace of mcosup (default: $MCOSUP_NAMESPACE)")


def build_state(pool: Mapping[str, Any]) -> str:
    for type_ in names.BUILD_CONDITIONS:
        if conditions.is_true(pool, type_):
            return type_
    return "-"


def tables(
    pools: list[dict[str, Any]],
    nodes: list[dict[str, Any]],
    builder: dict[str, Any] | None,
    machineosconfigs: list[dict[str, Any]] | None = None,
) -> list[Table]:
    from rich.table import Table

    pool_table = Table(title="MachineConfigPools")
    for column in (
        "pool",
        "layered",
        "rendered config",
        "build",
        "image",
        "nodes updated/total",
        "conditions",
    ):
        pool_table.add_column(column)
    for pool in sorted(pools, key=lambda p: p["metadata"]["name"]):
        meta = pool["metadata"]
        rendered = ((pool.get("spec") or {}).get("configuration") or {}).get("name", "-")
        members = [
            n
            for n in nodes
            # The node controller's membership rule: an empty or invalid nodeSelector manages no node.
            if pool_selects_node(
                (pool.get("spec") or {}).get("nodeSelector"), n["metadata"].get("labels") or {}
            )
        ]
        updated = sum(
            1
            for n in members
            if (n["metadata"].get("annotations") or {}).get(names.CURRENT_CONFIG) == rendered
            and (n["metadata"].get("annotations") or {}).get(names.STATE) == names.STATE_DONE
        )
        bad = [
            f"{c['type']}: {c.get('message', '')}"[:80]
            for c in (pool.get("status") or {}).get("conditions") or []
            if (
                c.get("type") in ("Degraded", "NodeDegraded", "RenderDegraded", "BuildFailed")
                and c.get("status") == "True"
            )
            or (c.get("type") == names.LAYERING_READY and c.get("status") == "False")
        ]
        pool_table.add_row(
            meta["name"],
            "yes" if opted_in(pool, machineosconfigs or ()) else "no",
            rendered,
            build_state(pool),
            (meta.get("annotations") or {}).get(names.NEWEST_IMAGE_ANNOTATION, "-"),
            f"{updated}/{len(members)}",
            "\n".join(bad) or "ok",
        )
    builder_table = Table(title="Machine OS Builder")
    for column in ("pod", "phase", "started"):
        builder_table.add_column(column)
    if builder is None:
        builder_table.add_row("(none)", "-", "-")
    else:
        status = builder.get("status") or {}
        builder_table.add_row(
            builder["metadata"]["name"], status.get("phase", "Pending"), status.get("startTime", "-")
        )
    return [pool_table, builder_table]


async def collect(settings: KubeSettings, namespace: str) -> list[Table]:
    from mcosup.kube import client as kclient
    from mcosup.kube import errors
    from mcosup.kube.resources import MACHINECONFIGPOOLS, MACHINEOSCONFIGS, NODES, PODS

    async with kclient.connect(settings) as kube:
        pools, _ = await kube.list(MACHINECONFIGPOOLS)
        nodes, _ = await kube.list(NODES)
        try:
            moscs, _ = await kube.list(MACHINEOSCONFIGS)
        except errors.NotFound:  # a cluster without the MachineOSConfig CRD: only labels opt in
            moscs = []
        try:
            builder: dict[str, Any] | None = await kube.get(PODS, names.BUILDER_POD, namespace=namespace)
        except errors.NotFound:
            builder = None
    return tables(pools, nodes, builder, moscs)


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    settings = KubeSettings.from_env(os.environ, kubeconfig=args.kubeconfig)
    result = asyncio.run(collect(settings, namespace_from_env(os.environ, args.namespace)))
    for table in result:
        console.print(table)
    return 0
