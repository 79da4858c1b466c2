"""Rules that used to have several implementations giving different answers now give one, everywhere.

Each test is named for the disagreement it ends and for what a real cluster does, which decided it:
Ignition's own data-URL decoder (the MCO's daemon uses the same one) and the API server's label
selectors.
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import pytest

from mcosup.builder import buildplan
from mcosup.model import ignition, machineconfig, names, rendering
from mcosup.model.hostconfig import ConfigError, parse_machineconfig
from mcosup.sim.controlplane import ControlPlane, ControlPlaneError
from webhooks.facts import PoolFacts


def mc_with_source(source: str) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfig",
        "metadata": {"name": "50-motd", "labels": {names.ROLE_LABEL: "worker"}},
        "spec": {
            "config": {
                "ignition": {"version": "3.4.0"},
                "storage": {"files": [{"path": "/etc/motd", "mode": 420, "contents": {"source": source}}]},
            }
        },
    }


FIELD = "spec.config.storage.files[0].contents.source"


def test_unpadded_base64_is_refused_by_webhook_render_and_daemon_alike_as_ignition_refuses_it() -> None:
    unpadded = mc_with_source("data:;base64," + base64.b64encode(b"hi").decode().rstrip("="))
    # The webhook denies it, naming the field and how to fix it...
    [problem] = machineconfig.problems(unpadded)
    assert problem.field == FIELD and "padded standard base64" in problem.message
    # ...render refuses it the same way (RenderDegraded), so does the builder's context...
    with pytest.raises(rendering.RenderError, match="padded standard base64"):
        rendering.check(unpadded)
    with pytest.raises(
        buildplan.BuildError,
        match=r"MachineConfig rendered-worker-x spec\.config\.storage\.files\[0\]\.contents\.source: .*pad",
    ):
        buildplan.build_context("rendered-worker-x", unpadded["spec"])
    # ...and the legacy daemon, which used to be the only one to refuse it, names the object and field.
    with pytest.raises(ConfigError, match=r"MachineConfig 50-motd .*files\[0\]\.contents\.source: .*padded"):
        parse_machineconfig(unpadded)


def test_padded_base64_and_percent_encoding_give_the_same_bytes_to_every_reader() -> None:
    for source, expected in (
        ("data:;base64," + base64.b64encode(b"hi\n").decode(), b"hi\n"),
        ("data:,GROUP%3Dstable%0A", b"GROUP=stable\n"),
        ("data:text/plain;charset=utf-8;base64,eA==", b"x"),
    ):
        mc = mc_with_source(source)
        assert machineconfig.problems(mc) == []
        rendering.check(mc)
        assert ignition.decode_data_url(source) == expected
        assert parse_machineconfig(mc).files[0].contents == expected
        [entry] = buildplan.build_context("rendered-worker-x", mc["spec"])
        assert (entry.path, entry.data) == ("/etc/motd", expected)


def pool(expression: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfigPool",
        "metadata": {"name": "worker", "labels": {names.LAYERING_ENABLED: ""}},
        "spec": {"machineConfigSelector": {"matchExpressions": [expression]}},
    }


SELECTORS_REFUSED = [
    {"key": names.ROLE_LABEL, "operator": "NotIn", "values": []},
    {"key": names.ROLE_LABEL, "operator": "In", "values": []},
    {"key": names.ROLE_LABEL, "operator": "Exists", "values": ["worker"]},
]
SELECTOR_IDS = ["NotIn-empty", "In-empty", "Exists-with-values"]


@pytest.mark.parametrize("expression", SELECTORS_REFUSED, ids=SELECTOR_IDS)
def test_a_selector_the_api_server_refuses_selects_nothing_in_render_and_in_the_opt_in_guard(
    expression: dict[str, Any],
) -> None:
    p = pool(expression)
    mc = mc_with_source("data:,x")
    # Render: the pool is RenderDegraded with the selector named, instead of merging every MachineConfig.
    with pytest.raises(
        rendering.SelectorError, match=r"MachineConfigPool worker: spec\.machineConfigSelector"
    ):
        rendering.select(p, [mc])
    # The webhook's opt-in guard: the pool selects no MachineConfig either.
    assert not PoolFacts.from_pool(p).selects(mc["metadata"]["labels"])


@pytest.mark.parametrize("expression", SELECTORS_REFUSED, ids=SELECTOR_IDS)
def test_the_real_api_server_refuses_the_same_selectors_in_an_object(
    control_plane: ControlPlane, expression: dict[str, Any]
) -> None:
    # A MachineConfigPool's selector is a metav1.LabelSelector, which the MCO turns into a selector with
    # LabelSelectorAsSelector (an error for these); a built-in object carrying one shows the API server's
    # own verdict on it: 422, naming the field. (Only the query-string form, `-l 'role notin ()'`, parses.)
    ns = "one-answer-selectors"
    with contextlib.suppress(ControlPlaneError):
        control_plane.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"generateName": "budget-"},
        "spec": {"maxUnavailable": 1, "selector": {"matchExpressions": [expression]}},
    }
    with pytest.raises(ControlPlaneError, match="HTTP 422") as refused:
        control_plane.call("POST", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", budget)
    assert "spec.selector.matchExpressions[0].values" in str(refused.value), refused.value


def test_a_dropin_without_contents_is_written_by_neither_the_builder_nor_the_daemon_as_ignition() -> None:
    # The daemon used to write such a drop-in as an empty file while the image left it out; Ignition
    # skips a drop-in whose contents are not given.
    spec = {
        "config": {
            "ignition": {"version": "3.4.0"},
            "systemd": {
                "units": [
                    {
                        "name": "kubelet.service",
                        "dropins": [
                            {"name": "10-empty.conf"},
                            {"name": "20-x.conf", "contents": "[Service]\n"},
                        ],
                    }
                ]
            },
        }
    }
    [unit] = parse_machineconfig({"metadata": {"name": "rendered-worker-x"}, "spec": spec}).units
    assert [d.name for d in unit.dropins] == ["20-x.conf"]
    paths = [e.path for e in buildplan.build_context("rendered-worker-x", spec)]
    assert paths == ["/etc/systemd/system/kubelet.service.d/20-x.conf"]
