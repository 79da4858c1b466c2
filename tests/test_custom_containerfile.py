"""A pool's custom Containerfile text: which instructions are FROMs (refused), read as buildah reads them."""

from __future__ import annotations

import pytest

from mcosup.model import containerfile

WHERE = "MachineOSConfig worker spec.containerFile[0].content"


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("RUN dnf install -y tmux && dnf clean all\nLABEL tier=worker\n", []),
        ("FROM quay.io/fedora/fedora:41\nRUN true\n", [1]),
        ("  from configs AS final\nRUN true\n", [1]),  # keywords are case-insensitive, indent allowed
        ("# FROM a comment\nRUN true\n", []),
        ("RUN echo \\\n  FROM is an argument here\n", []),  # a continuation, not an instruction
        ("RUN echo a \\\n# a comment inside the continuation\n  b\nFROM x\n", [4]),
        ("# escape=`\nRUN echo `\nFROM still an argument\nFROM y\n", [4]),
        ("RUN <<EOF\nFROM inside a here-document\nEOF\nFROM z\n", [4]),
        ("COPY <<-'END' /etc/x\n\tFROM data\n\tEND\nRUN true\n", []),
        ("FROM a AS build\nRUN make\nFROM configs AS final\nCOPY --from=build /x /x\n", [1, 3]),
        ("", []),
    ],
)
def test_from_instructions_are_found_by_line(text: str, lines: list[int]) -> None:
    problems = containerfile.from_problems(WHERE, text)
    assert [int(p.split(" line ", 1)[1].split(":", 1)[0]) for p in problems] == lines


def test_a_problem_names_the_object_the_field_the_line_and_the_fix() -> None:
    (problem,) = containerfile.from_problems(WHERE, "RUN true\nFROM configs AS final\n")
    assert problem.startswith(f"{WHERE} line 2: 'FROM configs AS final' would replace the pool's OS image")
    assert "remove it" in problem
