"""Start-up cost: a subcommand imports its own modules only, and no process imports kubernetes_asyncio."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mcosup.cli import COMMANDS, chosen_command

PROBE = """
import contextlib, io, json, sys
from mcosup import cli
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
    try:
        cli.main(sys.argv[1:])
    except SystemExit:
        pass
print(json.dumps({"modules": sorted(sys.modules), "out": out.getvalue()}))
"""


def run_cli(*argv: str) -> tuple[set[str], str]:
    """The modules ``mcosup ARGV`` imported, and what it printed."""
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.splitlines()[-1])
    return set(result["modules"]), result["out"]


def _under(modules: set[str], package: str) -> set[str]:
    return {m for m in modules if m == package or m.startswith(package + ".")}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_subcommand_imports_no_other_subcommand_nor_kubernetes_asyncio(command: str) -> None:
    modules, out = run_cli(command, "--help")
    assert f"usage: mcosup {command}" in out
    assert not _under(modules, "kubernetes_asyncio")
    for other, module in COMMANDS.items():
        if other != command:
            assert module not in modules, f"`mcosup {command} --help` imported {module}"
    if command == "builder":
        # The builder pod's start-up: no client stack, emulator, node agent or supervisor for --help.
        for package in ("mcosup.kube", "mcosup.sim", "mcosup.daemon", "mcosup.supervisor", "aiohttp"):
            assert not _under(modules, package), f"`mcosup builder --help` imported {package}"


def test_top_level_help_and_unknown_commands_list_every_subcommand() -> None:
    for argv in (["--help"], ["-h", "builder"], ["--log-level", "DEBUG", "--help"]):
        modules, out = run_cli(*argv)
        assert all(name in out for name in COMMANDS), (argv, out)
        assert set(COMMANDS.values()) <= modules
    done = subprocess.run([sys.executable, "-m", "mcosup", "nope"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "invalid choice: 'nope'" in done.stderr and all(name in done.stderr for name in COMMANDS)


def test_chosen_command() -> None:
    assert chosen_command(["builder", "--kubeconfig", "x"]) == "builder"
    assert chosen_command(["--log-level", "DEBUG", "status"]) == "status"
    assert chosen_command(["--log-level=DEBUG", "daemon", "--help"]) == "daemon"
    assert chosen_command(["--log", "DEBUG", "sim", "serve"]) == "sim"  # argparse accepts the prefix
    assert chosen_command(["--log-level", "builder"]) is None  # "builder" is the level here
    assert chosen_command(["-h", "builder"]) is None
    assert chosen_command(["--help"]) is None
    assert chosen_command(["nope"]) is None
    assert chosen_command([]) is None


def test_process_modules_do_not_import_kubernetes_asyncio() -> None:
    code = (
        "import sys\n"
        "import mcosup.builder.run, mcosup.supervisor.run, mcosup.daemon.command, mcosup.cli.status\n"
        "import mcosup.kube.client, mcosup.kube.clientconfig\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('kubernetes_asyncio'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_builder_process_imports_neither_aiohttp_nor_metrics_nor_yaml() -> None:
    # It serves no HTTP and runs in-cluster: aiohttp (~0.15 s of imports; the builder speaks HTTP through
    # mcosup.kube.transport.Http1), prometheus_client and PyYAML would only slow every first build.
    code = (
        "import sys\n"
        "import mcosup.builder.run\n"
        "heavy = ('aiohttp', 'yarl', 'multidict', 'prometheus_client', 'yaml')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
