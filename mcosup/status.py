"""`mcosup status`: placeholder until its issue lands; it says so instead of pretending to work."""

from __future__ import annotations

import argparse
import sys

HELP = "a summary of pools, builds and nodes"


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    print("mcosup status: not built yet in this version", file=sys.stderr)
    return 2
