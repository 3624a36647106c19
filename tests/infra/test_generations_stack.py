"""The stack during a migration: one index per live generation (the old one kept), the sink may write both and
embed with both models, the index pointer lists both, and the reader and operator policies reach exactly them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from freshvec.generations import IndexPointer, live_generations
from tests.infra.conftest import Synth, default_context, synthesize

NEXT = {"name": "g2", "embedding": {"provider": "cohere", "model_id": "cohere.embed-english-v3", "dimensions": 1024}}


@pytest.fixture(scope="module")
def migrating(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    config = dict(default_context()["freshvec"])
    config["next_generation"] = NEXT
    return synthesize(tmp_path_factory, {"freshvec": config})


def _statement(policy: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == sid)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_each_live_generation_has_its_index_and_the_old_keeps_its_logical_id(migrating: Synth) -> None:
    indexes = migrating.resources("AWS::S3Vectors::Index")
    assert set(indexes) == {"VectorsIndexAD5FBC2C", *(lid for lid in indexes if lid.startswith("VectorsIndexG2"))}
    assert len(indexes) == 2
    names = {r["Properties"]["IndexName"]: r["Properties"]["Dimension"] for r in indexes.values()}
    expected = {g.index_name: g.config.embedding.dimensions for g in live_generations(migrating.config)}
    assert names == expected
    for index in indexes.values():
        assert index["DeletionPolicy"] == "Delete"  # removal_policy destroy; deleted only when it leaves the config


def test_the_sink_writes_both_indexes_and_embeds_with_both_models(migrating: Synth) -> None:
    policies = migrating.resources("AWS::IAM::Policy")
    sink = next(p for lid, p in policies.items() if lid.startswith("SinkRoleDefaultPolicy"))
    write = _statement(sink, "WriteTheLiveIndexes")
    assert sorted(r["Fn::GetAtt"][0] for r in write["Resource"]) == sorted(migrating.resources("AWS::S3Vectors::Index"))
    embed = json.dumps(_statement(sink, "EmbedWithTheGenerationModels")["Resource"])
    assert "amazon.titan-embed-text-v2:0" in embed and "cohere.embed-english-v3" in embed


def test_the_pointer_names_the_active_generation_and_lists_both(migrating: Synth) -> None:
    parameter = migrating.one("AWS::SSM::Parameter")["Properties"]
    assert parameter["Name"] == "/freshvec/freshvec/index-pointer" and parameter["Type"] == "String"
    parts = parameter["Value"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "bucket-name" for p in parts)
    pointer = IndexPointer.from_json(text)
    assert pointer.active == "g1" and set(pointer.generations) == {"g1", "g2"}
    assert pointer.generations["g2"].model_id == "cohere.embed-english-v3"


def test_reader_and_operator_policies_reach_exactly_the_live_indexes_and_the_pointer(migrating: Synth) -> None:
    managed = migrating.resources("AWS::IAM::ManagedPolicy")
    reader = next(p for lid, p in managed.items() if lid.startswith("IndexPointerReaderPolicy"))
    operator = next(p for lid, p in managed.items() if lid.startswith("OperatorPolicy"))
    indexes = sorted(migrating.resources("AWS::S3Vectors::Index"))
    for policy, sid in ((reader, "QueryTheLiveIndexes"), (operator, "ReadTheIndexes")):
        assert sorted(r["Fn::GetAtt"][0] for r in _as_list(_statement(policy, sid)["Resource"])) == indexes
    assert _statement(reader, "ReadTheIndexPointer")["Action"] == "ssm:GetParameter"
    switch = _statement(operator, "ReadAndSwitchTheIndexPointer")
    assert sorted(_as_list(switch["Action"])) == ["ssm:GetParameter", "ssm:PutParameter"]
    outputs = migrating.template["Outputs"]
    assert outputs["IndexPointerParameter"]["Value"] == "/freshvec/freshvec/index-pointer"
    assert "ReaderPolicyArn" in outputs
