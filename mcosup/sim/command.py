"""`mcosup sim`: placeholder until its issue lands; it says so instead of pretending to work."""

from __future__ import annotations

import argparse
import sys

HELP = "the Kubernetes API emulator (serve)"


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    print("mcosup sim: not built yet in this version", file=sys.stderr)
    return 2
