"""The Containerfile builds the image the manifests run: the package, its entry point, a non-root user.

No image can be built here (base images cannot be pulled), so this checks the Containerfile against
the project it packages: every file the package build reads is copied in, and the image's user and
entry point are the ones the Deployment and DaemonSet rely on.
"""

from __future__ import annotations

import re
import tomllib

from deploy_support import OBJECTS_BY_ID, REPO

CONTAINERFILE = (REPO / "Containerfile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _instructions(name: str) -> list[str]:
    return re.findall(rf"^{name}\s+(.+)$", CONTAINERFILE, flags=re.MULTILINE)


def test_copies_everything_the_package_build_reads() -> None:
    copied = {
        path.rstrip("/")
        for line in _instructions("COPY")
        if not line.startswith("--from")
        for path in line.split()[:-1]
    }
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert {"pyproject.toml", PYPROJECT["project"]["readme"], *packages} <= copied


def test_base_image_is_python_3_11_slim() -> None:
    assert all(re.search(r"python:3\.11-slim\b", line) for line in _instructions("FROM"))


def test_runs_mcosup_as_numeric_non_root_user() -> None:
    # Kubernetes can enforce runAsNonRoot only against a numeric USER.
    assert _instructions("USER") == ["1001"]
    assert _instructions("ENTRYPOINT") == ['["mcosup"]']
    assert PYPROJECT["project"]["scripts"]["mcosup"] == "mcosup.cli:main"


def test_daemon_overrides_the_user_to_write_the_host() -> None:
    daemonset = OBJECTS_BY_ID["DaemonSet/machine-config-daemon"]
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["runAsUser"] == 0
