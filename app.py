#!/usr/bin/env python3
"""CDK entry point: pipeline config from context -> PipelineStack, checked by cdk-nag AwsSolutions.

An invalid config stops synth with one line naming the field and the allowed values.
"""

from __future__ import annotations

import sys

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from freshvec.config import ConfigError, load_config
from stacks.bundling import BundlingError
from stacks.pipeline_stack import PipelineStack


def build_app(app: App) -> PipelineStack:
    config = load_config(app.node.get_all_context())
    stack = PipelineStack(app, config.stack_name, config=config, stack_name=config.stack_name, env=Environment())
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stack


def main() -> int:
    app = App()
    try:
        build_app(app)
    except (ConfigError, BundlingError) as exc:
        print(f"freshvec: {exc}", file=sys.stderr)  # noqa: T201 - the CLI user's only feedback
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
