"""Admission verdicts for MachineOSConfig create/update (contract sections 7 and 11): outcome and wording."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from webhook_support import admission_review

from mcosup.model import names
from webhooks.facts import ClusterFacts
from webhooks.policy import review
from webhooks.review import Verdict, parse_review

NS = "mcosup-test"
SUPERVISOR = names.service_account_user(NS, names.SUPERVISOR_SA)
PUSHSPEC = "registry.example.com/os/worker:latest"


def mosc(name: str = "worker", *, managed: bool = False, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if managed:
        metadata["labels"] = {names.MANAGED_BY_LABEL: names.MANAGED_BY_LABEL_VALUE}
    body: dict[str, Any] = {
        "machineConfigPool": {"name": name},
        "imageBuilder": {"imageBuilderType": "Job"},
        "renderedImagePushSecret": {"name": "push"},
        "baseImagePullSecret": {"name": "pull"},
        "renderedImagePushSpec": PUSHSPEC,
    }
    body.update(spec)
    return {"apiVersion": names.API_VERSION, "kind": "MachineOSConfig", "metadata": metadata, "spec": body}


def pool(name: str, *, labelled: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {names.LAYERING_ENABLED: ""} if labelled else {}},
        "spec": {"machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: name}}},
    }


def machineconfig(name: str, role: str, path: str) -> dict[str, Any]:
    data = "data:;base64," + base64.b64encode(b"x\n").decode()
    return {
        "metadata": {"name": name, "labels": {names.ROLE_LABEL: role}},
        "spec": {
            "config": {
                "ignition": {"version": "3.4.0"},
                "storage": {"files": [{"path": path, "mode": 420, "contents": {"source": data}}]},
            }
        },
    }


def facts(
    *pools: dict[str, Any],
    secrets: tuple[str, ...] | None = ("push", "pull"),
    mcs: tuple[dict[str, Any], ...] = (),
    moscs: tuple[dict[str, Any], ...] = (),
) -> ClusterFacts:
    return ClusterFacts.from_objects(
        namespace=NS,
        pools=pools or (pool("worker"), pool("master")),
        machineconfigs=mcs,
        machineosconfigs=moscs,
        secrets=None if secrets is None else [{"metadata": {"name": s}} for s in secrets],
    )


def judge(
    obj: dict[str, Any] | None,
    f: ClusterFacts,
    old: dict[str, Any] | None = None,
    *,
    operation: str | None = None,
    user: str = "kube:admin",
) -> Verdict:
    op = operation or ("UPDATE" if old is not None else "CREATE")
    body = admission_review("MachineOSConfig", obj, old, operation=op, user=user)
    return review(parse_review(body), f)


def denied_lines(verdict: Verdict) -> list[str]:
    assert not verdict.allowed and verdict.code == 403, verdict
    header, *lines = verdict.message.splitlines()
    assert header == "MachineOSConfig worker is refused:"
    return [line.removeprefix("  - ") for line in lines]


def test_a_complete_machineosconfig_for_an_existing_pool_is_allowed_with_the_opt_in_warned() -> None:
    verdict = judge(mosc(), facts())
    assert verdict.allowed
    assert verdict.warnings == (
        "pool worker opts in to layering: mcosup builds an OS image from its configuration and then "
        "rebases its nodes onto it, one reboot per node",
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"machineConfigPool": {"name": "infra"}},
            "MachineOSConfig worker spec.machineConfigPool.name: MachineConfigPool infra does not exist: "
            "create the pool first, or name an existing one (kubectl get machineconfigpools)",
        ),
        (
            {"renderedImagePushSpec": "os/worker:latest"},
            "MachineOSConfig worker spec.renderedImagePushSpec: 'os/worker:latest' is not an image "
            "reference (image reference 'os/worker:latest' names no registry: write it in full, "
            "e.g. registry.example.com/os/worker): use registry.example.com/namespace/os-image:latest",
        ),
        (
            {"renderedImagePushSpec": "https://registry.example.com/os:latest"},
            "MachineOSConfig worker spec.renderedImagePushSpec: 'https://registry.example.com/os:latest' is "
            "not an image reference (image reference 'https://registry.example.com/os:latest' has a URL "
            "scheme: drop 'https://'): use registry.example.com/namespace/os-image:latest",
        ),
        (
            {"containerFile": [{"containerfileArch": "NoArch", "content": "RUN true\nFROM fedora:41"}]},
            "MachineOSConfig worker spec.containerFile[0].content line 2: 'FROM fedora:41' would replace "
            "the pool's OS image: this text is appended to mcosup's build, which starts FROM the OS image "
            "with the pool's configuration, so a FROM drops both; remove it and the stage it starts (an "
            "MCO-style 'FROM configs AS final' line is not needed: the text already runs on the "
            "configured OS image)",
        ),
        (
            {"renderedImagePushSecret": {"name": ""}},
            "MachineOSConfig worker spec.renderedImagePushSecret.name is empty: name the Secret to push "
            "images with",
        ),
    ],
)
def test_a_spec_no_build_can_use_is_denied_naming_object_field_and_fix(
    spec: dict[str, Any], expected: str
) -> None:
    assert denied_lines(judge(mosc(**spec), facts())) == [expected]


def test_every_problem_is_listed_at_once() -> None:
    bad = mosc(
        machineConfigPool={"name": "infra"},
        renderedImagePushSpec="not an image",
        containerFile=[{"containerfileArch": "NoArch", "content": "FROM a\nFROM b"}],
    )
    lines = denied_lines(judge(bad, facts()))
    assert [line.split(":")[0] for line in lines] == [
        "MachineOSConfig worker spec.renderedImagePushSpec",
        "MachineOSConfig worker spec.containerFile[0].content line 1",
        "MachineOSConfig worker spec.containerFile[0].content line 2",
        "MachineOSConfig worker spec.machineConfigPool.name",
    ]


def test_secrets_not_created_yet_are_a_warning_naming_field_and_command() -> None:
    verdict = judge(mosc(), facts(secrets=("push",)))
    assert verdict.allowed
    assert verdict.warnings[0] == (
        f"MachineOSConfig worker spec.baseImagePullSecret.name: Secret pull does not exist in namespace "
        f"{NS} yet: builds wait until it is created (kubectl -n {NS} create secret docker-registry pull ...)"
    )
    # Unknown Secrets (no cache): no guess either way.
    assert len(judge(mosc(), facts(secrets=None)).warnings) == 1


def test_opting_in_a_pool_that_selects_undeliverable_files_is_denied_as_the_label_is() -> None:
    f = facts(pool("worker"), mcs=(machineconfig("50-home", "worker", "/home/core/x"),))
    why, offending = denied_lines(judge(mosc(), f))
    assert why.startswith(
        "MachineOSConfig worker spec.machineConfigPool.name: opts pool worker in to layering while it "
        "selects MachineConfigs that write paths an OS image cannot deliver (/var, /home"
    )
    assert "move the file under /etc or /usr" in why and why.endswith("then try again. Offending files:")
    assert offending == "MachineConfig 50-home spec.config.storage.files[0].path: /home/core/x"


def test_the_supervisors_managed_object_follows_the_label_already_judged() -> None:
    f = facts(pool("worker", labelled=True), mcs=(machineconfig("50-home", "worker", "/home/core/x"),))
    assert judge(mosc(managed=True), f, user=SUPERVISOR) == Verdict(True)


def test_an_admin_editing_a_managed_object_is_told_where_its_spec_comes_from() -> None:
    managed = mosc(managed=True)
    f = facts(pool("worker", labelled=True), moscs=(managed,))
    edited = mosc(managed=True, renderedImagePushSpec="registry.example.com/os/other:latest")
    verdict = judge(edited, f, managed)
    assert verdict.allowed
    (warning,) = verdict.warnings
    assert f"ConfigMap {NS}/{names.BUILD_CONFIG_CM}; edit that ConfigMap instead" in warning
    assert f"remove label {names.MANAGED_BY_LABEL} to make this object yours" in warning


def test_metadata_only_updates_are_never_judged_again() -> None:
    """mc/rebuild and the current build's annotation must pass, even for a pool deleted since."""
    old = mosc(machineConfigPool={"name": "gone"}, renderedImagePushSpec="bad")
    new = {**old, "metadata": {**old["metadata"], "annotations": {names.PREFIX + "rebuild": ""}}}
    assert judge(new, facts(), old) == Verdict(True)


@pytest.mark.parametrize(
    ("key", "value", "good", "problem"),
    [
        (
            names.BUILD_TIMEOUT_ANNOTATION,
            "soon",
            "45m",
            f"MachineOSConfig worker annotation {names.BUILD_TIMEOUT_ANNOTATION}: ",
        ),
        (
            names.BUILD_HISTORY_LIMIT,
            "0",
            "5",
            f"MachineOSConfig worker annotation {names.BUILD_HISTORY_LIMIT}='0' is not a whole number of at "
            'least 1: set it to e.g. "3" or remove it (meanwhile the newest 3 Succeeded builds are kept)',
        ),
    ],
)
def test_a_bad_settings_annotation_is_denied_when_set_and_not_held_against_later_edits(
    key: str, value: str, good: str, problem: str
) -> None:
    def annotated(obj: dict[str, Any], **annotations: str) -> dict[str, Any]:
        return {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}

    plain = mosc()
    (line,) = denied_lines(judge(annotated(plain, **{key: value}), facts()))
    assert line.startswith(problem), line
    (line,) = denied_lines(judge(annotated(plain, **{key: value}), facts(), plain))
    assert line.startswith(problem), line
    assert judge(annotated(plain, **{key: good}), facts(), plain) == Verdict(True)
    # Already there before the webhook (or before this rule): an edit of something else passes.
    old = annotated(plain, **{key: value})
    rebuild = annotated(plain, **{key: value, names.PREFIX + "rebuild": ""})
    assert judge(rebuild, facts(), old) == Verdict(True)


def test_an_update_of_a_layered_pools_object_is_judged_but_not_warned_as_an_opt_in() -> None:
    current = mosc()
    f = facts(pool("worker"), moscs=(current,))
    assert judge(mosc(renderedImagePushSpec="registry.example.com/os/b:1"), f, current) == Verdict(True)
    lines = denied_lines(judge(mosc(renderedImagePushSpec="b"), f, current))
    assert lines[0].startswith("MachineOSConfig worker spec.renderedImagePushSpec: 'b'")


def test_delete_is_always_allowed() -> None:
    assert judge(None, facts(), mosc(machineConfigPool={"name": "gone"}), operation="DELETE") == Verdict(True)
