"""``mc/build-timeout`` on a MachineOSConfig: a Go duration, the build Job's activeDeadlineSeconds."""

from __future__ import annotations

from typing import Any

import pytest

from mcosup.model import machineosconfig, names

SECRET = {
    "type": "kubernetes.io/dockerconfigjson",
    "data": {".dockerconfigjson": "eyJhdXRocyI6IHt9fQ=="},  # {"auths": {}}
}


def mosc(timeout: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "worker"}
    if timeout is not None:
        meta["annotations"] = {names.BUILD_TIMEOUT_ANNOTATION: timeout}
    return {
        "metadata": meta,
        "spec": {
            "machineConfigPool": {"name": "worker"},
            "imageBuilder": {"imageBuilderType": "Job"},
            "renderedImagePushSecret": {"name": "push"},
            "renderedImagePushSpec": "registry.example.com/os:latest",
        },
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45m", 2700), ("2h", 7200), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("2h0m0s", 7200)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert machineosconfig.go_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "45", "2 h", "h", "1d", "-5m", "5m junk"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        machineosconfig.go_duration(text)


@pytest.mark.parametrize(("timeout", "seconds"), [(None, 7200), ("45m", 2700)])
def test_settings_carry_the_timeout(timeout: str | None, seconds: int) -> None:
    settings, problems = machineosconfig.settings_of(mosc(timeout), lambda _: SECRET, "ns")
    assert problems == [] and settings is not None
    assert settings.timeout_seconds == seconds


@pytest.mark.parametrize("timeout", ["soon", "0s"])
def test_a_bad_timeout_names_the_object_the_annotation_and_the_fix(timeout: str) -> None:
    settings, problems = machineosconfig.settings_of(mosc(timeout), lambda _: SECRET, "ns")
    assert settings is None
    (problem,) = problems
    assert "MachineOSConfig worker" in problem and names.BUILD_TIMEOUT_ANNOTATION in problem
    assert "45m or 2h" in problem
