"""The image's host tools: each runs the host's tool of the same name in the host's namespaces.

Run for real with a stand-in ``nsenter`` first on PATH that prints the command line it was given.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from deploy_support import DEPLOY, OBJECTS_BY_ID

HOST_TOOL = DEPLOY / "image" / "host-tool"
JOIN_HOST = ["--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--"]
DIGEST = "registry.example.com/os@sha256:" + "a" * 64


def run_as(tmp_path: Path, tool: str, *args: str, host_root: str | None = None) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    nsenter = bin_dir / "nsenter"
    nsenter.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    nsenter.chmod(0o755)
    (bin_dir / tool).symlink_to(HOST_TOOL)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    if host_root is not None:
        env["MCOSUP_HOST_ROOT"] = host_root
    result = subprocess.run(
        [str(bin_dir / tool), *args], env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.splitlines()


CASES = [
    ("rpm-ostree", ["rebase", f"ostree-unverified-registry:{DIGEST}"], None),
    ("bootc", ["switch", DIGEST], None),
    ("update-ca-trust", [], None),
    ("systemctl", ["reboot"], None),
    # The daemon's view of the host's / is plain / in the host's mount namespace.
    ("systemctl", ["--root=/rootfs", "enable", "a b.service"], ["enable", "a b.service"]),
    ("systemctl", ["--root=/rootfs/", "disable", "x.service"], ["disable", "x.service"]),
    ("systemctl", ["--root=/elsewhere", "enable", "x.service"], None),
]


@pytest.mark.parametrize(("tool", "args", "expected"), CASES, ids=[" ".join([t, *a]) for t, a, _ in CASES])
def test_runs_the_hosts_tool_in_the_hosts_namespaces(
    tmp_path: Path, tool: str, args: list[str], expected: list[str] | None
) -> None:
    assert run_as(tmp_path, tool, *args) == [*JOIN_HOST, tool, *(args if expected is None else expected)]


def test_host_root_follows_the_setting(tmp_path: Path) -> None:
    assert run_as(tmp_path, "systemctl", "--root=/host", "enable", "x.service", host_root="/host") == [
        *JOIN_HOST,
        "systemctl",
        "enable",
        "x.service",
    ]


def test_daemonset_names_the_root_it_mounts() -> None:
    (container,) = OBJECTS_BY_ID["DaemonSet/machine-config-daemon"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    root = container["command"][container["command"].index("--root") + 1]
    assert env["MCOSUP_HOST_ROOT"] == root
    assert root in {m["mountPath"] for m in container["volumeMounts"]}
