"""``freshvec --local reconcile --repair`` on a real PostgreSQL when the index holds vectors under keys no sink
writes for a row: the JSON of a row's key in another spelling (``[ 3 ]``, ``[3.0]``, ``["3"]``), a chunk of
one, and a key whose value the table refuses (``["abc"]`` for a bigint): the rows' own vectors stay, the strays
go, and a key the table refuses does not stop the repair of the others."""

from __future__ import annotations

import base64
import json

from freshvec.cli.errors import EXIT_CHECK_FAILED, EXIT_OK
from freshvec.keys import chunk_key
from freshvec.local import LocalPipeline
from tests.postgres.test_cli_local_postgres import eventually, freshvec, key, keys, pipeline  # noqa: F401


def test_strays_in_other_spellings_are_removed_and_an_unreadable_key_does_not_stop_the_repair(
    pipeline: LocalPipeline,  # noqa: F811
) -> None:
    s3vectors = pipeline.server.client("s3vectors")
    where = {"vectorBucketName": pipeline.resources.vector_bucket, "indexName": pipeline.resources.vector_index}
    [row3] = s3vectors.get_vectors(**where, keys=[key(3)], returnData=True, returnMetadata=True)["vectors"]
    strays = ["[ 3 ]", "[3.0]", '["3"]', chunk_key('["3"]', 2)]
    s3vectors.put_vectors(
        **where, vectors=[{"key": k, "data": row3["data"], "metadata": row3["metadata"]} for k in [*strays, '["abc"]']]
    )
    s3vectors.delete_vectors(**where, keys=[key(6)])  # a row missing: repaired although ["abc"] cannot be read
    found = freshvec("reconcile", "--json")
    assert found.exit_code == EXIT_CHECK_FAILED, found.output
    assert json.loads(found.stdout)["orphan"] == 5
    repaired = freshvec("reconcile", "--repair")
    assert repaired.exit_code == EXIT_CHECK_FAILED, repaired.output
    assert "Traceback" not in repaired.output and "error" not in repaired.output, repaired.output
    assert "5 vector key(s) that name no row removed" in repaired.output

    def in_sync() -> bool:
        doc = json.loads(freshvec("reconcile", "--json").stdout)
        return doc["drift"] == 0

    eventually(in_sync, "every stray removed, row 6 back")
    stored = keys(pipeline)
    assert key(3) in stored and key(6) in stored
    assert not {*strays, '["abc"]'} & stored


def test_one_parked_change_whose_key_the_table_refuses_does_not_stop_redrive(
    pipeline: LocalPipeline,  # noqa: F811
) -> None:
    """A parked change for ``{"id": "abc"}`` (no bigint row can have it) beside one for row 9: redrive re-syncs
    row 9 and lets the other go (there is no row to read), instead of failing every time on it."""
    sqs = pipeline.server.client("sqs")
    for row_key, label in (({"id": "abc"}, '["abc"]'), ({"id": 9}, key(9))):
        parked = {
            "v": 1, "source": "postgres", "keyspace": "public", "table": "articles", "op": "DELETE", "key": row_key,
            "new": None, "old": None, "seq": "1#0", "shard": "freshvec", "ts": "2026-01-01T00:00:00.000Z",
            "origin": "USER",
        }  # fmt: skip
        body = {"payload_b64": base64.b64encode(json.dumps(parked).encode()).decode(), "partition_key": label}
        sqs.send_message(QueueUrl=pipeline.resources.dlq_url, MessageBody=json.dumps(body))
    sent = freshvec("redrive", "send", "--source", "dlq")
    assert sent.exit_code == EXIT_OK, sent.output
    assert "1 row(s) sent" in sent.output and "1 already gone" in sent.output, sent.output
    listed = freshvec("redrive", "list")
    assert "0 parked item(s)" in listed.output, listed.output
