"""The ``mcosup`` command: one entry point, one subcommand per process.

Each subcommand lives in its own module exposing ``HELP`` (one line), ``configure(parser)`` and
``main(args) -> int``; this module only wires them together, so a subcommand's flags sit beside the
code that uses them.

Only the chosen subcommand's module is imported when the command line names one: start-up time is
paid on every builder pod and every ``mcosup status``, and the other subcommands' modules (the
emulator, the demo, the node agent) are no business of theirs. ``mcosup --help``, a missing or an
unknown subcommand import them all, so help and the error list every subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import sys
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


#: Options of the top-level parser that take a value (they may come before the subcommand).
_GLOBAL_OPTIONS_WITH_VALUE = ("--log-level",)


def build_parser(
    only: str | None = None,
) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The parser with every subcommand, or with ``only`` that one (importing only its module)."""
    parser = argparse.ArgumentParser(
        prog="mcosup",
        description="Layered OS management for Kubernetes nodes through the Machine Config Operator API.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules: dict[str, ModuleType] = {}
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            continue
        module = importlib.import_module(module_name)
        modules[name] = module
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
    return parser, modules


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names, or None when argparse would not reach one (help, errors).

    Anything before the subcommand other than a global option with its value (``-h`` included) means
    the top-level parser answers, and that needs every subcommand.
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
        option = arg.split("=", 1)[0]
        # argparse accepts unambiguous prefixes of long options (--log for --log-level).
        if len(option) > 2 and any(o.startswith(option) for o in _GLOBAL_OPTIONS_WITH_VALUE):
            i += 1 if "=" in arg else 2
            continue
        return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, modules = build_parser(only=chosen_command(args_list))
    args = parser.parse_args(args_list)
    from mcosup import logs

    logs.configure(args.log_level, process=args.command)
    result: int = modules[args.command].main(args)
    return result
