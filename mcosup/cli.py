"""The ``mcosup`` command: one entry point, one subcommand per process.

Each subcommand lives in its own module exposing ``HELP`` (one line), ``configure(parser)`` and
``main(args) -> int``; this module only wires them together, so a subcommand's flags sit beside the
code that uses them.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from types import ModuleType

# Subcommand name -> module implementing it.
COMMANDS: dict[str, str] = {
    "supervisor": "mcosup.supervisor.command",
    "builder": "mcosup.builder.command",
    "daemon": "mcosup.daemon.command",
    "demo": "mcosup.demo",
    "status": "mcosup.status",
    "sim": "mcosup.sim.command",
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = argparse.ArgumentParser(
        prog="mcosup",
        description="Layered OS management for Kubernetes nodes through the Machine Config Operator API.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules: dict[str, ModuleType] = {}
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    from mcosup import logs

    logs.configure(args.log_level, process=args.command)
    result: int = modules[args.command].main(args)
    return result
