"""Build and synthesize the app in-process, as app.py does."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from tempfile import mkdtemp

import aws_cdk as cdk

from stacks.application import build
from stacks.config import load_config
from stacks.nag import register_rule_packs
from tests.conftest import cdk_context, require_synth_marker
from tests.infra.configurations import CONFIGURATIONS
from tests.stepfunctions.template import Templates


def build_app(
    outdir: Path | None = None, *, rule_packs: bool = True, **context
) -> tuple[cdk.App, dict[str, cdk.Stack]]:
    require_synth_marker()
    full_context = cdk_context(**context)
    app = cdk.App(context=full_context, outdir=str(outdir) if outdir else None)
    stacks = build(app, load_config(full_context))
    if rule_packs:
        register_rule_packs(app)  # as app.py does: synth fails on findings, records acks
    return app, stacks


def synth_templates(outdir: Path, **context) -> dict[str, dict]:
    """Synthesize the whole app into ``outdir``; return each stack's template by stack name."""
    app, _ = build_app(outdir, **context)
    assembly = app.synth()
    return {
        stack.stack_name: json.loads(Path(stack.template_full_path).read_text())
        for stack in assembly.stacks
    }


@cache
def synthesized(configuration: str) -> Templates:
    """The templates of ``CONFIGURATIONS[configuration]``, as CloudFormation would get them,
    synthesized once per test session."""
    outdir = Path(mkdtemp(prefix="cdk.out-"))
    return Templates(synth_templates(outdir, **CONFIGURATIONS[configuration]))
