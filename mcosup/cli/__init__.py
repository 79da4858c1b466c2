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
    "demo": "mcosup.cli.demo",
    "status": "mcosup.cli.status",
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


def failure(exc: BaseException) -> tuple[str, int] | None:
    """What to tell the user (one line naming the problem and the fix) and the exit code, for the
    failures a command meets before it can work: bad settings, an unusable kubeconfig, an API server
    that cannot be reached or refuses the credentials. None for anything else: that is a bug, and its
    traceback is worth having."""
    from mcosup.kube import errors
    from mcosup.runtime.settings import SettingsError

    if isinstance(exc, BaseExceptionGroup):
        inner = [failure(e) for e in exc.exceptions]
        return inner[0] if inner and all(inner) else None
    if isinstance(exc, SettingsError):
        return str(exc), 2
    if isinstance(exc, errors.ConnectionFailed):
        return (
            f"cannot reach the API server ({exc.message}); check the server in the kubeconfig "
            "(--kubeconfig or $KUBECONFIG) and that the cluster is up",
            1,
        )
    if isinstance(exc, errors.Unauthorized):
        return f"the API server refused the credentials ({exc.message}); renew the kubeconfig's token", 1
    if isinstance(exc, errors.Forbidden):
        return f"not allowed: {exc.message}; grant the ServiceAccount the RBAC in deploy/rbac/", 1
    if isinstance(exc, errors.ApiError) and exc.status == 0:
        return exc.message, 2  # the kubeconfig itself (its message names the file, the field and the fix)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Every command starts and fails the same way: one line naming what is wrong and what to do, a
    non-zero exit, and a traceback only with ``--log-level DEBUG``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, modules = build_parser(only=chosen_command(args_list))
    args = parser.parse_args(args_list)
    from mcosup.runtime import logs

    logs.configure(args.log_level, process=args.command)
    try:
        result: int = modules[args.command].main(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        told = failure(exc)
        if told is None or str(args.log_level).upper() == "DEBUG":
            raise
        print(f"mcosup {args.command}: {told[0]}", file=sys.stderr)
        return told[1]
    return result
