"""The documentation as data: its pages, fenced blocks, `counting` commands and samples.

The docs' tests read what a reader reads: commands are taken from ``sh``/``console``
blocks (in a ``console`` block, ``$ `` starts a command and the lines up to the next one
are what it prints), and a JSON sample is the ``json`` block right after a
``<!-- sample: NAME -->`` comment.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SHELL_LANGUAGES = {"sh", "shell", "bash", "console"}

_FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[a-z]*)\s*$")
_SAMPLE = re.compile(r"^<!-- sample: (?P<name>[a-z-]+) -->$")
_INLINE_COMMAND = re.compile(r"`(counting [^`]+)`")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    lines: tuple[str, ...]
    sample: str | None  # the name in a <!-- sample: NAME --> comment just before it


@dataclass(frozen=True)
class Command:
    """A ``counting ...`` command shown in the docs, and what a console block says it prints."""

    page: Path
    line: int
    argv: tuple[str, ...]  # without the leading "counting"
    shown_output: str | None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: counting {shlex.join(self.argv)}"


def relative(page: Path) -> str:
    return str(page.relative_to(ROOT))


def blocks(page: Path) -> list[Block]:
    found: list[Block] = []
    lines = page.read_text("utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = len(opening["indent"])
        previous = lines[index - 1].strip() if index else ""
        sample = _SAMPLE.match(previous)
        body: list[str] = []
        index += 1
        while not lines[index].strip().startswith("```"):
            body.append(lines[index][indent:])
            index += 1
        found.append(
            Block(
                page=page,
                line=index - len(body),
                language=opening["language"],
                lines=tuple(body),
                sample=sample["name"] if sample else None,
            )
        )
        index += 1
    return found


def commands(page: Path) -> list[Command]:
    """Every ``counting`` command in the page's shell blocks, in the order shown."""
    found: list[Command] = []
    for block in blocks(page):
        if block.language not in SHELL_LANGUAGES:
            continue
        console = block.language == "console"
        index = 0
        while index < len(block.lines):
            line_number = block.line + 1 + index
            text = block.lines[index]
            if console:
                if not text.startswith("$ "):
                    index += 1
                    continue
                text = text[2:]
            while text.endswith("\\"):
                index += 1
                text = text[:-1] + " " + block.lines[index].strip()
            index += 1
            output: list[str] = []
            while console and index < len(block.lines) and not block.lines[index].startswith("$ "):
                output.append(block.lines[index])
                index += 1
            words = shlex.split(text, comments=True)
            if words and words[0] == "counting":
                shown = "\n".join(output) if console else None
                found.append(Command(page, line_number, tuple(words[1:]), shown or None))
    return found


def inline_commands(page: Path) -> list[str]:
    """``counting ...`` written in running text, e.g. `counting manifest stats`."""
    in_block = False
    found = []
    for line in page.read_text("utf-8").splitlines():
        if _FENCE.match(line) or line.strip().startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            found.extend(_INLINE_COMMAND.findall(line))
    return found


def sample_text(page: Path, name: str) -> str:
    """The text of the block tagged ``<!-- sample: name -->`` on ``page``."""
    tagged = [block for block in blocks(page) if block.sample == name]
    assert len(tagged) == 1, f"{relative(page)}: expected one sample {name!r}, found {len(tagged)}"
    return "\n".join(tagged[0].lines)


def sample(page: Path, name: str) -> Any:
    """The JSON of the block tagged ``<!-- sample: name -->`` on ``page``."""
    return json.loads(sample_text(page, name))
