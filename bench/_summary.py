"""The one table ``make bench`` ends with: every bench's headline figures against their goals.

A bench calls :func:`record` for each headline figure; when ``MCOSUP_BENCH_SUMMARY`` names a file, the
figure is appended to it as one JSON line (a bench run by hand records nothing and only prints its own
details). ``make bench`` points every bench at one file, then renders it:

    .venv/bin/python bench/_summary.py FILE [BENCH ...]

A bench named on the command line that recorded nothing (it crashed, or never ran) gets a row saying
so, and the exit status is 1 when any figure misses its goal or any bench is missing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import orjson

ENV = "MCOSUP_BENCH_SUMMARY"


def record(
    bench: str, measure: str, figure: float, goal: str = "", met: bool | None = None, unit: str = ""
) -> None:
    """Append one headline figure: ``goal`` as the reader should see it (e.g. "<= 1.05") and whether
    it is met, or neither for a figure reported for information (an emulator's memory)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = {"bench": bench, "measure": measure, "figure": figure, "unit": unit, "goal": goal, "met": met}
    with open(path, "ab") as out:
        out.write(orjson.dumps(line) + b"\n")


def _figure(row: dict[str, Any]) -> str:
    value = row["figure"]
    text = f"{value:.4g}" if isinstance(value, float) and abs(value) < 100 else f"{value:,.0f}"
    return f"{text} {row['unit']}".strip()


def render(rows: list[dict[str, Any]], expected: list[str]) -> tuple[str, bool]:
    """The table, and whether every goal was met by a bench that ran."""
    seen = {row["bench"] for row in rows}
    verdicts = {True: "met", False: "NOT MET", None: "-"}
    table = [(row["measure"], _figure(row), row["goal"] or "-", verdicts[row["met"]]) for row in rows]
    table += [
        (f"{bench}: no figures (it failed)", "-", "-", "NOT MET") for bench in expected if bench not in seen
    ]
    header = ("measure", "figure", "goal", "met?")
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(4)]
    lines = [
        " | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *table]
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    ok = all(row["met"] is not False for row in rows) and seen >= set(expected)
    return "\n".join(lines), ok


def main(path: str, expected: list[str]) -> int:
    file = Path(path)
    rows = [orjson.loads(line) for line in file.read_bytes().splitlines()] if file.exists() else []
    text, ok = render(rows, expected)
    print("== summary")
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], [Path(b).stem for b in sys.argv[2:]]))
