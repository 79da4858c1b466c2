"""Our kubeconfig loader: every form kubectl reads reaches a real TLS server, every bad input is named."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeconfig_kit import WhoAmI, b64, write_kubeconfig

from mcosup.kube import client as kclient
from mcosup.kube import clientconfig, errors
from mcosup.kube.resources import NAMESPACES
from mcosup.runtime.settings import KubeSettings

ONCE = errors.RetryPolicy(attempts=1)


@pytest.fixture
async def whoami() -> AsyncIterator[WhoAmI]:
    async with WhoAmI() as server:
        yield server


async def ask(kubeconfig: Path | str) -> dict[str, Any]:
    """What the WhoAmI server saw of one request made with ``kubeconfig``."""
    async with kclient.connect(KubeSettings(kubeconfig=str(kubeconfig)), retry=ONCE) as kube:
        answer: dict[str, Any] = await kube.request("GET", "/whoami")
        return answer


def emulator_config(emulator: Any, tmp_path: Path) -> dict[str, Any]:
    """The emulator's admin kubeconfig (token, CA as data) as a dict to rewrite."""
    path = emulator.write_kubeconfig(tmp_path / "emulator.kubeconfig")
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    return config


def save(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def user_of_last_request(emulator: Any, kubeconfig: Path) -> str:
    async with kclient.connect(KubeSettings(kubeconfig=str(kubeconfig)), retry=ONCE) as kube:
        await kube.get(NAMESPACES, "default")
    user: str = emulator.requests[-1].user
    return user


# Against the emulator ----------------------------------------------------------------------------


async def test_a_token_kubeconfig_with_ca_data_reaches_the_emulator(emulator: Any, tmp_path: Path) -> None:
    path = emulator.write_kubeconfig(tmp_path / "admin.kubeconfig", user="token-user")
    assert await user_of_last_request(emulator, path) == "token-user"


async def test_a_json_kubeconfig_reaches_the_emulator(emulator: Any, tmp_path: Path) -> None:
    """kubectl reads JSON kubeconfigs too (the emulator gives Pods' service accounts JSON ones)."""
    sa = emulator.write_kubeconfig_for_service_account(tmp_path / "sa.kubeconfig", "ns", "builder")
    assert sa.read_text().lstrip().startswith("{")
    assert await user_of_last_request(emulator, sa) == "system:serviceaccount:ns:builder"
    path = tmp_path / "admin.json"
    path.write_text(json.dumps(emulator_config(emulator, tmp_path)))
    assert await user_of_last_request(emulator, path) == "admin"


async def test_ca_file_and_token_file_resolve_against_the_kubeconfig_directory(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = emulator_config(emulator, tmp_path)
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    kubedir = tmp_path / "kube"
    (kubedir / "pki").mkdir(parents=True)
    (kubedir / "pki" / "ca.crt").write_bytes(base64.b64decode(cluster.pop("certificate-authority-data")))
    cluster["certificate-authority"] = "pki/ca.crt"
    (kubedir / "token").write_text(user.pop("token") + "\n")  # editors add a newline; it is not part
    user["tokenFile"] = "token"
    path = save(kubedir / "config", config)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the kubeconfig, not to the working directory
    assert await user_of_last_request(emulator, path) == "admin"


async def test_an_untrusted_server_is_refused_unless_verification_is_skipped(
    emulator: Any, tmp_path: Path
) -> None:
    config = emulator_config(emulator, tmp_path)
    del config["clusters"][0]["cluster"]["certificate-authority-data"]
    untrusted = save(tmp_path / "untrusted.kubeconfig", config)
    with pytest.raises(errors.ConnectionFailed, match=r"(?i)certificate"):
        await user_of_last_request(emulator, untrusted)
    config["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    insecure = save(tmp_path / "insecure.kubeconfig", config)
    assert await user_of_last_request(emulator, insecure) == "admin"


# Against a TLS server that reports what it saw ----------------------------------------------------


async def test_client_certificate_and_key_from_files(whoami: WhoAmI, tmp_path: Path) -> None:
    pems = whoami.write_pems(tmp_path / "pki")
    path = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": whoami.url, "certificate-authority": "pki/ca.crt"},
        user={"client-certificate": "pki/client.crt", "client-key": str(pems["key"])},
    )
    assert await ask(path) == {"authorization": None, "client": "kit-admin"}


async def test_client_certificate_and_key_from_data_with_a_token(whoami: WhoAmI, tmp_path: Path) -> None:
    pems = whoami.write_pems(tmp_path / "pki")
    path = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": whoami.url, "certificate-authority-data": b64(pems["ca"].read_bytes())},
        user={
            "client-certificate-data": b64(pems["cert"].read_bytes()),
            "client-key-data": b64(pems["key"].read_bytes()),
            "token": "abc",
        },
    )
    assert await ask(path) == {"authorization": "Bearer abc", "client": "kit-admin"}


async def test_basic_auth(whoami: WhoAmI, tmp_path: Path) -> None:
    pems = whoami.write_pems(tmp_path / "pki")
    path = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": whoami.url, "certificate-authority": str(pems["ca"])},
        user={"username": "alice", "password": "s3cret:with colon"},
    )
    expected = "Basic " + base64.b64encode(b"alice:s3cret:with colon").decode()
    assert await ask(path) == {"authorization": expected, "client": None}


async def test_tls_server_name_is_what_the_certificate_is_checked_against(
    whoami: WhoAmI, tmp_path: Path
) -> None:
    pems = whoami.write_pems(tmp_path / "pki")
    # The certificate names kube.example and 127.0.0.1, not localhost.
    by_name = whoami.url.replace("127.0.0.1", "localhost")
    cluster = {"server": by_name, "certificate-authority": str(pems["ca"])}
    wrong = write_kubeconfig(tmp_path / "wrong", cluster=cluster)
    with pytest.raises(errors.ConnectionFailed, match=r"(?i)certificate"):
        await ask(wrong)
    right = write_kubeconfig(tmp_path / "right", cluster={**cluster, "tls-server-name": "kube.example"})
    assert await ask(right) == {"authorization": None, "client": None}


async def test_a_kubeconfig_list_merges_and_the_first_file_wins(
    whoami: WhoAmI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whoami.write_pems(tmp_path / "second")
    first = tmp_path / "first" / "config"
    save(
        first,
        {
            "current-context": "ctx",
            "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": "from-first"}}],
        },
    )
    second = tmp_path / "second" / "config"
    save(
        second,
        {
            "current-context": "elsewhere",
            "clusters": [{"name": "c", "cluster": {"server": whoami.url, "certificate-authority": "ca.crt"}}],
            "users": [{"name": "u", "user": {"token": "from-second"}}],
        },
    )
    missing = tmp_path / "missing" / "config"  # skipped, as kubectl skips it
    monkeypatch.chdir(tmp_path)
    listed = os.pathsep.join([str(first), str(missing), str(second)])
    assert await ask(listed) == {"authorization": "Bearer from-first", "client": None}
    settings = KubeSettings.from_env({"KUBECONFIG": listed})
    config = await clientconfig.load(settings)
    assert config.tls is not None and config.tls.ca_file == str(tmp_path / "second" / "ca.crt")


async def test_an_exec_user_is_delegated_to_kubernetes_asyncio(whoami: WhoAmI, tmp_path: Path) -> None:
    pems = whoami.write_pems(tmp_path / "pki")
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        "#!/bin/sh\necho '"
        '{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", '
        '"status": {"token": "from-exec"}}'
        "'\n"
    )
    plugin.chmod(0o755)
    path = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": whoami.url, "certificate-authority": str(pems["ca"])},
        user={"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}},
    )
    assert await ask(path) == {"authorization": "Bearer from-exec", "client": None}


def test_static_credentials_never_import_kubernetes_asyncio(tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config", cluster={"server": "https://127.0.0.1:6443"}, user={"token": "t"}
    )
    code = (
        "import asyncio, sys\n"
        "from mcosup.kube import client, clientconfig\n"
        f"config = asyncio.run(clientconfig.from_kubeconfig({str(path)!r}))\n"
        "assert config.server == 'https://127.0.0.1:6443', config\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('kubernetes_asyncio'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Bad input: one ApiError naming the file, the field and the fix ---------------------------------


def _pems(tmp_path: Path) -> dict[str, Path]:
    return WhoAmI().write_pems(tmp_path / "pki")


Case = Callable[[Path], Path]


def _cfg(cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None, **kw: Any) -> Case:
    return lambda tmp: write_kubeconfig(
        tmp / "config", cluster=cluster if cluster is not None else {"server": "https://h:1"}, user=user, **kw
    )


def _text(text: str) -> Case:
    def write(tmp: Path) -> Path:
        (tmp / "config").write_text(text)
        return tmp / "config"

    return write


def _cert_without_key(tmp: Path) -> Path:
    pems = _pems(tmp)
    return write_kubeconfig(
        tmp / "config", cluster={"server": "https://h:1"}, user={"client-certificate": str(pems["cert"])}
    )


def _mismatched_key(tmp: Path) -> Path:
    pems = _pems(tmp)
    other = _pems(tmp / "other")
    return write_kubeconfig(
        tmp / "config",
        cluster={"server": "https://h:1"},
        user={"client-certificate": str(pems["cert"]), "client-key": str(other["key"])},
    )


BAD: dict[str, tuple[Case, str]] = {
    "no current-context": (
        _cfg(current_context=None),
        r"sets no current-context; choose one with `kubectl config use-context NAME` \(contexts: 'ctx'\)",
    ),
    "unknown current-context": (
        _cfg(current_context="prod"),
        r"current-context 'prod' is not among its contexts \('ctx'\); fix current-context",
    ),
    "context without cluster": (_cfg(context_extra={"cluster": None}), r"context 'ctx' names no cluster"),
    "unknown cluster": (
        _cfg(context_extra={"cluster": "gone"}),
        r"context 'ctx' names cluster 'gone', which is not among the clusters \('c'\)",
    ),
    "unknown user": (
        _cfg(user={"token": "t"}, context_extra={"user": "bob"}),
        r"context 'ctx' names user 'bob', which is not among the users \('u'\)",
    ),
    "missing server": (_cfg(cluster={}), r"cluster 'c' has no server; add server: https://HOST:PORT"),
    "server without scheme": (
        _cfg(cluster={"server": "10.0.0.1:6443"}),
        r"server '10.0.0.1:6443', which is not an https:// \(or http://\) URL",
    ),
    "cert without key": (
        _cert_without_key,
        r"user 'u' has client-certificate but no client-key; add client-key or client-key-data",
    ),
    "key without cert": (
        _cfg(user={"client-key-data": b64(b"key")}),
        r"user 'u' has client-key but no client-certificate",
    ),
    "mismatched key": (_mismatched_key, r"client-certificate and client-key cannot be used together"),
    "missing CA file": (
        _cfg(cluster={"server": "https://h:1", "certificate-authority": "nope/ca.crt"}),
        r"certificate-authority .*nope/ca\.crt cannot be read \(no such file\); fix the path",
    ),
    "CA data not base64": (
        _cfg(cluster={"server": "https://h:1", "certificate-authority-data": "not base64!"}),
        r"cluster 'c' has certificate-authority-data that is not valid base64",
    ),
    "CA data not a certificate": (
        _cfg(cluster={"server": "https://h:1", "certificate-authority-data": b64(b"hello")}),
        r"certificate-authority-data holds no usable CA certificate",
    ),
    "insecure with a CA": (
        _cfg(
            cluster={
                "server": "https://h:1",
                "insecure-skip-tls-verify": True,
                "certificate-authority-data": b64(b"x"),
            }
        ),
        r"both insecure-skip-tls-verify and a certificate authority .*remove one of them",
    ),
    "insecure not a boolean": (
        _cfg(cluster={"server": "https://h:1", "insecure-skip-tls-verify": "yes please"}),
        r"insecure-skip-tls-verify must be true or false",
    ),
    "token and basic": (
        _cfg(user={"token": "t", "username": "a", "password": "b"}),
        r"user 'u' has both a token and username/password",
    ),
    "username without password": (
        _cfg(user={"username": "a"}),
        r"user 'u' has username but no password; add password",
    ),
    "numeric token": (_cfg(user={"token": 12345}), r"user 'u' has token of type int, not a string; quote it"),
    "missing token file": (
        _cfg(user={"tokenFile": "tok"}),
        r"user 'u' tokenFile: cannot use .*/tok: no such file",
    ),
    "malformed YAML": (_text("clusters: [\n  - name: c\n  cluster: {\n"), r"is not valid YAML at line \d+"),
    "not a mapping": (_text("- just\n- a list\n"), r"holds a YAML list, not a mapping"),
    "malformed JSON": (_text('{"clusters": [\n  {"name": "c",\n'), r"is not valid YAML at line \d+"),
    "JSON not a mapping": (_text('["just", "a list"]'), r"holds a YAML list, not a mapping"),
    "clusters not a list": (_text("clusters: 3\n"), r"clusters must be a list of entries"),
    "entry without name": (_text("users:\n- user: {token: t}\n"), r"users\[0\] has no name"),
    "duplicate names": (
        _text("clusters:\n- {name: c, cluster: {}}\n- {name: c, cluster: {}}\n"),
        r"clusters has two entries named 'c'",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_kubeconfigs_are_named(case: str, tmp_path: Path) -> None:
    make, pattern = BAD[case]
    path = make(tmp_path)
    with pytest.raises(errors.ApiError) as info:
        await clientconfig.from_kubeconfig(str(path))
    assert type(info.value) is errors.ApiError
    assert (info.value.status, info.value.reason) == (0, "BadKubeconfig")
    assert str(path) in info.value.message or str(tmp_path) in info.value.message, info.value.message
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, errors.ApiError)
    assert re.search(pattern, info.value.message), info.value.message


async def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(errors.ApiError, match=r"kubeconfig .*/absent does not exist; fix --kubeconfig"):
        await clientconfig.from_kubeconfig(str(tmp_path / "absent"))
    with pytest.raises(errors.ApiError, match=r"none of the kubeconfig files .* exists"):
        await clientconfig.from_kubeconfig(f"{tmp_path}/a{os.pathsep}{tmp_path}/b")
    with pytest.raises(errors.ApiError, match=r"is a directory, not a file"):
        await clientconfig.from_kubeconfig(str(tmp_path))
    empty_token = tmp_path / "token"
    empty_token.write_text("\n")
    path = write_kubeconfig(
        tmp_path / "config", cluster={"server": "https://h:1"}, user={"tokenFile": "token"}
    )
    with pytest.raises(errors.ApiError, match=r"tokenFile: cannot use .*/token: the file is empty"):
        await clientconfig.from_kubeconfig(str(path))


async def test_a_kubeconfig_without_read_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_kubeconfig(tmp_path / "config", cluster={"server": "https://h:1"})
    path.chmod(0)
    if os.geteuid() == 0:  # root reads files whatever their mode: make the read fail as it would for a user
        real_read_text = Path.read_text

        def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real_read_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", read_text)
    try:
        with pytest.raises(errors.ApiError, match=r"cannot be read \(permission denied\); make it readable"):
            await clientconfig.from_kubeconfig(str(path))
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


async def test_connect_reports_a_bad_kubeconfig_before_connecting(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", cluster={"server": "https://h:1"}, current_context=None)
    with pytest.raises(errors.ApiError, match="sets no current-context"):
        async with kclient.connect(KubeSettings(kubeconfig=str(path))):
            pass
