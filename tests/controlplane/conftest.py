"""Fixtures of the real control plane's own tests (the shared ``control_plane`` is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mcosup.sim.controlplane import ControlPlane


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of its own with ``kubectl apply -k deploy/`` done, as an administrator installs mcosup.

    Not the shared one: the install's webhook configuration (failurePolicy Fail for MachineConfigs, and
    no supervisor behind it here) would refuse other tests' MachineConfigs.
    """
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    with ControlPlane(tmp_path_factory.mktemp("installed")) as cp:
        cp.kubectl("apply", "-k", str(deploy))
        yield cp
