"""``freshvec --local reconcile --repair`` on a real PostgreSQL when the index holds vectors under keys no sink
writes for a row: the JSON of a row's key in another spelling (``[ 3 ]``, ``[3.0]``, ``["3"]``), a chunk of
one, and a key whose value the table refuses (``["abc"]`` for a bigint): the rows' own vectors stay, the strays
go, and a key the table refuses does not stop the repair of the others."""

from __future__ import annotations

import json

from freshvec.cli.errors import EXIT_CHECK_FAILED
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
