"""In-cluster config: the kubernetes Service from the environment, the service account's token and CA."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from kubeconfig_kit import WhoAmI

from mcosup.kube import client as kclient
from mcosup.kube import clientconfig, errors
from mcosup.kube.resources import NAMESPACES
from mcosup.runtime.settings import KubeSettings

ONCE = errors.RetryPolicy(attempts=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service_account_dir(tmp_path: Path, ca: bytes, token: str) -> Path:
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "ca.crt").write_bytes(ca)
    (directory / "token").write_text(token)
    (directory / "namespace").write_text("openshift-machine-config-operator")
    return directory


def env_for(emulator: Any) -> dict[str, str]:
    host, port = emulator.url.removeprefix("https://").rsplit(":", 1)
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}


async def test_in_cluster_reaches_the_emulator_and_follows_token_rotation(
    emulator: Any, tmp_path: Path
) -> None:
    first = emulator.add_token("system:serviceaccount:ns:first")
    second = emulator.add_token("system:serviceaccount:ns:second")
    directory = service_account_dir(tmp_path, emulator.ca_path.read_bytes(), first)
    clock = Clock()
    config = clientconfig.in_cluster(env_for(emulator), directory, reread_seconds=60, clock=clock)
    assert config.server == emulator.url and config.origin == f"in-cluster config ({directory})"

    async with kclient.connect(KubeSettings(), retry=ONCE, config=config) as kube:

        async def user() -> str:
            await kube.get(NAMESPACES, "default")
            name: str = emulator.requests[-1].user
            return name

        assert await user() == "system:serviceaccount:ns:first"
        (directory / "token").write_text(second)  # the kubelet rotated the bound token
        clock.now += 59
        assert await user() == "system:serviceaccount:ns:first"  # not re-read yet
        clock.now += 1
        assert await user() == "system:serviceaccount:ns:second"


async def test_a_failed_re_read_keeps_the_last_token_and_retries_soon(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = service_account_dir(tmp_path, _ca(tmp_path), "one")
    clock = Clock()
    config = clientconfig.in_cluster(
        {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
        directory,
        reread_seconds=60,
        clock=clock,
    )
    assert await config.authorization() == "Bearer one"
    (directory / "token").unlink()
    clock.now += 60
    with caplog.at_level(logging.WARNING, logger="mcosup.kube.credentials"):
        assert await config.authorization() == "Bearer one"
    assert "cannot re-read" in caplog.text and "keeping the previous token" in caplog.text
    (directory / "token").write_text("two\n")
    clock.now += 10  # a failed read is retried after 10 s, not after a whole interval
    assert await config.authorization() == "Bearer two"


def _ca(tmp_path: Path) -> bytes:
    return WhoAmI().write_pems(tmp_path / "pki")["ca"].read_bytes()


def test_ipv6_service_hosts_are_bracketed(tmp_path: Path) -> None:
    directory = service_account_dir(tmp_path, _ca(tmp_path), "t")
    env = {"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert clientconfig.in_cluster(env, directory).server == "https://[fd00:10:96::1]:443"
    env["KUBERNETES_SERVICE_HOST"] = "10.96.0.1"
    assert clientconfig.in_cluster(env, directory).server == "https://10.96.0.1:443"


async def test_outside_a_cluster_without_kubeconfig_is_no_config() -> None:
    with pytest.raises(errors.ApiError) as info:
        await clientconfig.load(KubeSettings(), env={"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert info.value.reason == "NoConfig"
    assert "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set" in info.value.message
    assert "--kubeconfig" in info.value.message


@pytest.mark.parametrize(
    ("breakage", "pattern"),
    [
        ("no token", r"in-cluster token: cannot use .*/token: no such file"),
        ("empty token", r"in-cluster token: cannot use .*/token: the file is empty"),
        ("no ca", r"in-cluster config: cannot read .*/ca\.crt \(no such file\)"),
        ("empty ca", r"in-cluster config: .*/ca\.crt is empty"),
        ("garbage ca", r"in-cluster config: .*/ca\.crt is not a usable CA certificate"),
    ],
)
def test_missing_service_account_files_are_named(tmp_path: Path, breakage: str, pattern: str) -> None:
    directory = service_account_dir(tmp_path, _ca(tmp_path), "t")
    if breakage == "no token":
        (directory / "token").unlink()
    elif breakage == "empty token":
        (directory / "token").write_text("")
    elif breakage == "no ca":
        (directory / "ca.crt").unlink()
    elif breakage == "empty ca":
        (directory / "ca.crt").write_text("\n")
    else:
        (directory / "ca.crt").write_text(
            "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n"
        )
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(errors.ApiError, match=pattern) as info:
        clientconfig.in_cluster(env, directory)
    assert info.value.reason == "NoConfig"
