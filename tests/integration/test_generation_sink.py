"""The sink over two live index generations, against moto (S3 Vectors, SQS) and the Bedrock fake: each index gets
its own fingerprints, unchanged text costs no embedding in either, a same-model generation copies instead of
embedding, routed re-syncs reach only their generation, failures combine to the lowest sequence number and a
re-delivery makes both exact without embedding twice."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest
from botocore.config import Config

from freshvec import constants as c
from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.memory import InProcessTombstones
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.adapters.sqs import SqsDeadLetterQueue
from freshvec.config import PipelineConfig, default_config
from freshvec.generation_sink import GenerationSink, encode_vector
from freshvec.generations import live_generations
from freshvec.local.moto_server import MotoServer
from freshvec.retry import RetryPolicy
from freshvec.testing.builders import batch, change, key_of, movie
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime, fake_vector
from tests.integration.test_sink_apply import ServiceTap

BUCKET = "freshvec-gen-vectors"
NO_WAIT = RetryPolicy(attempts=2, sleep=lambda _s: None)


def _config(next_generation: dict[str, Any]) -> PipelineConfig:
    raw = default_config().to_dict()
    raw["chunking"] = {"strategy": "none"}
    raw["next_generation"] = next_generation
    return PipelineConfig.from_dict(raw)


class Two:
    def __init__(self, server: MotoServer, config: PipelineConfig) -> None:
        self.config = config
        self.generations = live_generations(config)
        self.taps = {g.name: ServiceTap() for g in self.generations}
        self.s3v = {}
        for g in self.generations:
            client = boto3.client(
                "s3vectors", endpoint_url=server.endpoint, region_name=server.region,
                config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
            )  # fmt: skip
            client.meta.events.register("before-send", self.taps[g.name].before_send)
            self.s3v[g.name] = client
        first = self.s3v[self.generations[0].name]
        first.create_vector_bucket(vectorBucketName=BUCKET)
        for g in self.generations:
            first.create_index(
                vectorBucketName=BUCKET, indexName=g.index_name, dataType="float32",
                dimension=g.config.embedding.dimensions, distanceMetric=g.config.vector_store.distance_metric,
            )  # fmt: skip
        sqs = server.client("sqs")
        self.queue_url = sqs.create_queue(QueueName="gen-dlq")["QueueUrl"]
        self.sqs = sqs
        self.bedrock = FakeBedrockRuntime()
        self.sink = GenerationSink(
            self.generations,
            {g.name: make_embedder(g.config.embedding, self.bedrock, NO_WAIT) for g in self.generations},
            {g.name: S3VectorsStore(self.s3v[g.name], BUCKET, g.index_name, NO_WAIT) for g in self.generations},
            SqsDeadLetterQueue(sqs, self.queue_url, NO_WAIT),
            tombstones=InProcessTombstones(),
        )

    def vectors(self, name: str) -> dict[str, dict[str, Any]]:
        g = next(g for g in self.generations if g.name == name)
        listed = self.s3v[name].list_vectors(
            vectorBucketName=BUCKET, indexName=g.index_name, returnData=True, returnMetadata=True
        )["vectors"]
        return {v["key"]: {"data": v["data"]["float32"], "metadata": v["metadata"]} for v in listed}

    def dead_letters(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


@pytest.fixture
def two_models(moto: MotoServer) -> Two:
    return Two(moto, _config({"name": "g2", "embedding": {"provider": "titan", "dimensions": 512}}))


@pytest.fixture
def same_model(moto: MotoServer) -> Two:
    return Two(
        moto, _config({"name": "g2", "chunking": {"strategy": "none"}, "vector_store": {"index_name": "movies-b"}})
    )


def test_every_live_change_reaches_each_generation_with_its_own_fingerprints(two_models: Two) -> None:
    result = two_models.sink.process(batch(change("INSERT", movie("Alien", "A crew meets a creature."))))
    assert result.batch_item_failures == []
    g1, g2 = two_models.vectors("g1"), two_models.vectors("g2")
    assert set(g1) == set(g2) == {key_of("Alien")}
    assert len(g1[key_of("Alien")]["data"]) == 256 and len(g2[key_of("Alien")]["data"]) == 512
    assert g1[key_of("Alien")]["metadata"][c.META_FINGERPRINT] != g2[key_of("Alien")]["metadata"][c.META_FINGERPRINT]
    assert g2[key_of("Alien")]["data"] == pytest.approx(fake_vector("A crew meets a creature.", 512), abs=1e-6)
    assert [call["body"].get("dimensions") for call in two_models.bedrock.calls] == [256, 512]


def test_unchanged_text_costs_no_embedding_in_either(two_models: Two) -> None:
    two_models.sink.process(batch(change("INSERT", movie("Alien", "A crew meets a creature."))))
    calls = len(two_models.bedrock.calls)
    updated = movie("Alien", "A crew meets a creature.", vote_count=99)
    result = two_models.sink.process(batch(change("UPDATE", updated), start=10))
    assert result.batch_item_failures == []
    assert len(two_models.bedrock.calls) == calls
    for name in ("g1", "g2"):
        assert two_models.vectors(name)[key_of("Alien")]["metadata"]["vote_count"] == 99


def test_a_same_model_generation_copies_instead_of_embedding(same_model: Two) -> None:
    result = same_model.sink.process(
        batch(change("INSERT", movie("Alien", "A crew meets a creature.")), change("INSERT", movie("Heat", "A heist.")))
    )
    assert result.batch_item_failures == []
    assert sorted(same_model.bedrock.texts_embedded()) == ["A crew meets a creature.", "A heist."]  # once, for g1
    assert result.generations["g2"].copy.copied == 2 and result.generations["g2"].copy.embedded == 0
    g1, g2 = same_model.vectors("g1"), same_model.vectors("g2")
    assert g1[key_of("Heat")]["data"] == g2[key_of("Heat")]["data"]


def test_a_routed_resync_reaches_only_its_generation(two_models: Two) -> None:
    resync = change("UPDATE", movie("Alien", "Only for the next one."))
    resync.update(origin="BACKFILL", version=5, generations=["g2"])
    result = two_models.sink.process(batch(resync))
    assert result.batch_item_failures == []
    assert two_models.vectors("g1") == {}
    assert set(two_models.vectors("g2")) == {key_of("Alien")}
    assert result.generations["g1"].records == 0 and result.generations["g2"].records == 1


def test_a_precomputed_vector_in_a_resync_is_used_not_embedded(two_models: Two) -> None:
    text = "Computed by a batch job."
    vector = fake_vector(text, 512)
    from freshvec.plan import fingerprint

    fp = fingerprint(model_id=c.TITAN_V2, dimensions=512, normalize=True, max_input_chars=50_000, text=text)
    resync = change("UPDATE", movie("Alien", text))
    resync.update(origin="BACKFILL", version=5, generations=["g2"], vectors={fp: encode_vector(vector)})
    result = two_models.sink.process(batch(resync))
    assert result.batch_item_failures == []
    assert two_models.bedrock.calls == []
    assert result.generations["g2"].copy.copied == 1
    assert two_models.vectors("g2")[key_of("Alien")]["metadata"][c.META_FINGERPRINT] == fp


def test_a_failure_in_one_generation_is_reported_at_the_lowest_point_and_redelivery_converges(two_models: Two) -> None:
    records = batch(*(change("INSERT", movie(f"Film {i}", f"Story number {i}.")) for i in range(4)))
    two_models.taps["g2"].fail("PutVectors", "ServiceUnavailableException", 503, times=2)
    result = two_models.sink.process(records)
    assert result.batch_item_failures == [{"itemIdentifier": records[0]["kinesis"]["sequenceNumber"]}]
    calls = len(two_models.bedrock.calls)
    again = two_models.sink.process(records)  # the mapping re-delivers from the reported record
    assert again.batch_item_failures == []
    assert len(two_models.vectors("g1")) == len(two_models.vectors("g2")) == 4
    # g1 had applied everything: its re-delivery reuses its stored vectors; only g2, whose writes failed, embeds
    assert {call["body"]["dimensions"] for call in two_models.bedrock.calls[calls:]} == {512}
    assert again.generations["g1"].copy.embedded == 0


def test_a_poison_record_is_parked_once_for_all_generations(two_models: Two) -> None:
    records = batch(b"not json", change("INSERT", movie("Alien", "A crew.")))
    result = two_models.sink.process(records)
    assert result.batch_item_failures == []
    assert two_models.dead_letters() == 1
    assert len(result.dead_letters) == 1
    for name in ("g1", "g2"):
        assert set(two_models.vectors(name)) == {key_of("Alien")}


def test_routing_reads_only_what_it_needs(two_models: Two) -> None:
    record = batch(change("INSERT", movie("Alien", "A crew.")))[0]
    doc = json.loads(base64.b64decode(record["kinesis"]["data"]))
    assert "generations" not in doc  # a live change names no generation: it reaches every live one
