"""Write the published JSON Schemas into ``schemas/`` from ``counting_core.contracts.published``.

Usage: python -m tools.schemas [DIR]   (``make schemas``; DIR defaults to schemas/)

The files are what the stack registers in its EventBridge schema registry and what
consumers code against; tests fail when they differ from the models, so they are
regenerated here, never edited by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from counting_core.contracts import published

ROOT = Path(__file__).resolve().parents[1]


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else ROOT / "schemas"
    target.mkdir(parents=True, exist_ok=True)
    for name, schema in published.json_schemas().items():
        (target / name).write_text(render(schema))
        print(f"wrote {target / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
