"""``mcosup builder`` settings from the environment: defaults, overrides, errors naming the variable."""

from __future__ import annotations

import pytest

from mcosup.runtime.settings import BuilderSettings, SettingsError


def test_defaults() -> None:
    s = BuilderSettings.from_env({})
    assert s.namespace == "openshift-machine-config-operator"
    assert s.pod.namespace == s.namespace
    assert s.pod.tls_verify is True
    assert s.max_retries == 3


def test_overrides() -> None:
    s = BuilderSettings.from_env(
        {
            "MCOSUP_NAMESPACE": "ns",
            "MCOSUP_BUILDAH_IMAGE": "example/buildah:1",
            "MCOSUP_BUILD_TLS_VERIFY": "False",
            "MCOSUP_BUILD_CPU_REQUEST": "2",
            "MCOSUP_BUILD_MEMORY_REQUEST": "4Gi",
            "MCOSUP_BUILD_RETRIES": "5",
        }
    )
    assert (s.namespace, s.pod.namespace, s.pod.buildah_image) == ("ns", "ns", "example/buildah:1")
    assert (s.pod.tls_verify, s.pod.cpu_request, s.pod.memory_request) == (False, "2", "4Gi")
    assert s.max_retries == 5
    assert BuilderSettings.from_env({"MCOSUP_NAMESPACE": "ns"}, "flag").namespace == "flag"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MCOSUP_BUILD_TLS_VERIFY": "maybe"}, "MCOSUP_BUILD_TLS_VERIFY"),
        ({"MCOSUP_BUILD_RETRIES": "three"}, "MCOSUP_BUILD_RETRIES"),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        BuilderSettings.from_env(env)
