"""`mcosup builder`: placeholder until its issue lands; it says so instead of pretending to work."""

from __future__ import annotations

import argparse
import sys

HELP = "the Machine OS Builder: builds one OS image per opted-in pool"


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    print("mcosup builder: not built yet in this version", file=sys.stderr)
    return 2
