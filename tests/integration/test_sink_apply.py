"""The sink against moto (S3 Vectors, SQS) and the Bedrock fake: what lands in the index, the DLQ and the response."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshvec import constants as c
from freshvec import versions
from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.memory import InProcessTombstones
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.adapters.sqs import SqsDeadLetterQueue
from freshvec.config import PipelineConfig, default_config
from freshvec.errors import MisconfigurationError
from freshvec.events import parse_event, sendable_bytes
from freshvec.local.moto_server import MotoServer
from freshvec.retry import RetryPolicy
from freshvec.sink import Sink
from freshvec.testing.builders import batch, change, key_of, kinesis_record, movie
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime, fake_vector

BUCKET = "freshvec-test-vectors"
INDEX = "movies"
NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _s: None)


class _Body:
    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    def stream(self, **_kw: Any) -> Iterator[bytes]:
        yield self._raw


@dataclass
class ServiceTap:
    """Counts the operations a real boto3 client sends to moto and can answer some with a real AWS error."""

    calls: Counter = field(default_factory=Counter)
    sizes: dict[str, list[int]] = field(default_factory=dict)
    failures: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def fail(self, operation: str, code: str, status: int, times: int = 1) -> None:
        self.failures.setdefault(operation, []).extend([(code, status)] * times)

    def before_send(self, request: Any, **_kw: Any) -> AWSResponse | None:
        target = request.headers.get("X-Amz-Target")  # JSON-protocol services (SQS) name it here
        operation = target.decode().split(".")[-1] if target else request.url.rsplit("/", 1)[-1].split("?")[0]
        self.calls[operation] += 1
        body = json.loads(request.body or b"{}")
        for name in ("vectors", "keys", "Entries"):
            if isinstance(body.get(name), list):
                self.sizes.setdefault(operation, []).append(len(body[name]))
        pending = self.failures.get(operation)
        if pending:
            code, status = pending.pop(0)
            headers = {"x-amzn-errortype": code, "content-type": "application/json"}
            return AWSResponse(
                request.url, status, headers, _Body(json.dumps({"message": f"injected {code}"}).encode())
            )
        return None


@dataclass
class Pipeline:
    config: PipelineConfig
    sink: Sink
    bedrock: FakeBedrockRuntime
    s3vectors: Any
    sqs: Any
    queue_url: str
    tap: ServiceTap

    def vectors(self) -> dict[str, dict[str, Any]]:
        listed = self.s3vectors.list_vectors(
            vectorBucketName=BUCKET, indexName=INDEX, returnData=True, returnMetadata=True
        )["vectors"]
        return {v["key"]: {"data": v["data"]["float32"], "metadata": v["metadata"]} for v in listed}

    def dead_letters(self) -> list[dict[str, Any]]:
        letters = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return letters
            for message in messages:
                letters.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


def _client(server: MotoServer, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name=server.region,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def make_pipeline(server: MotoServer, config: PipelineConfig | None = None, dimension: int = 256) -> Pipeline:
    config = config or default_config()
    tap = ServiceTap()
    s3vectors, sqs = _client(server, "s3vectors"), _client(server, "sqs")
    for client in (s3vectors, sqs):
        client.meta.events.register("before-send", tap.before_send)
    s3vectors.create_vector_bucket(vectorBucketName=BUCKET)
    s3vectors.create_index(  # as the stack creates it: the text and the pipeline's own keys non-filterable
        vectorBucketName=BUCKET,
        indexName=INDEX,
        dataType="float32",
        dimension=dimension,
        distanceMetric="cosine",
        metadataConfiguration={"nonFilterableMetadataKeys": list(config.non_filterable_keys)},
    )
    queue_url = sqs.create_queue(QueueName="freshvec-sink-dlq")["QueueUrl"]
    bedrock = FakeBedrockRuntime()
    sink = Sink(
        config,
        make_embedder(config.embedding, bedrock, NO_WAIT),
        S3VectorsStore(s3vectors, BUCKET, INDEX, NO_WAIT),
        SqsDeadLetterQueue(sqs, queue_url, NO_WAIT),
        tombstones=InProcessTombstones(),
    )
    tap.calls.clear()
    return Pipeline(config, sink, bedrock, s3vectors, sqs, queue_url, tap)


@pytest.fixture
def pipe(moto: MotoServer) -> Pipeline:
    return make_pipeline(moto)


def titan_fingerprint(text: str) -> str:
    """Written out from the documented rule, not taken from the sink: model, dimensions, normalize, limit, text."""
    material = json.dumps([c.TITAN_V2, 256, True, c.TITAN_MAX_INPUT_CHARS, text], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


def vec(text: str) -> list[float]:
    return pytest.approx(fake_vector(text, 256), rel=1e-6)


# ---- inserts, updates, deletes ----------------------------------------------------------------------
def test_inserts_embed_and_store_vectors_with_converted_metadata(pipe: Pipeline) -> None:
    doc = change("INSERT", movie("Jurassic Park", "Dinosaurs return.", vote_count=7))
    result = pipe.sink.process(batch(doc))
    assert result.batch_item_failures == []
    stored = pipe.vectors()[key_of("Jurassic Park")]
    assert stored["data"] == vec("Dinosaurs return.")
    write_id, version = versions.unstamp(stored["metadata"].pop(c.META_VERSION))
    assert write_id is not None and len(write_id) == 16 and version is None  # a change without a version
    assert stored["metadata"] == {
        "title": "Jurassic Park",
        "original_lang": "en",
        "rel_date": 19930611,
        "popularity": 12.5,
        "vote_count": 7,
        "vote_average": 7.1,
        "overview": "Dinosaurs return.",
        c.META_SEQUENCE: doc["seq"],
        c.META_CHANGED_AT: 1795306503120,  # 2026-11-22T00:15:03.120Z
        c.META_FINGERPRINT: titan_fingerprint("Dinosaurs return."),
        c.META_CHUNK: 0,  # a short text is one chunk: chunk 0 under the row's key, with the count
        c.META_CHUNKS: 1,
    }
    assert result.stats.embeddings_computed == 1
    assert result.stats.vectors_put == 1


def test_metadata_only_update_reuses_the_stored_vector_without_bedrock(pipe: Pipeline) -> None:
    pipe.sink.process(batch(change("INSERT", movie("Alien", "In space no one can hear you scream."))))
    calls_before = len(pipe.bedrock.calls)
    old = movie("Alien", "In space no one can hear you scream.")
    new = movie("Alien", "In space no one can hear you scream.", vote_count=999)
    result = pipe.sink.process(batch(change("UPDATE", new, old), start=10))
    assert len(pipe.bedrock.calls) == calls_before
    assert result.stats.embeddings_skipped == 1
    assert result.stats.embeddings_computed == 0
    stored = pipe.vectors()[key_of("Alien")]
    assert stored["metadata"]["vote_count"] == 999
    assert stored["data"] == vec("In space no one can hear you scream.")


def test_unchanged_text_with_a_missing_vector_is_embedded(pipe: Pipeline) -> None:
    old, new = movie("Heat", "A heist."), movie("Heat", "A heist.", vote_count=3)
    result = pipe.sink.process(batch(change("UPDATE", new, old)))
    assert result.stats.embeddings_computed == 1
    assert pipe.vectors()[key_of("Heat")]["data"] == vec("A heist.")


def test_changed_text_is_embedded_again(pipe: Pipeline) -> None:
    pipe.sink.process(batch(change("INSERT", movie("Up", "A house flies."))))
    result = pipe.sink.process(
        batch(change("UPDATE", movie("Up", "Balloons lift a house."), movie("Up", "A house flies.")), start=5)
    )
    assert result.stats.embeddings_computed == 1
    assert pipe.vectors()[key_of("Up")]["data"] == vec("Balloons lift a house.")


@pytest.mark.parametrize("op", ["DELETE", "EXPIRE"])
def test_delete_and_ttl_expiry_remove_the_vector(pipe: Pipeline, op: str) -> None:
    pipe.sink.process(batch(change("INSERT", movie("Tenet", "Time runs backwards."))))
    result = pipe.sink.process(batch(change(op, None, movie("Tenet", "Time runs backwards.")), start=3))
    assert key_of("Tenet") not in pipe.vectors()
    assert result.stats.vectors_deleted == 1
    assert len(pipe.bedrock.calls) == 1


@pytest.mark.parametrize("text", [None, "", "   "])
def test_update_to_empty_text_deletes_the_vector(pipe: Pipeline, text: str | None) -> None:
    pipe.sink.process(batch(change("INSERT", movie("Brazil", "Bureaucracy."))))
    pipe.sink.process(batch(change("UPDATE", movie("Brazil", text), movie("Brazil", "Bureaucracy.")), start=4))
    assert key_of("Brazil") not in pipe.vectors()


def test_coalesces_per_key_last_change_wins_and_identical_texts_embed_once(pipe: Pipeline) -> None:
    records = batch(
        change("INSERT", movie("A", "first")),
        change("INSERT", movie("B", "shared text")),
        change("UPDATE", movie("A", "second"), movie("A", "first")),
        change("INSERT", movie("C", "shared text")),
        change("UPDATE", movie("A", "third", vote_count=3), movie("A", "second")),
        change("INSERT", movie("D", "gone soon")),
        change("DELETE", None, movie("D", "gone soon")),
    )
    result = pipe.sink.process(records)
    assert sorted(pipe.bedrock.texts_embedded()) == ["shared text", "third"]
    stored = pipe.vectors()
    assert set(stored) == {key_of("A"), key_of("B"), key_of("C")}
    assert stored[key_of("A")]["metadata"]["vote_count"] == 3
    assert stored[key_of("B")]["data"] == stored[key_of("C")]["data"]
    assert result.stats.changes_received == 7
    assert result.stats.vectors_put == 3
    assert result.stats.vectors_deleted == 1
    assert len(result.stats.freshness_ms) == 7


def test_delete_then_reinsert_in_one_batch_keeps_the_row(pipe: Pipeline) -> None:
    pipe.sink.process(batch(change("INSERT", movie("Rocky", "A boxer."))))
    records = batch(
        change("DELETE", None, movie("Rocky", "A boxer.")), change("INSERT", movie("Rocky", "A boxer rises.")), start=2
    )
    pipe.sink.process(records)
    assert pipe.vectors()[key_of("Rocky")]["data"] == vec("A boxer rises.")


def test_redelivery_leaves_the_same_index_and_calls_bedrock_no_more(pipe: Pipeline) -> None:
    records = batch(
        change("INSERT", movie("Arrival", "Aliens speak in circles.")),
        change(
            "UPDATE",
            movie("Arrival", "Aliens speak in circles.", vote_count=5),
            movie("Arrival", "Aliens speak in circles."),
        ),
        change("INSERT", movie("Gone", "Temporary.")),
        change("DELETE", None, movie("Gone", "Temporary.")),
    )
    pipe.sink.process(records)
    first, calls = pipe.vectors(), len(pipe.bedrock.calls)
    again = pipe.sink.process(records)
    assert _without_write_ids(pipe.vectors()) == _without_write_ids(first)  # each write has its own write id
    assert len(pipe.bedrock.calls) == calls  # the stored vector was embedded from the same text
    assert again.stats.embeddings_skipped == 1


def _without_write_ids(vectors: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {**v, "metadata": {**v["metadata"], c.META_VERSION: versions.unstamp(v["metadata"][c.META_VERSION])[1]}}
        for key, v in vectors.items()
    }


def test_composite_primary_key_builds_one_vector_per_row(moto: MotoServer) -> None:
    raw = default_config().to_dict()
    raw.update(
        columns={"shop": "text", "sku": "int", "day": "date", "description": "text", "tags": "set<text>"},
        partition_key=["shop"],
        clustering_key=["sku", "day"],
        embedding_field="description",
        metadata_fields=["shop", "tags", "day"],
    )
    config = PipelineConfig.from_dict(raw)
    pipe = make_pipeline(moto, config)
    rows = [
        {"shop": "s1", "sku": 1, "day": "2026-01-31", "description": "red shoe", "tags": ["red", "shoe"]},
        {"shop": "s1", "sku": 2, "day": "2026-01-31", "description": "blue shoe", "tags": []},
    ]
    pipe.sink.process(batch(*(change("INSERT", row, config=config) for row in rows)))
    stored = pipe.vectors()
    assert set(stored) == {'["s1",1,"2026-01-31"]', '["s1",2,"2026-01-31"]'}
    assert stored['["s1",1,"2026-01-31"]']["metadata"]["tags"] == ["red", "shoe"]
    assert "tags" not in stored['["s1",2,"2026-01-31"]']["metadata"]
    assert stored['["s1",2,"2026-01-31"]']["metadata"]["day"] == 20260131


# ---- limits of the services ---------------------------------------------------------------------------
def test_writes_and_reads_are_chunked_to_the_service_limits(pipe: Pipeline) -> None:
    inserts = [change("INSERT", movie(f"m{i}", f"text {i % 40}")) for i in range(1100)]
    pipe.sink.process(batch(*inserts))
    assert pipe.tap.sizes["PutVectors"] == [500, 500, 100]
    assert max(pipe.tap.sizes["GetVectors"]) <= c.S3V_GET_BATCH  # INSERTs check for a stored vector first
    assert len(pipe.bedrock.calls) == 40  # identical texts embedded once
    updates = [
        change("UPDATE", movie(f"m{i}", f"text {i % 40}", vote_count=1), movie(f"m{i}", f"text {i % 40}"))
        for i in range(250)
    ]
    deletes = [change("DELETE", None, movie(f"m{i}")) for i in range(250, 1100)]
    pipe.tap.sizes.clear()
    result = pipe.sink.process(batch(*updates, *deletes, start=2000))
    assert pipe.tap.sizes["GetVectors"] == [100] * 11  # puts, to reuse; deletes, to learn the row's chunk count
    assert pipe.tap.sizes["DeleteVectors"] == [500, 350]
    assert result.stats.embeddings_skipped == 250
    assert len(pipe.vectors()) == 250


def test_without_chunking_a_long_text_is_truncated_for_the_model_and_counted(moto: MotoServer) -> None:
    pipe = make_pipeline(
        moto, PipelineConfig.from_dict({**default_config().to_dict(), "chunking": {"strategy": "none"}})
    )
    text = "word " * 12_000  # 60,000 characters: over Titan's 50,000-character limit
    result = pipe.sink.process(batch(change("INSERT", movie("Long", text))))
    assert result.stats.texts_truncated == 1
    assert result.stats.searchable_text_cut == 1  # the passage, 60,000 characters, is stored as a 32 KB prefix
    sent = pipe.bedrock.texts_embedded()
    assert len(sent) == 1 and len(sent[0]) <= c.TITAN_MAX_INPUT_CHARS
    metadata = pipe.vectors()[key_of("Long")]["metadata"]
    assert text.startswith(metadata["overview"]) and len(metadata["overview"].encode()) <= 32 * 1024


# ---- failures -------------------------------------------------------------------------------------------
def test_poison_records_go_to_the_dlq_and_the_batch_goes_on(pipe: Pipeline) -> None:
    bad_date = change("INSERT", movie("Bad Date", "x", rel_date="1993-13-45"))
    over_filterable = change("INSERT", movie("Huge", "y", original_lang="e" * 3000))
    records = batch(
        change("INSERT", movie("Good", "fine")),
        "{not json",
        bad_date,
        change("INSERT", movie("t" * 1100, "long key")),
        over_filterable,
        {**change("INSERT", movie("Other")), "table": "shows"},
        change("INSERT", movie("Also Good", "fine too")),
    )
    result = pipe.sink.process(records)
    assert result.batch_item_failures == []
    assert set(pipe.vectors()) == {key_of("Good"), key_of("Also Good")}
    letters = pipe.dead_letters()
    assert result.stats.dlq_records == 5 == len(letters)
    assert set(letters[0]) == set(c.DLQ_FIELDS)
    by_seq = {letter["kinesis_sequence_number"]: letter for letter in letters}
    assert set(by_seq) == {r["kinesis"]["sequenceNumber"] for r in records[1:6]}
    assert by_seq[records[1]["kinesis"]["sequenceNumber"]]["payload_b64"] == records[1]["kinesis"]["data"]
    assert "rel_date" in by_seq[records[2]["kinesis"]["sequenceNumber"]]["error_message"]
    assert "1024" in by_seq[records[3]["kinesis"]["sequenceNumber"]]["error_message"]
    assert "filterable" in by_seq[records[4]["kinesis"]["sequenceNumber"]]["error_message"]
    assert all(letter["error_class"] == "PoisonRecordError" for letter in letters)
    assert all(letter["kinesis_shard_id"] == "shardId-000000000000" for letter in letters)


def test_text_bedrock_refuses_is_parked_and_no_older_state_of_its_row_stays(pipe: Pipeline) -> None:
    pipe.bedrock.fail("ValidationException", times=-1, when=lambda body: body.get("inputText") == "refused")
    assert pipe.sink.process(batch(change("INSERT", movie("Solaris", "an ocean thinks")))).batch_item_failures == []
    records = batch(
        change("INSERT", movie("Solaris", "the ocean again")),
        change("UPDATE", movie("Solaris", "refused"), movie("Solaris", "an ocean thinks")),
        change("INSERT", movie("Stalker", "the zone")),
    )
    result = pipe.sink.process(records)
    assert result.batch_item_failures == []
    stored = pipe.vectors()
    assert key_of("Solaris") not in stored  # neither the stored state nor the batch's earlier one is the row's
    assert key_of("Stalker") in stored
    [letter] = pipe.dead_letters()
    assert letter["kinesis_sequence_number"] == records[1]["kinesis"]["sequenceNumber"]
    assert "Bedrock refused" in letter["error_message"]


def test_a_change_too_large_for_the_stream_is_parked_and_no_older_state_of_its_row_stays(pipe: Pipeline) -> None:
    assert pipe.sink.process(batch(change("INSERT", movie("Solaris", "an ocean thinks")))).batch_item_failures == []
    huge = change("UPDATE", movie("Solaris", "waves " * 200_000))  # over 1 MB: the producer sends the marker
    marker = sendable_bytes(parse_event(huge), key_of("Solaris"))
    records = batch(json.loads(marker), change("INSERT", movie("Stalker", "the zone")))
    assert pipe.sink.process(records).batch_item_failures == []
    stored = pipe.vectors()
    assert key_of("Solaris") not in stored  # the text it held is no longer the row's
    assert key_of("Stalker") in stored
    [letter] = pipe.dead_letters()
    assert "a Kinesis record holds at most 1048576" in letter["error_message"]


def test_throttling_is_retried_then_succeeds(pipe: Pipeline) -> None:
    pipe.bedrock.fail("ThrottlingException", times=2)
    pipe.tap.fail("PutVectors", "TooManyRequestsException", 429, times=2)
    result = pipe.sink.process(batch(change("INSERT", movie("Memento", "Memory loss."))))
    assert result.batch_item_failures == []
    assert key_of("Memento") in pipe.vectors()
    assert pipe.tap.calls["PutVectors"] == 3


@pytest.mark.parametrize("code", ["ThrottlingException", "ModelTimeoutException", "ServiceUnavailableException"])
def test_transient_bedrock_failure_reports_the_first_failed_record_and_applies_nothing_after(
    pipe: Pipeline, code: str
) -> None:
    pipe.bedrock.fail(code, times=-1, when=lambda body: body.get("inputText") == "unlucky")
    records = batch(
        change("INSERT", movie("One", "fine")),
        change("DELETE", None, movie("Zero", "x")),
        change("INSERT", movie("Two", "unlucky")),
        change("INSERT", movie("Three", "after the failure")),
        change("UPDATE", movie("One", "changed after the failure"), movie("One", "fine")),
        "{poison after the failure",
    )
    result = pipe.sink.process(records)
    assert result.batch_item_failures == [{"itemIdentifier": records[2]["kinesis"]["sequenceNumber"]}]
    assert result.stats.transient_failures == 4
    stored = pipe.vectors()
    assert set(stored) == {key_of("One")}
    assert stored[key_of("One")]["data"] == vec("fine")  # its later change waits for the re-delivery
    assert pipe.dead_letters() == []  # the poison record is re-delivered and parked then
    # The mapping re-delivers from the reported record; once Bedrock recovers everything lands.
    pipe.bedrock._errors.clear()
    result = pipe.sink.process(records[2:])
    assert result.batch_item_failures == []
    assert set(pipe.vectors()) == {key_of("One"), key_of("Two"), key_of("Three")}
    assert pipe.vectors()[key_of("One")]["data"] == vec("changed after the failure")
    assert len(pipe.dead_letters()) == 1


def test_transient_write_failure_reports_the_lowest_unwritten_record(pipe: Pipeline) -> None:
    pipe.tap.fail("DeleteVectors", "ServiceUnavailableException", 503, times=NO_WAIT.attempts)
    records = batch(change("INSERT", movie("Kept", "yes")), change("DELETE", None, movie("Dropped")))
    result = pipe.sink.process(records)
    assert result.batch_item_failures == [{"itemIdentifier": records[1]["kinesis"]["sequenceNumber"]}]
    assert key_of("Kept") in pipe.vectors()
    assert result.stats.vectors_deleted == 0


def test_dlq_outage_fails_the_poison_record_instead_of_losing_it(pipe: Pipeline) -> None:
    pipe.tap.fail("SendMessageBatch", "ServiceUnavailable", 503, times=NO_WAIT.attempts)
    records = batch(change("INSERT", movie("Fine", "ok")), "garbage", change("INSERT", movie("Later", "ok too")))
    result = pipe.sink.process(records)
    assert result.batch_item_failures == [{"itemIdentifier": records[1]["kinesis"]["sequenceNumber"]}]
    assert pipe.dead_letters() == []


def test_oversized_dead_letter_is_failed_for_the_on_failure_destination(pipe: Pipeline) -> None:
    huge = kinesis_record(b"x" * 900_000, 1)  # base64 makes the dead letter larger than SQS's 1 MiB
    result = pipe.sink.process([huge, kinesis_record(change("INSERT", movie("Next", "ok")), 2)])
    assert result.batch_item_failures == [{"itemIdentifier": huge["kinesis"]["sequenceNumber"]}]
    assert pipe.vectors() == {}


@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [("PutVectors", "AccessDeniedException", 403), ("PutVectors", "NotFoundException", 404)],
)
def test_access_denied_or_missing_index_fails_the_invocation(
    pipe: Pipeline, operation: str, code: str, status: int
) -> None:
    pipe.tap.fail(operation, code, status)
    with pytest.raises(MisconfigurationError, match=code):
        pipe.sink.process(batch(change("INSERT", movie("Any", "text"))))


def test_bedrock_access_denied_fails_the_invocation(pipe: Pipeline) -> None:
    pipe.bedrock.fail("AccessDeniedException")
    with pytest.raises(MisconfigurationError, match="AccessDenied"):
        pipe.sink.process(batch(change("INSERT", movie("Any", "text"))))


def test_missing_index_fails_before_anything_is_applied(moto: MotoServer) -> None:
    pipe = make_pipeline(moto)
    pipe.s3vectors.delete_index(vectorBucketName=BUCKET, indexName=INDEX)
    with pytest.raises(MisconfigurationError, match="GetIndex"):
        pipe.sink.process(batch(change("INSERT", movie("Any", "text"))))
    assert pipe.bedrock.calls == []


def test_dimension_mismatch_fails_the_invocation(moto: MotoServer) -> None:
    pipe = make_pipeline(moto, dimension=1024)
    with pytest.raises(MisconfigurationError, match="1024 dimensions"):
        pipe.sink.process(batch(change("INSERT", movie("Any", "text"))))


def test_dead_letters_are_sent_ten_to_a_call(pipe: Pipeline) -> None:
    result = pipe.sink.process(batch(*(f"garbage {i}" for i in range(25))))
    assert result.stats.dlq_records == 25
    assert pipe.tap.sizes["SendMessageBatch"] == [10, 10, 5]
    assert len(pipe.dead_letters()) == 25


def test_get_vectors_outage_fails_from_the_first_key_that_needed_it(pipe: Pipeline) -> None:
    pipe.sink.process(batch(change("INSERT", movie("Seen", "before"))))
    pipe.tap.calls.clear()
    pipe.tap.fail("GetVectors", "InternalServerException", 500, times=NO_WAIT.attempts)
    records = batch(
        change("DELETE", None, movie("Old")),  # a delete reads chunk 0 too: the row's chunk count
        change("UPDATE", movie("Seen", "before", vote_count=1), movie("Seen", "before")),
        change("UPDATE", movie("New", "changed"), movie("New", "was")),
        start=5,
    )
    result = pipe.sink.process(records)
    assert result.batch_item_failures == [{"itemIdentifier": records[0]["kinesis"]["sequenceNumber"]}]
    assert pipe.tap.calls["DeleteVectors"] == 0 and pipe.tap.calls["PutVectors"] == 0
    assert key_of("New") not in pipe.vectors()


def test_vectors_s3_vectors_refuses_are_parked_and_the_rest_written(pipe: Pipeline) -> None:
    # Three refusals: the whole call, then [A] (refused for good), then [B, C] (split and written one by one).
    pipe.tap.fail("PutVectors", "ValidationException", 400, times=3)
    records = batch(*(change("UPDATE", movie(t, f"text {t}"), movie(t, "old")) for t in "ABC"))
    result = pipe.sink.process(records)
    assert result.batch_item_failures == []
    assert set(pipe.vectors()) == {key_of("B"), key_of("C")}
    [letter] = pipe.dead_letters()
    assert letter["kinesis_sequence_number"] == records[0]["kinesis"]["sequenceNumber"]
    assert "refused" in letter["error_message"]
    assert result.stats.vectors_put == 2


def test_dead_letter_calls_stay_under_the_1_mib_request_limit(pipe: Pipeline) -> None:
    records = [kinesis_record(b"y" * 300_000, i) for i in range(1, 4)]  # ~400 KB of base64 each
    result = pipe.sink.process(records)
    assert result.batch_item_failures == []
    assert pipe.tap.sizes["SendMessageBatch"] == [2, 1]
    letters = pipe.dead_letters()
    assert [base64.b64decode(letter["payload_b64"]) for letter in letters] == [b"y" * 300_000] * 3


# ---- the index always ends where the table ends ----------------------------------------------------------
_STEP = st.tuples(
    st.sampled_from("ABC"),
    st.sampled_from(["write_text", "write_same_text", "clear_text", "delete", "expire"]),
    st.sampled_from(["red", "green", "blue", "red green"]),
    st.integers(min_value=0, max_value=9),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_STEP, min_size=1, max_size=25), cuts=st.lists(st.integers(1, 25), max_size=4))
def test_any_change_sequence_in_any_batching_leaves_the_table_state(
    moto_server: MotoServer, steps: list[tuple[str, str, str, int]], cuts: list[int]
) -> None:
    moto_server.reset()
    pipe = make_pipeline(moto_server)
    table: dict[str, dict[str, Any]] = {}
    docs = []
    for title, action, text, votes in steps:
        before = table.get(title)
        if action in ("delete", "expire"):
            docs.append(change("DELETE" if action == "delete" else "EXPIRE", None, before or movie(title)))
            table.pop(title, None)
            continue
        new_text = {"write_text": text, "clear_text": None}.get(action, (before or {}).get("overview") or text)
        row = movie(title, new_text, vote_count=votes)
        docs.append(change("UPDATE" if before else "INSERT", row, before))
        table[title] = row
    records = batch(*docs)
    bounds = sorted({0, len(records), *(cut for cut in cuts if cut < len(records))})
    for _ in range(2):  # the second pass is a full re-delivery
        for start, end in itertools.pairwise(bounds):
            assert pipe.sink.process(records[start:end]).batch_item_failures == []
        stored = pipe.vectors()
        expected = {key_of(t): row for t, row in table.items() if row["overview"]}
        assert set(stored) == set(expected)
        for key, row in expected.items():
            assert stored[key]["data"] == vec(row["overview"])
            assert stored[key]["metadata"]["vote_count"] == row["vote_count"]
            assert stored[key]["metadata"]["overview"] == row["overview"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(_STEP, min_size=1, max_size=20),
    throttles=st.integers(0, 8),
    put_outages=st.integers(0, 2),
    batch_size=st.integers(1, 8),
)
def test_retrying_from_the_reported_record_converges_on_the_table_state(
    moto_server: MotoServer,
    steps: list[tuple[str, str, str, int]],
    throttles: int,
    put_outages: int,
    batch_size: int,
) -> None:
    moto_server.reset()
    pipe = make_pipeline(moto_server)
    table: dict[str, dict[str, Any]] = {}
    docs = []
    for title, action, text, votes in steps:
        before = table.get(title)
        if action in ("delete", "expire"):
            docs.append(change("DELETE", None, before or movie(title)))
            table.pop(title, None)
        else:
            row = movie(title, None if action == "clear_text" else text, vote_count=votes)
            docs.append(change("UPDATE" if before else "INSERT", row, before))
            table[title] = row
    records = batch(*docs)
    pipe.bedrock.fail("ThrottlingException", times=throttles)
    pipe.tap.fail("PutVectors", "ServiceUnavailableException", 503, times=put_outages * NO_WAIT.attempts)
    position, invocations = 0, 0
    while position < len(records):  # the event source mapping: re-deliver from the reported record
        invocations += 1
        assert invocations < 100
        chunk = records[position : position + batch_size]
        failures = pipe.sink.process(chunk).batch_item_failures
        numbers = [r["kinesis"]["sequenceNumber"] for r in chunk]
        position += numbers.index(failures[0]["itemIdentifier"]) if failures else len(chunk)
    stored = pipe.vectors()
    expected = {key_of(t): row for t, row in table.items() if row["overview"]}
    assert set(stored) == set(expected)
    for key, row in expected.items():
        assert stored[key]["data"] == vec(row["overview"])
        assert stored[key]["metadata"]["vote_count"] == row["vote_count"]
