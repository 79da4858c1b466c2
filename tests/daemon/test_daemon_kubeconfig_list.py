"""`mcosup daemon --kubeconfig` takes a KUBECONFIG-style list, as the client's loader does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def daemon(tmp_path: Path, kubeconfig: str) -> subprocess.CompletedProcess[str]:
    argv = ["daemon", "--node-name", "n", "--root", str(tmp_path / "root"), "--kubeconfig", kubeconfig]
    return subprocess.run([sys.executable, "-m", "mcosup", *argv], capture_output=True, text=True, timeout=60)


def test_one_existing_file_in_the_list_is_enough_and_none_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "missing.kubeconfig"
    existing = tmp_path / "no-context.kubeconfig"
    existing.write_text("clusters: []\n")
    done = daemon(tmp_path, os.pathsep.join([str(missing), str(existing)]))
    # One existing file is enough: the loader reads it and names what it lacks.
    assert done.returncode == 2, done.stderr
    assert f"kubeconfig {existing} sets no current-context" in done.stderr
    done = daemon(tmp_path, os.pathsep.join([str(missing), str(tmp_path / "also-missing")]))
    assert done.returncode == 2 and "exists; fix --kubeconfig or $KUBECONFIG" in done.stderr
