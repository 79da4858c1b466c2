"""Naming rules the builder relies on to find its builds again after a restart."""

from __future__ import annotations

import pytest

from mcosup.builder import buildpods
from mcosup.model import machineosbuild

BUILD = "build-worker-0123456789abcdef"


@pytest.mark.parametrize(
    ("name", "mine"),
    [
        (BUILD, True),
        (f"{BUILD}-context-0", True),
        (f"{BUILD}-retry-2", True),
        ("build-worker-0123456789abcdee", False),
        ("build-worker-0123456789abcdef0", False),  # another identity sharing the prefix
        ("build-worker-2-0123456789abcdef", False),
    ],
)
def test_belongs_to(name: str, mine: bool) -> None:
    assert buildpods.belongs_to(name, BUILD) is mine


def test_tail_keeps_last_non_blank_lines() -> None:
    assert buildpods.tail("a\n\nb\n c \n\n", 2) == "b\n c"
    assert buildpods.tail("", 3) == ""


@pytest.mark.parametrize(
    ("name", "restart"),
    [
        ("worker-0123456789abcdef", 0),
        ("worker-0123456789abcdef-1", 1),
        ("worker-0123456789abcdef-12", 12),
        ("worker-0123456789abcdee", None),
        ("worker-0123456789abcdef-x", None),
    ],
)
def test_machineosbuild_restarts_round_trip(name: str, restart: int | None) -> None:
    assert machineosbuild.restart_of(name, "worker-0123456789abcdef") == restart
    if restart is not None:
        assert machineosbuild.name_for("worker", "0123456789abcdef" + "0" * 48, restart) == name
