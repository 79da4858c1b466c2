"""Reading a pool's custom Containerfile text, the part of a build an admin writes (contract sections 4, 11).

Pure. The builder appends that text to its own stage, ``FROM`` the pool's OS image with the pool's
configuration laid in, so the text must not start a stage of its own: the last stage is the image, and
a ``FROM`` in the text would replace the OS image and drop the configuration with it. The webhook
refuses such text at admission time and the build settings refuse it again (the webhook may be down),
both with :func:`from_problems`.

Instructions are read as buildah reads them: the ``escape`` parser directive, line continuations,
comment lines (also inside a continuation) and here-documents (whose body is data, not instructions).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_DIRECTIVE = re.compile(r"^\s*#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$")
_HEREDOC = re.compile(r"<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
#: Instructions whose arguments may open here-documents.
_HEREDOC_INSTRUCTIONS = frozenset(("RUN", "COPY", "ADD"))
_SHOWN = 80


def instructions(text: str) -> Iterator[tuple[int, str]]:
    """Each instruction of ``text`` with the line it starts on (1-based), continuations joined."""
    lines = text.splitlines()
    escape = "\\"
    i = 0
    while i < len(lines):  # parser directives: only before anything else
        directive = _DIRECTIVE.match(lines[i])
        if directive is None:
            break
        if directive.group(1).lower() == "escape":
            escape = directive.group(2)
        i += 1
    while i < len(lines):
        start, part = i + 1, lines[i].strip()
        i += 1
        if not part or part.startswith("#"):
            continue
        parts = [part]
        while parts[-1].endswith(escape) and i < len(lines):
            parts[-1] = parts[-1][: -len(escape)].rstrip()
            following = lines[i].strip()
            i += 1
            if not following.startswith("#"):
                parts.append(following)
        instruction = " ".join(p for p in parts if p)
        yield start, instruction
        if instruction.split(maxsplit=1)[0].upper() in _HEREDOC_INSTRUCTIONS:
            for heredoc in _HEREDOC.finditer(instruction):
                strip_tabs, word = heredoc.group(1) == "-", heredoc.group(3)
                while i < len(lines):
                    body = lines[i].lstrip("\t") if strip_tabs else lines[i]
                    i += 1
                    if body == word:
                        break


def from_problems(where: str, text: str) -> list[str]:
    """One problem per ``FROM`` instruction in ``text``, naming ``where`` (object and field) and the fix."""
    problems = []
    for line, instruction in instructions(text):
        if instruction.split(maxsplit=1)[0].upper() != "FROM":
            continue
        shown = instruction if len(instruction) <= _SHOWN else instruction[: _SHOWN - 1] + "…"
        problems.append(
            f"{where} line {line}: {shown!r} would replace the pool's OS image: this text is appended to "
            "mcosup's build, which starts FROM the OS image with the pool's configuration, so a FROM drops "
            "both; remove it and the stage it starts (an MCO-style 'FROM configs AS final' line is not "
            "needed: the text already runs on the configured OS image)"
        )
    return problems
