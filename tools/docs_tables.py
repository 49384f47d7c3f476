"""Write the tables the docs show from the code that decides them (``make docs``).

Usage: python -m tools.docs_tables

docs/counting.md holds the counter's failure table (``counting_core.uploads.failures.RULES``)
between its ``<!-- generated: ... -->`` marker and the first line after it that is not a
table row; tests fail when the page and the rules differ, so it is rewritten here, never
edited by hand. (docs/configuration.md is ``python -m stacks.config``'s.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from counting_core.uploads import failures

ROOT = Path(__file__).resolve().parents[1]
COUNTING_PAGE = ROOT / "docs" / "counting.md"
FAILURE_TABLE_MARKER = "<!-- generated: tools.docs_tables.failure_table() -->"


def failure_table() -> str:
    """``failures.RULES`` as a Markdown table: each failure and what the counter does."""
    lines = ["| Failure | What the counter does |", "|---|---|"]
    lines += [f"| {rule.failure} | {rule.fate} |" for rule in failures.RULES]
    return "\n".join(lines)


def with_failure_table(page: str) -> str:
    """``page`` with the table after its marker replaced by today's."""
    lines = page.split("\n")
    start = lines.index(FAILURE_TABLE_MARKER) + 1
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join([*lines[:start], failure_table(), *lines[end:]])


def main() -> int:
    COUNTING_PAGE.write_text(with_failure_table(COUNTING_PAGE.read_text()))
    print(f"wrote the failure table of {COUNTING_PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
