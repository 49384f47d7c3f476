"""Every configuration's synthesized templates, synthesized once per test session."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from tempfile import mkdtemp

import pytest

from tests.infra.configurations import CONFIGURATIONS
from tests.infra.synth import synth_templates
from tests.stepfunctions.template import Templates


@cache
def synthesized(configuration: str) -> Templates:
    """The templates of ``CONFIGURATIONS[configuration]``, as CloudFormation would get them."""
    outdir = Path(mkdtemp(prefix="contracts-cdk.out-"))
    return Templates(synth_templates(outdir, **CONFIGURATIONS[configuration]))


@pytest.fixture(params=sorted(CONFIGURATIONS))
def templates(request) -> Templates:
    """Each configuration's templates in turn."""
    return synthesized(request.param)
