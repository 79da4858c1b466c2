"""``mcosup demo`` on a machine without the tools it needs says exactly what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_names_the_packages_to_install_when_tools_are_missing(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # neither buildah nor docker-registry on PATH
    done = subprocess.run(
        [sys.executable, "-m", "mcosup", "demo"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert done.stdout == "apt-get install -y buildah docker-registry\n"
    assert "buildah" in done.stderr and "docker-registry" in done.stderr
