"""``mcosup status``'s layout: what an admin reads of each pool and its current build, at 80 columns and wide.

Pure: objects in the shapes the contract (section 11) and deploy/crds/ give, a fixed clock, lines out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mcosup.cli.status import human_duration, pool_rows, render
from mcosup.model import names

NOW = dt.datetime(2026, 12, 3, 15, 0, 0, tzinfo=dt.UTC)
HASH = "3f2a9c1b" + "0" * 24
DIGEST = "sha256:4f2a9c1e7b3d" + "a" * 52
IMAGE = "127.0.0.1:5000/os/layered@" + DIGEST
BUILD = "worker-0123456789abcdef"


def ago(minutes: float) -> str:
    return (NOW - dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, status: str = "True", reason: str = "Reason", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": ago(1),
    }


def pool(name: str, *, label: bool = False, conds: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {names.LAYERING_ENABLED: ""} if label else {}},
        "spec": {
            "configuration": {"name": f"rendered-{name}-{HASH}"},
            "nodeSelector": {"matchLabels": {f"node-role.kubernetes.io/{name}": ""}},
        },
        "status": {"conditions": list(conds)},
    }


def node(name: str, role: str, config: str) -> dict[str, Any]:
    annotations = {names.CURRENT_CONFIG: config, names.STATE: names.STATE_DONE}
    return {
        "metadata": {
            "name": name,
            "labels": {f"node-role.kubernetes.io/{role}": ""},
            "annotations": annotations,
        }
    }


def machineosconfig(
    pool_name: str, build: str | None, *, by_annotation: bool = False, managed: bool = False
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": pool_name}
    if managed:  # made by the supervisor for a labelled pool
        metadata["labels"] = {names.MANAGED_BY_LABEL: names.MANAGED_BY_LABEL_VALUE}
    status: dict[str, Any] = {"observedGeneration": 1}
    if build and by_annotation:
        metadata["annotations"] = {names.CURRENT_MOSB_ANNOTATION: build}
    elif build:
        status["machineOSBuild"] = {"group": names.GROUP, "resource": "machineosbuilds", "name": build}
        status["currentImagePullSpec"] = IMAGE
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineOSConfig",
        "metadata": metadata,
        "spec": {"machineConfigPool": {"name": pool_name}, "renderedImagePushSpec": "127.0.0.1:5000/os/x:y"},
        "status": status,
    }


def machineosbuild(
    name: str, *, created: float, start: float | None, end: float | None, final: str | None
) -> dict[str, Any]:
    """As the builder writes it (contract 11): conditions as the MCO's, buildStart, buildEnd."""
    conds = [condition("Prepared", "False" if start else "True")]
    if start is not None:
        conds.append(condition("Building", "False" if final else "True"))
    for type_ in ("Succeeded", "Failed", "Interrupted"):
        conds.append(condition(type_, "True" if type_ == final else "False"))
    status: dict[str, Any] = {"conditions": conds}
    if start is not None:
        status["buildStart"] = ago(start)
    if end is not None:
        status["buildEnd"] = ago(end)
    if final == "Succeeded":
        status["digestedImagePushSpec"] = IMAGE
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineOSBuild",
        "metadata": {"name": name, "creationTimestamp": ago(created)},
        "spec": {
            "machineConfig": {"name": f"rendered-worker-{HASH}"},
            "machineOSConfig": {"name": "worker"},
            "renderedImagePushSpec": "127.0.0.1:5000/os/layered:" + name,
        },
        "status": status,
    }


FAILED = (
    "build Job build-worker-0123456789abcdef failed after 3 retries: error: Error building at STEP "
    '"RUN dnf install -y tmux": exit status 1; last log lines: Error: Unable to find a match: tmux '
    "(check the repositories of the base image)"
)


def cluster(
    final: str | None = "Succeeded",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    conds: tuple[dict[str, Any], ...] = ()
    if final == "Failed":
        conds = (condition(names.BUILD_FAILED, reason="BuildFailed", message=FAILED),)
    pools = [pool("master"), pool("worker", label=True, conds=conds), pool("infra")]
    nodes = [
        node("master-0", "master", f"rendered-master-{HASH}"),
        node("worker-0", "worker", f"rendered-worker-{HASH}"),
        node("worker-1", "worker", "rendered-worker-old"),
    ]
    moscs = [machineosconfig("worker", BUILD, managed=True), machineosconfig("infra", None)]
    moscs[1]["spec"]["renderedImagePushSecret"] = {"name": "push"}
    builds = [machineosbuild(BUILD, created=14, start=13, end=9 if final else None, final=final)]
    return pools, nodes, moscs, builds


BUILDER = {
    "metadata": {"name": names.BUILDER_POD},
    "status": {"phase": "Running", "startTime": ago(60 * 26)},
}


def lines_at(width: int, final: str | None = "Succeeded") -> list[str]:
    pools, nodes, moscs, builds = cluster(final)
    return render(pool_rows(pools, nodes, moscs, builds, NOW), BUILDER, NOW, width)


def test_at_80_columns_nothing_is_cut_that_an_admin_needs() -> None:
    lines = lines_at(80)
    assert max(len(line) for line in lines) <= 80
    assert lines == [
        "POOL    LAYERED  CONFIG                     NODES  BUILD      AGE  DURATION",
        "infra   MOSC     rendered-infra-3f2a9c1b…   0/0    -          -    -",
        "master  no       rendered-master-3f2a9c1b…  1/1    -          -    -",
        "worker  label    rendered-worker-3f2a9c1b…  1/2    Succeeded  14m  4m",
        f"  build  {BUILD}",
        "  image  127.0.0.1:5000/os/layered@sha256:4f2a9c1e7b3d…",
        "",
        "builder pod machine-os-builder: Running, started 26h ago",
    ]


def test_wide_the_full_names_and_digest_are_shown() -> None:
    lines = lines_at(200)
    assert lines[0].split() == ["POOL", "LAYERED", "CONFIG", "NODES", "BUILD", "AGE", "DURATION"]
    (worker,) = [line for line in lines if line.startswith("worker")]
    assert worker.split() == ["worker", "label", f"rendered-worker-{HASH}", "1/2", "Succeeded", "14m", "4m"]
    assert f"  image  {IMAGE}" in lines
    assert "…" not in "\n".join(lines)


@pytest.mark.parametrize("width", [40, 60, 80, 100, 160])
def test_no_line_is_wider_than_the_terminal(width: int) -> None:
    for final in ("Succeeded", "Failed", None):
        assert max(len(line) for line in lines_at(width, final)) <= width, (width, final)


def test_a_build_in_flight_shows_building_and_its_duration_so_far() -> None:
    worker = [line for line in lines_at(80, final=None) if line.startswith("worker")]
    assert worker[0].split()[-3:] == ["Building", "14m", "13m"]


def test_a_failed_build_wraps_its_message_below_the_pool_at_80_columns() -> None:
    lines = lines_at(80, final="Failed")
    start = lines.index("  image  127.0.0.1:5000/os/layered@sha256:4f2a9c1e7b3d…") + 1
    assert lines[start].startswith("  ! BuildFailed: build Job build-worker-0123456789abcdef")
    message = " ".join(line.strip() for line in lines[start : start + 3])
    assert "Unable to find a match: tmux" in message
    assert lines[start + 1].startswith("    ")
    assert next(line for line in lines if line.startswith("worker")).split()[4] == "Failed"


def test_the_current_build_is_found_by_the_annotation_too_and_missing_builds_are_pending_from_the_pool() -> (
    None
):
    pools, nodes, _, builds = cluster()
    moscs = [machineosconfig("worker", BUILD, by_annotation=True, managed=True)]
    (worker,) = [r for r in pool_rows(pools, nodes, moscs, builds, NOW) if r.name == "worker"]
    assert (worker.build, worker.build_name, worker.duration) == ("Succeeded", BUILD, "4m")
    pending = [pool("worker", label=True, conds=(condition(names.BUILD_PENDING),))]
    (row,) = pool_rows(pending, [], [machineosconfig("worker", None, managed=True)], [], NOW)
    assert (row.layered, row.build, row.build_name, row.age) == ("label", "Pending", "-", "-")


def test_no_builder_pod_says_when_one_runs() -> None:
    assert render([], None, NOW, 80)[-1] == (
        "builder pod: none (it runs while some pool is opted in with valid settings)"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "0s"), (45, "45s"), (250, "4m10s"), (240, "4m"), (57 * 60, "57m"), (3 * 3600 + 240, "3h4m"),
     (40 * 3600, "40h"), (3 * 86400 + 4 * 3600, "3d4h"), (30 * 86400, "30d")],
)  # fmt: skip
def test_durations_read_like_kubectl_ages(seconds: int, text: str) -> None:
    assert human_duration(dt.timedelta(seconds=seconds)) == text
