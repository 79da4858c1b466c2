"""``mcosup demo``: on a machine without the tools it needs it says exactly what to install; on the real
control plane it tells the whole story and prints its summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_demo_names_the_packages_to_install_when_tools_are_missing(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # neither buildah nor docker-registry on PATH
    done = subprocess.run(
        [sys.executable, "-m", "mcosup", "demo"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert done.stdout == "apt-get install -y buildah docker-registry\n"
    assert "buildah" in done.stderr and "docker-registry" in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_demo_on_the_real_control_plane_tells_the_whole_story(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mcosup", "demo", "--control-plane", "real", "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=380,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "starting a real control plane: etcd, kube-apiserver, kube-controller-manager" in out
    for stage in ("3. build the worker image", "7. roll the new image", "8. opt out → back to the stock OS"):
        assert stage in out, stage
    assert "maxUnavailable=1 held: at most 1 worker node(s) unavailable at once" in out
