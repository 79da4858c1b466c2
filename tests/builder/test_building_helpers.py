"""Naming rules the builder relies on to find its builds again after a restart."""

from __future__ import annotations

import pytest

from mcosup.builder import buildpods

BUILD = "build-worker-0123456789abcdef"


@pytest.mark.parametrize(
    ("name", "attempt"),
    [(BUILD, 0), (f"{BUILD}-retry-1", 1), (f"{BUILD}-retry-12", 12), (f"{BUILD}-context-0", 0)],
)
def test_attempt_of(name: str, attempt: int) -> None:
    assert buildpods.attempt_of(name) == attempt


@pytest.mark.parametrize("attempt", [0, 1, 3])
def test_pod_names_round_trip(attempt: int) -> None:
    name = buildpods.pod_name(BUILD, attempt)
    assert buildpods.attempt_of(name) == attempt
    assert buildpods.belongs_to(name, BUILD)


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
