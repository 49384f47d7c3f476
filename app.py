#!/usr/bin/env python3
"""CDK entry point: read the configuration, build every stack, run cdk-nag."""

import sys

import aws_cdk as cdk

from stacks.application import build
from stacks.config import ConfigError, load_config
from stacks.nag import register_rule_packs


def main() -> None:
    app = cdk.App()
    try:
        config = load_config(app.node.get_all_context())
    except ConfigError as error:
        # One line per problem, no traceback: the CDK CLI shows it and exits non-zero.
        sys.exit("\n".join(f"invalid config: {line}" for line in str(error).splitlines()))
    build(app, config)
    register_rule_packs(app)
    app.synth()


if __name__ == "__main__":
    main()
