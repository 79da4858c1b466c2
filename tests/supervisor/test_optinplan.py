"""The opt-in controller's decisions (:mod:`mcosup.supervisor.optinplan`): tables, no cluster."""

from __future__ import annotations

from typing import Any

import pytest
from test_optin_rule import BUILD_CONFIG, NS, SECRETS, mosc, pool

from mcosup.model import names
from mcosup.supervisor import optinplan
from mcosup.supervisor.optinplan import Create, Delete, Update

CUSTOM = {"metadata": {"name": names.CUSTOM_DOCKERFILE_CM}, "data": {"worker": "RUN true\n"}}
PUSHSPEC = BUILD_CONFIG["data"][names.FINAL_IMAGE_PULLSPEC_KEY]


def managed(**kw: Any) -> dict[str, Any]:
    obj = mosc(managed=True, pushspec=PUSHSPEC, **kw)
    obj["metadata"]["resourceVersion"] = "7"
    obj["metadata"]["annotations"] = {"kept": "yes"}
    obj["status"] = {"observedGeneration": 1}
    return obj


def steps(
    pools: list[dict[str, Any]], moscs: list[dict[str, Any]], cms: dict[str, Any] | None = None
) -> list[optinplan.Step]:
    configmaps = {names.BUILD_CONFIG_CM: BUILD_CONFIG} if cms is None else cms
    return optinplan.managed_steps(pools, moscs, configmaps.get, SECRETS.get, NS)


def describe(found: list[optinplan.Step]) -> list[tuple[str, str]]:
    return [(type(s).__name__, s.name) for s in found]


@pytest.mark.parametrize(
    ("pools", "moscs", "cms", "expected"),
    [
        ([pool()], [], None, []),
        ([pool(label=True)], [], None, [("Create", "worker")]),
        # No valid build config: nothing to make it from (the pool says why in LayeringReady).
        ([pool(label=True)], [], {}, []),
        ([pool(label=True)], [managed()], None, []),  # in step already
        ([pool(label=True)], [managed(push="old")], None, [("Update", "worker")]),
        # An invalid ConfigMap edit leaves the managed object as it was.
        ([pool(label=True)], [managed(push="old")], {}, []),
        ([pool()], [managed()], None, [("Delete", "worker")]),  # the label went
        ([], [managed()], None, [("Delete", "worker")]),  # the pool went
        ([], [managed()], {}, [("Delete", "worker")]),
        ([pool()], [managed(deleting=True)], None, []),  # already going
        ([pool(label=True)], [managed(deleting=True)], None, []),  # made again once gone
        # An admin's own: never created over, edited nor deleted, whatever the label or the ConfigMap.
        ([pool(label=True)], [mosc(push="admin-push")], None, []),
        ([pool()], [mosc(push="admin-push")], None, []),
        ([], [mosc(push="admin-push")], None, []),
        (
            [pool(label=True), pool("infra", label=True), pool("master")],
            [managed(name="master")],
            None,
            [("Create", "infra"), ("Create", "worker"), ("Delete", "master")],
        ),
    ],
)
def test_managed_steps(
    pools: list[dict[str, Any]], moscs: list[dict[str, Any]], cms: dict[str, Any] | None, expected: Any
) -> None:
    assert describe(steps(pools, moscs, cms)) == expected


def test_created_from_the_configmaps() -> None:
    cms = {names.BUILD_CONFIG_CM: BUILD_CONFIG, names.CUSTOM_DOCKERFILE_CM: CUSTOM}
    [step] = steps([pool(label=True)], [], cms)
    assert isinstance(step, Create)
    assert step.body["metadata"]["labels"] == {names.MANAGED_BY_LABEL: "true"}
    assert "ownerReferences" not in step.body["metadata"]
    assert step.body["spec"]["renderedImagePushSpec"] == PUSHSPEC
    assert step.body["spec"]["containerFile"] == [{"containerfileArch": "NoArch", "content": "RUN true\n"}]


def test_an_update_keeps_the_objects_metadata_and_replaces_only_its_spec() -> None:
    cms = {names.BUILD_CONFIG_CM: BUILD_CONFIG, names.CUSTOM_DOCKERFILE_CM: CUSTOM}
    [step] = steps([pool(label=True)], [managed()], cms)
    assert isinstance(step, Update)
    assert step.body["metadata"]["resourceVersion"] == "7"  # a conflict, not a lost write, if it moved
    assert step.body["metadata"]["annotations"] == {"kept": "yes"}
    assert "status" not in step.body
    assert step.body["spec"]["containerFile"][0]["content"] == "RUN true\n"
    # The custom Containerfile removed again: the field goes with it.
    [step] = steps([pool(label=True)], [step.body])
    assert isinstance(step, Update) and "containerFile" not in step.body["spec"]


def test_a_delete_names_the_very_object() -> None:
    [step] = steps([pool()], [managed()])
    assert step == Delete("worker", "uid-worker", f"pool worker no longer carries {names.LAYERING_ENABLED}")


def test_settings_problems_per_pool() -> None:
    moscs = [mosc("master", push="missing")]
    cms = {names.BUILD_CONFIG_CM: BUILD_CONFIG}
    found = optinplan.settings_problems([pool(label=True), pool("master")], moscs, cms.get, SECRETS.get, NS)
    assert found["worker"] == []
    assert len(found["master"]) == 1
    assert found["master"][0].startswith(
        'MachineOSConfig master spec.renderedImagePushSecret.name: Secret "missing" does not exist'
    )
