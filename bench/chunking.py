"""Chunking benchmark: embeddings an edit costs, and what chunking does for retrieval in long texts.

Embeddings (the sink against moto, Bedrock fake, default config: ``recursive``, 1,000-character bound):

- ``chunk_edit_embeddings``: a 20-chunk text (paragraphs of the bundled long documents, freshvec/data/longdocs)
  is stored, then one paragraph in its middle is edited; the Bedrock calls the update costs. Target ≤ 2.
- ``chunk_prepend_embeddings``: the same text with a paragraph inserted at its start. Target ≤ 2.
- ``chunk_edit_embeddings_baseline``: the middle edit applied to an index holding nothing of the row, so every
  chunk is embedded again — what systems that delete and re-embed a changed row do (same run, same sink).

Retrieval (freshvec/data/longdocs: 8 documents of 16 paragraphs written for this project, 32 questions whose answers
sit at different depths; WordLlama, ``freshvec.local.embedder.LocalEmbedder``, for both, same run; exact
cosine search over the vectors):

- ``chunk_recall_at_5``: each document chunked as the sink does; a query asks for ``query_top_k(5)`` chunks
  and groups them into 5 rows (``group_hits``). A question counts when its document is among the 5 rows with
  a returned passage of that row holding the answer.
- ``nochunk_recall_at_5``: one vector per document, computed from its first 512 characters (modelling an
  input limit: a model that takes 512 characters sees no more); the passage a hit stands for is that text.
  Counted the same way.
- ``chunk_doc_recall_at_1`` / ``nochunk_doc_recall_at_1``: the question's document ranked first (no passage
  check), to show the ranking apart from what a hit can show.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from freshvec.adapters.bedrock import make_embedder
from freshvec.adapters.memory import InProcessTombstones
from freshvec.adapters.s3vectors import S3VectorsStore
from freshvec.adapters.sqs import SqsDeadLetterQueue
from freshvec.chunking import chunk_text, group_hits, query_top_k
from freshvec.config import default_config
from freshvec.datafiles import sample_movies
from freshvec.local.embedder import LocalEmbedder
from freshvec.local.moto_server import MotoServer
from freshvec.retry import RetryPolicy
from freshvec.sink import Sink
from freshvec.testing.builders import batch, change, movie
from freshvec.testing.fakes.bedrock import FakeBedrockRuntime

LONGDOCS = sample_movies().parent / "longdocs"  # bundled with the package beside the sample movies
TARGET_CHUNKS = 20
NOCHUNK_INPUT_CHARS = 512
K = 5


def _documents() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (LONGDOCS / "documents.jsonl").read_text().splitlines() if line.strip()]


def _questions() -> list[dict[str, str]]:
    return [json.loads(line) for line in (LONGDOCS / "questions.jsonl").read_text().splitlines() if line.strip()]


# ---- embeddings per edit --------------------------------------------------------------------------------
def _long_text_paragraphs() -> list[str]:
    """Paragraphs of the long documents, as many as make a 20-chunk text under the default config."""
    config = default_config()
    pool = [p for doc in _documents() for p in doc["overview"].split("\n\n")]
    for count in range(1, len(pool) + 1):
        if len(chunk_text("\n\n".join(pool[:count]), config.chunking)) == TARGET_CHUNKS:
            return pool[:count]
    raise AssertionError("the long documents do not make a 20-chunk text")


class _Index:
    def __init__(self, server: MotoServer, name: str) -> None:
        self.config = default_config()
        s3vectors, sqs = server.client("s3vectors"), server.client("sqs")
        bucket = f"bench-chunks-{name}"
        s3vectors.create_vector_bucket(vectorBucketName=bucket)
        s3vectors.create_index(
            vectorBucketName=bucket, indexName="docs", dataType="float32", dimension=256, distanceMetric="cosine"
        )
        queue_url = sqs.create_queue(QueueName=f"bench-chunks-{name}")["QueueUrl"]
        self.bedrock = FakeBedrockRuntime()
        retry = RetryPolicy()
        self.sink = Sink(
            self.config,
            make_embedder(self.config.embedding, self.bedrock, retry),
            S3VectorsStore(s3vectors, bucket, "docs", retry),
            SqsDeadLetterQueue(sqs, queue_url, retry),
            tombstones=InProcessTombstones(),
        )
        self._seq = 0

    def write(self, paragraphs: list[str]) -> int:
        """Bedrock calls it took to apply the row's new text."""
        before = len(self.bedrock.calls)
        self._seq += 1
        result = self.sink.process(batch(change("UPDATE", movie("Long", "\n\n".join(paragraphs))), start=self._seq))
        assert not result.batch_item_failures
        return len(self.bedrock.calls) - before


def embeddings_per_edit(server: MotoServer) -> dict[str, Any]:
    paragraphs = _long_text_paragraphs()
    middle = len(paragraphs) // 2
    edited = [
        *paragraphs[:middle],
        paragraphs[middle] + " This sentence was added by an edit.",
        *paragraphs[middle + 1 :],
    ]
    prepended = ["A new opening paragraph, inserted before everything else in the text.", *paragraphs]
    index = _Index(server, "reuse")
    assert index.write(paragraphs) == TARGET_CHUNKS
    edit_cost = index.write(edited)
    index.write(paragraphs)  # back to the original before the second edit
    prepend_cost = index.write(prepended)
    baseline = _Index(server, "baseline").write(edited)  # nothing stored: every chunk of the edited text
    return {
        "chunk_text_chunks": TARGET_CHUNKS,
        "chunk_edit_embeddings": edit_cost,
        "chunk_prepend_embeddings": prepend_cost,
        "chunk_edit_embeddings_baseline": baseline,
    }


# ---- retrieval -------------------------------------------------------------------------------------------
def _search(vectors: np.ndarray, keys: list[str], texts: list[str], query: np.ndarray, top_k: int) -> list[dict]:
    scores = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query) + 1e-12)
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [{"key": keys[i], "distance": float(1 - scores[i]), "metadata": {"overview": texts[i]}} for i in order]


def retrieval() -> dict[str, Any]:
    config = default_config()
    embedder = LocalEmbedder(256)
    documents, questions = _documents(), _questions()
    chunk_keys, chunk_texts, row_keys, row_texts = [], [], [], []
    for doc in documents:
        row = json.dumps([doc["title"]])
        for number, chunk in enumerate(chunk_text(doc["overview"], config.chunking)):
            chunk_keys.append(row if number == 0 else f"{row}#{number}")
            chunk_texts.append(chunk)
        row_keys.append(row)
        row_texts.append(doc["overview"][:NOCHUNK_INPUT_CHARS])
    chunk_vectors = np.asarray(embedder.embed_documents(chunk_texts), dtype=np.float32)
    row_vectors = np.asarray(embedder.embed_documents(row_texts), dtype=np.float32)
    found = {"chunk": [0, 0], "nochunk": [0, 0]}  # recall@5 with the passage, document first
    for question in questions:
        wanted = json.dumps([question["title"]])
        query = np.asarray(embedder.embed_query(question["question"]), dtype=np.float32)
        for name, vectors, keys, texts, top_k in (
            ("chunk", chunk_vectors, chunk_keys, chunk_texts, query_top_k(K)),
            ("nochunk", row_vectors, row_keys, row_texts, K),
        ):
            rows = group_hits(_search(vectors, keys, texts, query, top_k), K, "overview")
            answer = question["answer"].lower()
            if any(r.key == wanted and any(answer in h.passage.lower() for h in r.chunks) for r in rows):
                found[name][0] += 1
            if rows and rows[0].key == wanted:
                found[name][1] += 1
    total = len(questions)
    return {
        "chunk_documents": len(documents),
        "chunk_questions": total,
        "chunk_recall_at_5": round(found["chunk"][0] / total, 3),
        "nochunk_recall_at_5": round(found["nochunk"][0] / total, 3),
        "chunk_doc_recall_at_1": round(found["chunk"][1] / total, 3),
        "nochunk_doc_recall_at_1": round(found["nochunk"][1] / total, 3),
    }


def run() -> dict[str, Any]:
    with MotoServer.start() as server:
        figures = embeddings_per_edit(server)
    figures.update(retrieval())
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
