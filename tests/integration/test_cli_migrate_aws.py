"""``freshvec migrate cutover | rollback | finish`` against a deployed-looking stack: the index pointer is an SSM
parameter (moto), written in one call each; finish drops the retired generation and writes the config to deploy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from freshvec import constants as c
from freshvec.cli import app as cli
from freshvec.cli import console
from freshvec.cli.errors import EXIT_FAILED
from freshvec.config import PipelineConfig, default_config
from freshvec.generations import IndexPointer, initial_pointer, live_generations, pointer_parameter_name
from freshvec.local.moto_server import MotoServer

STACK = "freshvec-migrate"
runner = CliRunner()


def _config() -> PipelineConfig:
    raw = default_config().to_dict()
    raw["stack_name"] = STACK
    raw["next_generation"] = {"name": "g2", "embedding": {"provider": "titan", "dimensions": 1024}}
    return PipelineConfig.from_dict(raw)


@pytest.fixture
def stack(moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> PipelineConfig:
    config = _config()
    parameter = pointer_parameter_name(config)
    moto.client("ssm").put_parameter(
        Name=parameter, Value=initial_pointer(config, "bucket").to_json(), Type="String", Overwrite=True
    )
    outputs = {
        c.OUT_REGION: moto.region,
        c.OUT_VECTOR_BUCKET: "bucket",
        c.OUT_VECTOR_INDEX: live_generations(config)[0].index_name,
        c.OUT_INDEX_POINTER_PARAMETER: parameter,
        c.OUT_PIPELINE_CONFIG: config.to_json(),
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "marker"}}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    moto.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    monkeypatch.setenv("AWS_REGION", moto.region)
    monkeypatch.setenv(cli.STACK_ENV, STACK)
    monkeypatch.setattr(console.out, "width", 250)
    monkeypatch.chdir(tmp_path)
    return config


def invoke(*args: str) -> Any:
    result = runner.invoke(cli.app, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def _pointer(moto: MotoServer, config: PipelineConfig) -> IndexPointer:
    value = moto.client("ssm").get_parameter(Name=pointer_parameter_name(config))["Parameter"]["Value"]
    return IndexPointer.from_json(value)


def test_cutover_rollback_and_finish_rewrite_the_pointer(moto: MotoServer, stack: PipelineConfig) -> None:
    refused = invoke("migrate", "cutover")
    assert refused.exit_code == EXIT_FAILED and "not filled yet" in refused.output
    assert _pointer(moto, stack).active == "g1"

    assert invoke("migrate", "cutover", "--force").exit_code == 0
    pointer = _pointer(moto, stack)
    assert (pointer.active, pointer.previous) == ("g2", "g1")
    assert pointer.entry().dimensions == 1024
    assert invoke("migrate", "cutover", "--force").exit_code == 0  # idempotent: already there
    assert _pointer(moto, stack).active == "g2"

    assert invoke("migrate", "rollback").exit_code == 0
    assert _pointer(moto, stack).active == "g1"
    refused = invoke("migrate", "finish")  # readers use g1: finish retires g2 (an abandoned migration)
    assert refused.exit_code == 0 and "generation g2 retired" in refused.output
    pointer = _pointer(moto, stack)
    assert pointer.active == "g1" and set(pointer.generations) == {"g1"}
    written = PipelineConfig.from_file(Path(".freshvec") / f"config-{STACK}-g1.json")
    assert written.next_generation is None and written.generation == "g1"


def test_finish_after_cutover_promotes_the_next_generation(moto: MotoServer, stack: PipelineConfig) -> None:
    invoke("migrate", "cutover", "--force")
    finished = invoke("migrate", "finish")
    assert finished.exit_code == 0 and "generation g1 retired" in finished.output and "cdk deploy" in finished.output
    pointer = _pointer(moto, stack)
    assert pointer.active == "g2" and set(pointer.generations) == {"g2"}
    written = PipelineConfig.from_file(Path(".freshvec") / f"config-{STACK}-g2.json")
    assert (written.generation, written.embedding.dimensions, written.next_generation) == ("g2", 1024, None)
    assert written.vector_index_name == live_generations(stack)[1].index_name  # the index the stack keeps


def test_migrate_without_a_next_generation_is_one_clear_line(moto: MotoServer, stack: PipelineConfig) -> None:
    raw = stack.to_dict()
    raw["next_generation"] = None
    single = PipelineConfig.from_dict(raw)
    cfn = moto.client("cloudformation")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]}
    outputs[c.OUT_PIPELINE_CONFIG] = single.to_json()
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "marker"}}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    cfn.update_stack(StackName=STACK, TemplateBody=json.dumps(template))
    result = invoke("migrate", "cutover")
    assert result.exit_code == EXIT_FAILED
    assert result.output.strip().splitlines()[-1].startswith("error: the config has no next generation")
