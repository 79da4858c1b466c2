"""The one opt-in rule (contract sections 2 and 11) and each pool's build settings: tables, no cluster.

:func:`mcosup.model.machineosconfig.opted_in` is what the supervisor, the builder, the rollout, the
webhook's facts and ``mcosup status`` all ask, so these rows are what each of them answers.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from mcosup.model import buildconfig, machineosconfig, names
from mcosup.model.machineosconfig import BuildSettings

NS = names.DEFAULT_NAMESPACE
PUSHSPEC = "registry.example.com/os/worker:latest"


def pool(name: str = "worker", *, label: bool = False) -> dict[str, Any]:
    labels = {names.LAYERING_ENABLED: ""} if label else {}
    return {"metadata": {"name": name, "labels": labels}, "spec": {}}


def mosc(
    name: str = "worker",
    *,
    pool_name: str | None = None,
    managed: bool = False,
    deleting: bool = False,
    pull: str | None = "pull",
    push: str = "push",
    pushspec: str = PUSHSPEC,
    containerfile: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "uid": f"uid-{name}"}
    if managed:
        metadata["labels"] = {names.MANAGED_BY_LABEL: "true"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec: dict[str, Any] = {
        "machineConfigPool": {"name": pool_name or name},
        "imageBuilder": {"imageBuilderType": "Job"},
        "renderedImagePushSecret": {"name": push},
        "renderedImagePushSpec": pushspec,
    }
    if pull is not None:
        spec["baseImagePullSecret"] = {"name": pull}
    if containerfile is not None:
        spec["containerFile"] = containerfile
    return {"apiVersion": names.API_VERSION, "kind": "MachineOSConfig", "metadata": metadata, "spec": spec}


def secret(name: str, type_: str = "kubernetes.io/dockerconfigjson") -> dict[str, Any]:
    raw = base64.b64encode(orjson.dumps({"auths": {"registry.example.com": {"auth": "dTpw"}}})).decode()
    return {"metadata": {"name": name}, "type": type_, "data": {".dockerconfigjson": raw}}


SECRETS = {"pull": secret("pull"), "push": secret("push"), "admin-push": secret("admin-push")}
BUILD_CONFIG = {
    "metadata": {"name": names.BUILD_CONFIG_CM},
    "data": {
        names.BASE_IMAGE_PULL_SECRET_KEY: "pull",
        names.FINAL_IMAGE_PUSH_SECRET_KEY: "push",
        names.FINAL_IMAGE_PULLSPEC_KEY: "registry.local:5000/os/image:latest",
    },
}


@pytest.mark.parametrize(
    ("the_pool", "moscs", "expected"),
    [
        (None, [], False),
        (pool(), [], False),
        (pool(label=True), [], True),  # the label alone: opted in while its MachineOSConfig is made
        (pool(), [mosc()], True),  # an admin's MachineOSConfig, no label
        (pool(label=True), [mosc()], True),
        (pool(label=True), [mosc(managed=True)], True),
        # A managed one whose pool lost the label is only waiting to be deleted: the pool is out now.
        (pool(), [mosc(managed=True)], False),
        (pool(), [mosc(deleting=True)], False),  # being deleted: the opt-out has started
        (pool(), [mosc("master")], False),  # another pool's
        (pool(), [mosc("worker", pool_name="infra")], False),  # named like the pool, naming another
        (pool(), [mosc("other", pool_name="worker")], False),  # the name must be the pool's
        (pool(label=True), [mosc(deleting=True)], True),
    ],
)
def test_opted_in(the_pool: dict[str, Any] | None, moscs: list[dict[str, Any]], expected: bool) -> None:
    assert machineosconfig.opted_in(the_pool, moscs) is expected


def test_an_admins_machineosconfig_is_read_as_it_is() -> None:
    text = [{"containerfileArch": "NoArch", "content": "RUN echo hi\n"}]
    settings, problems = machineosconfig.settings_of(
        mosc(push="admin-push", pull=None, containerfile=text), SECRETS.get, NS
    )
    assert problems == []
    assert settings == BuildSettings(PUSHSPEC, "admin-push", None, "RUN echo hi\n")


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            mosc(push="x"),
            f'MachineOSConfig worker spec.renderedImagePushSecret.name: Secret "x" does not exist in '
            f"namespace {NS}: create it with `kubectl -n {NS} create secret docker-registry x ...`",
        ),
        (
            mosc(pull="gone"),
            'MachineOSConfig worker spec.baseImagePullSecret.name: Secret "gone" does not exist',
        ),
        (
            mosc(push="opaque"),
            f"MachineOSConfig worker spec.renderedImagePushSecret.name: Secret {NS}/opaque has type "
            "'Opaque': it must be of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg",
        ),
        (mosc(pushspec="Not An Image"), "MachineOSConfig worker spec.renderedImagePushSpec: 'Not An Image'"),
        (mosc(pull=""), "MachineOSConfig worker spec.baseImagePullSecret.name is empty"),
        (
            mosc(containerfile=[{"containerfileArch": "ARM64", "content": "RUN true"}]),
            "MachineOSConfig worker spec.containerFile[0].containerfileArch='ARM64' is not supported yet",
        ),
        (
            mosc(containerfile=[{"containerfileArch": "NoArch", "content": "FROM fedora:41\nRUN true"}]),
            "MachineOSConfig worker spec.containerFile[0].content line 1: 'FROM fedora:41' would replace",
        ),
    ],
)
def test_problems_name_the_object_and_the_field(obj: dict[str, Any], expected: str) -> None:
    secrets = {**SECRETS, "opaque": {"metadata": {"name": "opaque"}, "type": "Opaque"}}
    settings, problems = machineosconfig.settings_of(obj, secrets.get, NS)
    assert settings is None
    assert any(p.startswith(expected) for p in problems), problems


def test_the_label_form_reads_the_configmap_and_names_it_in_problems() -> None:
    cms = {names.BUILD_CONFIG_CM: BUILD_CONFIG}
    settings, problems = machineosconfig.pool_settings("worker", [], cms.get, SECRETS.get, NS)
    assert problems == []
    assert settings == BuildSettings("registry.local:5000/os/image:latest", "push", "pull", "")
    # Exactly the ConfigMap's own validation, word for word, as before MachineOSConfigs.
    _, problems = machineosconfig.pool_settings("worker", [], {}.get, SECRETS.get, NS)
    assert problems == buildconfig.validate(None, SECRETS.get, NS)[1]


def test_an_admins_machineosconfig_wins_over_the_label_and_the_configmap() -> None:
    cms = {names.BUILD_CONFIG_CM: BUILD_CONFIG}
    settings, _ = machineosconfig.pool_settings(
        "worker", [mosc(push="admin-push", pull=None)], cms.get, SECRETS.get, NS
    )
    assert settings is not None and (settings.push_secret, settings.pull_secret) == ("admin-push", None)
    # Without the ConfigMap too: an admin's MachineOSConfig needs none.
    settings, problems = machineosconfig.pool_settings("worker", [mosc()], {}.get, SECRETS.get, NS)
    assert problems == [] and settings is not None


def test_a_managed_machineosconfig_is_the_configmap_spelt_as_an_object() -> None:
    custom = {"metadata": {"name": names.CUSTOM_DOCKERFILE_CM}, "data": {"worker": "RUN true\n"}}
    cms = {names.BUILD_CONFIG_CM: BUILD_CONFIG, names.CUSTOM_DOCKERFILE_CM: custom}
    # The stale managed object is not what the builds read: the ConfigMap is, through the same object.
    stale = mosc(managed=True, pushspec="registry.example.com/old/image:latest")
    settings, _ = machineosconfig.pool_settings("worker", [stale], cms.get, SECRETS.get, NS)
    assert settings == BuildSettings("registry.local:5000/os/image:latest", "push", "pull", "RUN true\n")
    config, _ = buildconfig.validate(BUILD_CONFIG, SECRETS.get, NS)
    assert config is not None
    made = machineosconfig.from_label("worker", config, "RUN true\n")
    assert made["metadata"] == {"name": "worker", "labels": {names.MANAGED_BY_LABEL: "true"}}
    assert made["spec"] == {
        "machineConfigPool": {"name": "worker"},
        "imageBuilder": {"imageBuilderType": "Job"},
        "baseImagePullSecret": {"name": "pull"},
        "renderedImagePushSecret": {"name": "push"},
        "renderedImagePushSpec": "registry.local:5000/os/image:latest",
        "containerFile": [{"containerfileArch": "NoArch", "content": "RUN true\n"}],
    }
    assert machineosconfig.settings_of(made, SECRETS.get, NS) == (settings, [])


def test_a_from_in_the_label_forms_custom_containerfile_names_the_configmap_entry() -> None:
    """The backstop of the webhook's rule, named where the admin edits the text."""
    custom = {"metadata": {"name": names.CUSTOM_DOCKERFILE_CM}, "data": {"worker": "FROM configs AS final"}}
    cms = {names.BUILD_CONFIG_CM: BUILD_CONFIG, names.CUSTOM_DOCKERFILE_CM: custom}
    settings, problems = machineosconfig.pool_settings("worker", [], cms.get, SECRETS.get, NS)
    assert settings is None
    assert [p.split(" line ")[0] for p in problems] == [
        f"ConfigMap {NS}/{names.CUSTOM_DOCKERFILE_CM} data.worker"
    ]
