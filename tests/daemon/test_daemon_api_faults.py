"""A real `mcosup daemon` whose own report writes meet a misbehaving API server (story chaos, issue 17).

Story chaos found it: while a worker updated, an API-server restart (or a burst of 503s, a 429 storm, a
reset connection) outlasted the client's own retries on the daemon's Node patch, and the daemon
reported the node ``Degraded`` although nothing was wrong with its update; the rollout then waited on a
node that was fine. A transient API failure is retried quietly: the node goes Working, reboots and is
Done without ever showing Degraded.
"""

from __future__ import annotations

from typing import Any

import pytest
from daemon_kit import NODE, Cluster, assert_legacy_mc1

from mcosup.kube import errors
from mcosup.kube.resources import NODES
from mcosup.model import names
from mcosup.sim import fakehost
from mcosup.sim.fakehost import FakeHost

#: Every try of the client fails, and then two more: without the fix the daemon's Degraded report
#: (sent after the client gave up) is the write that gets through.
FAILED_PATCHES = errors.RetryPolicy().attempts + 2


async def target_by_replace(cluster: Cluster, config: str) -> None:
    """The supervisor's target, written with a PUT so that the faults on PATCH hit only the daemon."""
    node = await cluster.kube.get(NODES, NODE)
    node["metadata"].setdefault("labels", {})[names.DAEMON_MODE] = names.MODE_LEGACY
    node["metadata"].setdefault("annotations", {})[names.DESIRED_CONFIG] = config
    await cluster.kube.replace(NODES, NODE, node)


def node_states(emulator: Any) -> list[str | None]:
    """The daemon's state on every version of the Node the API server stored."""
    return [
        (obj["metadata"].get("annotations") or {}).get(names.STATE)
        for _, _, obj in emulator.history
        if obj.get("kind") == "Node" and obj["metadata"]["name"] == NODE
    ]


@pytest.mark.parametrize("fault", ["503", "connection reset"])
async def test_report_write_failing_transiently_is_retried_not_reported_degraded(
    cluster: Cluster, fake: FakeHost, emulator: Any, fault: str
) -> None:
    if fault == "503":
        rule: Any = emulator.faults.fail(503, method="PATCH", path=f"/nodes/{NODE}$", times=FAILED_PATCHES)
    else:
        rule = emulator.faults.reset(method="PATCH", path=f"/nodes/{NODE}$", times=FAILED_PATCHES)
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig):
        await target_by_replace(cluster, "rendered-worker-1")
        await cluster.done("rendered-worker-1")
    assert rule.hits == FAILED_PATCHES, "the daemon's report writes never met the fault"
    assert_legacy_mc1(fake)
    states = node_states(emulator)
    assert names.STATE_DEGRADED not in states, states
    assert names.STATE_WORKING in states
