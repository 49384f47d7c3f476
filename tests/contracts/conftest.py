"""Every configuration's synthesized templates, synthesized once per test session."""

from __future__ import annotations

import pytest

from tests.infra.configurations import CONFIGURATIONS
from tests.infra.synth import synthesized
from tests.stepfunctions.template import Templates


@pytest.fixture(params=sorted(CONFIGURATIONS))
def templates(request) -> Templates:
    """Each configuration's templates in turn."""
    return synthesized(request.param)
