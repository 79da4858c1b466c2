"""The CLI and settings behave as a user would expect."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mcosup.cli import COMMANDS, build_parser
from mcosup.runtime import settings


def test_every_subcommand_has_help() -> None:
    for name in COMMANDS:
        out = subprocess.run(
            [sys.executable, "-m", "mcosup", name, "--help"], capture_output=True, text=True, check=True
        )
        assert f"usage: mcosup {name}" in out.stdout


def test_parser_lists_every_subcommand() -> None:
    parser, modules = build_parser()
    assert set(modules) == {"supervisor", "builder", "daemon", "demo", "status", "sim"}
    assert "COMMAND" in parser.format_help()


def test_bad_setting_names_the_variable() -> None:
    with pytest.raises(settings.SettingsError, match="MCOSUP_REQUEST_TIMEOUT='soon'"):
        settings.KubeSettings.from_env({"MCOSUP_REQUEST_TIMEOUT": "soon"})
    assert settings.namespace_from_env({}) == "openshift-machine-config-operator"
    assert settings.namespace_from_env({"MCOSUP_NAMESPACE": "x"}) == "x"
