"""Build and synthesize the app in-process, as app.py does, or one component on its own.

A component's own tests put it in a bare stack (``component_stack``) with only what it is
given in the app (the storage it writes to, a key): its template is then its resources alone,
and the test does not wait for every stack of the app. A stack whose tests read its outputs and
cross-stack references is built beside the storage stack alone (``app_with_storage``). What
spans every stack (cdk-nag, the alarms over every part, the audit report) is tested on the
whole app.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from tempfile import mkdtemp

import aws_cdk as cdk

from stacks.application import apply_stage_policies, build
from stacks.components.storage import DataStorage
from stacks.config import AppConfig, load_config
from stacks.nag import register_rule_packs
from stacks.storage_stack import StorageStack
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


def component_stack(**context) -> tuple[cdk.Stack, AppConfig]:
    """A bare stack in an app of its own, with the context `cdk synth` sees (``-c`` style
    overrides as in ``build_app``), and the configuration that context loads."""
    require_synth_marker()
    full_context = cdk_context(**context)
    app = cdk.App(context=full_context)
    config = load_config(full_context)
    apply_stage_policies(app, config)  # as build does: tags, removal policies
    return cdk.Stack(app, "Component"), config


def app_with_storage(**context) -> tuple[cdk.App, AppConfig, DataStorage, cdk.Environment]:
    """An app holding only the storage stack, named as ``build`` names it, that every other
    stack uses: a test adds the stack it checks, with the environment returned."""
    require_synth_marker()
    full_context = cdk_context(**context)
    app = cdk.App(context=full_context)
    config = load_config(full_context)
    apply_stage_policies(app, config)  # as build does: tags, removal policies
    env = cdk.Environment(account=config.account, region=config.region)
    storage = StorageStack(app, f"{config.prefix}-storage", config=config, env=env)
    return app, config, storage.storage, env


@cache
def synthesized(configuration: str) -> Templates:
    """The templates of ``CONFIGURATIONS[configuration]``, as CloudFormation would get them,
    synthesized once per test session."""
    outdir = Path(mkdtemp(prefix="cdk.out-"))
    return Templates(synth_templates(outdir, **CONFIGURATIONS[configuration]))
