"""Tests that need torch skip where it is not installed, unless REQUIRE_TORCH=1 says it must
be (``make test-detector``, which installs it first): then its absence fails them."""

from __future__ import annotations

import importlib.util
import os

import pytest


def require_torch() -> None:
    """Call at the top of a module whose tests need torch and torchvision."""
    missing = [name for name in ("torch", "torchvision") if importlib.util.find_spec(name) is None]
    if not missing:
        return
    if os.environ.get("REQUIRE_TORCH") == "1":
        pytest.fail(
            f"REQUIRE_TORCH=1 but {', '.join(missing)} is not installed: run make detector",
            pytrace=False,
        )
    pytest.skip(f"{', '.join(missing)} not installed (make detector)", allow_module_level=True)
