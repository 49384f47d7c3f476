"""The README's layout table names every room of the core, and every module in each, as the
tree has them; and every folder of the stacks' components."""

from __future__ import annotations

import re

from tests.docs.pages import ROOT

CORE = ROOT / "counting_core"
COMPONENTS = ROOT / "stacks" / "components"


def layout_rows() -> dict[str, str]:
    """The README's layout table: path -> what it says of it."""
    readme = (ROOT / "README.md").read_text("utf-8")
    table = readme.partition("\n## Layout\n")[2].partition("\n## ")[0]
    return dict(re.findall(r"^\| `([^`]+)` \| (.+) \|$", table, flags=re.MULTILINE))


def named(text: str) -> set[str]:
    """The identifiers a row names in backquotes (``delivery``), not paths or commands."""
    return {word for word in re.findall(r"`([^`]+)`", text) if word.isidentifier()}


def modules(folder) -> set[str]:
    return {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}


def test_every_room_of_the_core_has_its_row_naming_its_modules():
    rows = layout_rows()
    rooms = {
        f"counting_core/{path.name}/" for path in CORE.iterdir() if (path / "__init__.py").is_file()
    }

    assert {
        path for path in rows if path.startswith("counting_core/") and path != "counting_core/"
    } == rooms
    for room in rooms:
        assert named(rows[room]) == modules(ROOT / room), room


def test_the_core_row_names_the_shared_ground():
    assert named(layout_rows()["counting_core/"]) == modules(CORE)


def test_the_components_row_names_every_folder_of_components():
    folders = {path.name for path in COMPONENTS.iterdir() if (path / "__init__.py").is_file()}

    assert set(re.findall(r"`(\w+)/`", layout_rows()["stacks/components/"])) == folders
