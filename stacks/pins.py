"""The versions pinned in constraints.txt, the one place for every Python dependency's pin.

The Lambda layers take their versions from here, so a layer always carries the release the
tests ran against.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503: case and ``-_.`` runs ignored)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def pinned_versions() -> dict[str, str]:
    """Normalized distribution name -> the version constraints.txt pins it to."""
    versions: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            versions[normalized(name)] = version.strip()
    return versions


def pinned_version(name: str) -> str:
    """The version of ``name`` pinned in constraints.txt."""
    try:
        return pinned_versions()[normalized(name)]
    except KeyError:
        raise LookupError(f"{name} is not pinned in {CONSTRAINTS.name}") from None


def pinned_requirement(name: str) -> str:
    """``name==<pinned version>``, for pip."""
    return f"{name}=={pinned_version(name)}"


# What the Lambdas that read, draw or plot images need and their runtime lacks: the image
# library and the typeface of every picture (counting_core/imaging/fonts.py), with the
# typeface's licence, at their pinned versions.
PILLOW = pinned_requirement("pillow")
FONT = pinned_requirement("cvttf-NotoSansCJK-Regular")
IMAGING = (PILLOW, FONT)
IMAGING_LICENCES = (CONSTRAINTS.parent / "licenses" / "NotoSansCJK-OFL-1.1.txt",)
