"""A real control plane (etcd, kube-apiserver, kube-controller-manager) shared by this directory's tests.

Built from the Kubernetes Go modules pinned in ``tests/controlplane/kube`` and ``.../etcd`` by
``scripts/controlplane.sh`` (``make install`` builds them; a missing binary is built here, never skipped).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mcosup.sim.controlplane import ControlPlane


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("controlplane")) as cp:
        yield cp


@pytest.fixture(scope="session")
def installed(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with ``kubectl apply -k deploy/`` done (as an administrator installs mcosup)."""
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    control_plane.kubectl("apply", "-k", str(deploy))
    return control_plane
