"""`mcosup supervisor`: placeholder until its issue lands; it says so instead of pretending to work."""

from __future__ import annotations

import argparse
import sys

HELP = "the supervisor: watch loops, render, opt-in, builder pod, rollout, webhook, probes and metrics"


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    print("mcosup supervisor: not built yet in this version", file=sys.stderr)
    return 2
