"""``reconcile`` against the AWS code path: the table through a (fake) Cassandra session, the index in moto
filled by the real sink from a real backfill, drift made through the session, repairs read from the stream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from freshvec import constants as c
from freshvec import versions
from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.memory import InProcessTombstones
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.adapters.sqs import SqsDeadLetterQueue
from freshvec.cli import backfill, keyspaces, reconcile, resync
from freshvec.cli import stack as cli_stack
from freshvec.cli.errors import EXIT_CHECK_FAILED
from freshvec.cli.send import ChangeStreamSender
from freshvec.events import parse_event
from freshvec.local.moto_server import MotoServer
from freshvec.retry import RetryPolicy
from freshvec.sink import Sink
from freshvec.testing.builders import kinesis_record
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime
from freshvec.testing.fakes.cassandra import FakeSession
from tests.integration.test_cli_aws import _Cluster, _read_stream, _seeded_session, invoke, make_stack

NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _s: None)


@pytest.fixture
def stack(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> cli_stack.StackResources:
    return make_stack(moto, monkeypatch)


def _apply_stream(moto: MotoServer, stack: cli_stack.StackResources, sink: Sink, skip: int = 0) -> int:
    """Feed the stream's records (after the first ``skip``) to the sink, as the event source mapping would."""
    records = _read_stream(moto, stack.stream_name)[skip:]
    batch = [kinesis_record(r["Data"], int(r["SequenceNumber"])) for r in records]
    for start in range(0, len(batch), 100):
        result = sink.process(batch[start : start + 100])
        assert result.batch_item_failures == [] and result.dead_letters == []
    return skip + len(records)


def _indexed(moto: MotoServer, stack: cli_stack.StackResources, tmp_path: Any) -> tuple[FakeSession, Sink, int]:
    session = _seeded_session(limit=60)
    sink = Sink(
        stack.config,
        make_embedder(stack.config.embedding, FakeBedrockRuntime(), NO_WAIT),
        S3VectorsStore(moto.client("s3vectors"), stack.vector_bucket, stack.vector_index, NO_WAIT),
        SqsDeadLetterQueue(moto.client("sqs"), stack.dlq_url, NO_WAIT),
        tombstones=InProcessTombstones(),
    )
    state = backfill.BackfillState.open(tmp_path / "state.json", 4)
    backfill.backfill(session, moto.client("kinesis"), stack, state, workers=2, rate_per_s=100_000)
    return session, sink, _apply_stream(moto, stack, sink)


def _run(
    moto: MotoServer, stack: cli_stack.StackResources, session: FakeSession, *, repair: bool = False
) -> reconcile.ReconcileReport:
    clients = moto.client
    resyncer = None
    if repair:
        sender = ChangeStreamSender.for_kinesis(moto.client("kinesis"), stack.stream_name)
        reader = resync.KeyspacesRowReader(session, stack.config)
        resyncer = resync.Resyncer(stack.config, reader, moto.client("s3vectors"), stack, sender)
    # ListVectors segments: moto answers every segment with the whole index; duplicates must collapse
    sides = reconcile.sides_for(stack, clients, session, segments=5, index_segments=3)
    return reconcile.reconcile(stack, sides, buckets=7, show=3, workers=4, resyncer=resyncer)


def test_a_backfilled_index_is_in_sync_then_drift_is_found_and_repaired(
    moto: MotoServer, stack: cli_stack.StackResources, tmp_path: Any
) -> None:
    session, sink, applied = _indexed(moto, stack, tmp_path)
    clean = _run(moto, stack, session)
    assert (clean.rows, clean.vectors, clean.in_sync, clean.drift) == (60, 60, 60, 0)

    titles = sorted(key[0] for key in session.rows)
    changed, deleted = titles[0], titles[1]
    update = session.prepare('INSERT INTO "media"."movies" ("title", "overview") VALUES (?, ?)')
    session.execute(update, [changed, "an overview rewritten while CDC was not looking"])
    session.execute(session.prepare('DELETE FROM "media"."movies" WHERE "title" = ?'), [deleted])

    drift = _run(moto, stack, session, repair=True)
    assert drift.counts == {"missing": 0, "stale": 1, "metadata": 0, "orphan": 1}
    assert drift.examples["stale"] == [json.dumps([changed])] and drift.examples["orphan"] == [json.dumps([deleted])]
    assert drift.repaired == {"update": 1, "delete": 1, "none": 0, "stray": 0}

    sent = {
        parse_event(r["Data"]).key["title"]: parse_event(r["Data"])
        for r in _read_stream(moto, stack.stream_name)[applied:]
    }
    assert set(sent) == {changed, deleted}
    assert (sent[changed].op, sent[changed].origin) == ("UPDATE", "RECONCILE")
    assert isinstance(versions.parse(sent[changed].version), versions.KsRead)  # the read's stamp
    assert sent[changed].new["overview"] == "an overview rewritten while CDC was not looking"
    assert (sent[deleted].op, sent[deleted].origin) == ("DELETE", "RECONCILE")
    stored = moto.client("s3vectors").get_vectors(
        vectorBucketName=stack.vector_bucket,
        indexName=stack.vector_index,
        keys=[json.dumps([deleted])],
        returnMetadata=True,
    )["vectors"]
    # compare-and-set on exactly the write reconcile saw in the index, read before the table
    assert sent[deleted].if_wid == versions.unstamp(stored[0]["metadata"][c.META_VERSION])[0]
    assert sent[changed].if_wid is not None

    _apply_stream(moto, stack, sink, skip=applied)
    after = _run(moto, stack, session)
    assert (after.rows, after.vectors, after.in_sync, after.drift) == (59, 59, 59, 0)


def test_reconcile_command_against_a_stack(
    moto: MotoServer, stack: cli_stack.StackResources, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session, _sink, _applied = _indexed(moto, stack, tmp_path)
    monkeypatch.setattr(keyspaces, "connect_table", lambda _region, _ca: (_Cluster(), session))
    result = invoke("reconcile", "--segments", "3", "--index-segments", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["in_sync"] == 60
    moto.client("s3vectors").delete_vectors(
        vectorBucketName=stack.vector_bucket,
        indexName=stack.vector_index,
        keys=[json.dumps([sorted(session.rows)[0][0]])],
    )
    result = invoke("reconcile")
    assert result.exit_code == EXIT_CHECK_FAILED and "missing   1" in result.output
