"""The global options of one ``freshvec`` invocation, and the resources and clients they lead to.

``freshvec.cli.app`` defines the options and stores them here (``use``); commands read them (``settings``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from freshvec.cli import local_client, stack
from freshvec.config import ConfigError


@dataclass
class Settings:
    stack: str
    region: str | None
    local: bool
    local_state: Path | None
    debug: bool
    _resources: stack.StackResources | None = field(default=None, repr=False)
    _clients: stack.ClientFactory | None = field(default=None, repr=False)

    def resolved_region(self) -> str:
        return self.region or stack.default_region()

    def resources(self) -> stack.StackResources:
        if self._resources is None:
            if self.local:
                self._resources = local_client.load_local_state(self.local_state)
            else:
                region = self.resolved_region()
                cloudformation = stack.make_client_factory(region)("cloudformation")
                self._resources = stack.resolve_stack(cloudformation, self.stack, region)
        return self._resources

    def clients(self) -> stack.ClientFactory:
        if self._clients is None:
            res = self.resources()
            self._clients = stack.make_client_factory(res.region, res.endpoint_url, access_key=res.aws_access_key)
        return self._clients


_settings: Settings | None = None


def use(current: Settings) -> None:
    """The app callback's options, for the command that runs next."""
    global _settings  # noqa: PLW0603 - one invocation, one set of global options
    _settings = current


def override_location(stack: str | None, region: str | None) -> None:
    """``--stack``/``--region`` given after the command: they win over the ones before it (and the environment)."""
    if stack is None and region is None:
        return
    current = settings()
    use(
        dataclasses.replace(
            current,
            stack=stack if stack is not None else current.stack,
            region=region if region is not None else current.region,
            _resources=None,
            _clients=None,
        )
    )


def settings() -> Settings:
    if _settings is None:  # only when a command runs without the app callback (never from the console)
        return Settings(default_stack(), os.environ.get("AWS_REGION"), False, None, False)
    return _settings


def default_stack() -> str:
    from freshvec.config import default_config

    try:
        return default_config().stack_name
    except (ConfigError, OSError):
        return "freshvec"
