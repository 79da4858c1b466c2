"""Every command starts and fails the same way: one line naming what is wrong and the fix, a non-zero
exit, and no traceback unless ``--log-level DEBUG`` asks for one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = {
    "supervisor": [],
    "builder": [],
    "daemon": ["--node-name", "n"],
    "status": [],
}


def mcosup(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcosup", *argv], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_missing_kubeconfig_is_one_line_naming_the_file_and_the_fix(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "absent.kubeconfig"
    done = mcosup(command, *COMMANDS[command], "--kubeconfig", str(missing))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"mcosup {command}: kubeconfig {missing} does not exist; fix --kubeconfig or $KUBECONFIG"
    )


def test_debug_keeps_the_traceback(tmp_path: Path) -> None:
    done = mcosup("--log-level", "DEBUG", "status", "--kubeconfig", str(tmp_path / "absent"))
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_an_unreachable_api_server_is_one_line_saying_what_to_check(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "unreachable.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    done = mcosup("status", "--kubeconfig", str(kubeconfig))
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("mcosup status: cannot reach the API server (") and "127.0.0.1:1" in line
    assert line.endswith(
        "check the server in the kubeconfig (--kubeconfig or $KUBECONFIG) and that the cluster is up"
    )


def test_a_bad_setting_names_the_variable(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "MCOSUP_WEBHOOK_TLS": "bogus"}
    done = mcosup("supervisor", "--kubeconfig", str(tmp_path / "k"), env=env)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "mcosup supervisor: MCOSUP_WEBHOOK_TLS='bogus' is not one of self-managed, files, off"
    )
