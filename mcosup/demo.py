"""`mcosup demo`: placeholder until its issue lands; it says so instead of pretending to work."""

from __future__ import annotations

import argparse
import sys

HELP = "run the whole system on this machine against the bundled emulator"


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    print("mcosup demo: not built yet in this version", file=sys.stderr)
    return 2
