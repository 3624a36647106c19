"""Long text -> chunks: deterministic, bounded, and local, so an edit re-embeds about one chunk, not all of them.

The ``recursive`` strategy (``chunking.strategy``) cuts a row's text into **pieces** of at most the bound:
the whole text if it fits; else its paragraphs (blank lines); a paragraph too long for the bound into its
sentences; a sentence too long into words; a word too long into bound-sized slices. Pieces are then packed into
chunks. Packing greedily from the start would let one inserted paragraph shift every later boundary, so the
boundaries are anchored in the content instead: a piece **marks** a boundary when a hash of its text falls
below ``len(piece) / (bound / 2)`` (a piece of half the bound or more always marks), and the pieces between two
marks (a *run*) are packed greedily. A run's chunks depend on the run's pieces only, so

- an edit inside a paragraph changes the chunks of that paragraph's run (about one chunk; two runs when the
  edit changes whether its piece marks);
- a paragraph inserted at the start changes the first run only; every later chunk keeps its text.

With ``overlap_chars`` > 0, each chunk after the first starts with the end of the one before it (cut at a
word start); an edit near a chunk's end then also changes the next chunk. Chunks are stripped of surrounding
whitespace and are never empty; the bound counts the overlap.

The ``none`` strategy keeps one chunk per row: the whole text, which the embedder cuts to the model's limit.

Vectors (``freshvec.keys``): chunk 0 of a row is stored under the row's key and carries the chunk count
(``_chunks``); chunk *n* > 0 under ``<row key>#<n>``. Every chunk carries its number (``_chunk``), its own
text under the embedding field, its fingerprint (of its own text) and the row's metadata and version.

For tools that compare the index with the table (``freshvec reconcile``): ``expected_chunks`` gives, for a
row's text, the chunk keys, texts and fingerprints the sink stores; ``stored_chunk_count`` reads chunk 0's
count; ``chunk_keys`` lists a row's stored keys from it. For queries: ``query_top_k`` (how many vectors to ask
for to fill ``k`` rows) and ``group_hits`` (vectors -> rows, best first, with their matching passages).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from freshvec import constants as c
from freshvec.config import ChunkingConfig, PipelineConfig
from freshvec.errors import PoisonRecordError
from freshvec.keys import chunk_key, split_chunk_key
from freshvec.plan import fingerprint, has_text

__all__ = [
    "ChunkHit",
    "ExpectedChunk",
    "RowHit",
    "chunk_keys",
    "chunk_text",
    "expected_chunks",
    "group_hits",
    "query_top_k",
    "stored_chunk_count",
]

# Paragraphs, then sentences, then words; each separator stays with the piece before it.
_SEPARATORS = (re.compile(r"\n[ \t]*\n\s*"), re.compile(r"(?<=[.!?])\s+"), re.compile(r"\s+"))
_HASH_SPACE = float(2**64)
QUERY_OVERFETCH = 4  # vectors asked for per row wanted: a row's chunks compete for the same places


# ---- splitting ---------------------------------------------------------------------------------------
def chunk_text(text: str | None, chunking: ChunkingConfig) -> list[str]:
    """The chunks of ``text`` in order ([] when it has no text): the one function every caller shares."""
    if not has_text(text):
        return []
    assert text is not None
    if chunking.strategy == "none":
        return [text]
    overlap = chunking.overlap_chars
    capacity = chunking.max_chars - (overlap + 1 if overlap else 0)  # room for the overlap and its space
    chunks: list[str] = []
    for run in _runs(_pieces(text, capacity, 0), capacity):
        chunks.extend(_pack(run, capacity))
    chunks = [chunk for chunk in (raw.strip() for raw in chunks) if chunk]
    if overlap:
        chunks = chunks[:1] + [f"{_tail(prev, overlap)} {chunk}".lstrip() for prev, chunk in itertools.pairwise(chunks)]
    return chunks


def _pieces(text: str, capacity: int, level: int) -> list[str]:
    if len(text) <= capacity:
        return [text]
    if level == len(_SEPARATORS):
        return [text[i : i + capacity] for i in range(0, len(text), capacity)]
    pieces: list[str] = []
    for unit in _split_keeping_separators(text, _SEPARATORS[level]):
        pieces.extend(_pieces(unit, capacity, level + 1))
    return pieces


def _split_keeping_separators(text: str, separator: re.Pattern[str]) -> list[str]:
    units, start = [], 0
    for match in separator.finditer(text):
        if match.end() > start and match.start() > start:
            units.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        units.append(text[start:])
    return units or [text]


def _marks(piece: str, capacity: int) -> bool:
    """Content decides: a piece of length L marks a boundary with probability L / (capacity / 2)."""
    core = piece.strip()
    digest = int(hashlib.sha256(core.encode("utf-8")).hexdigest()[:16], 16)
    return digest / _HASH_SPACE < len(core) / (capacity / 2)


def _runs(pieces: list[str], capacity: int) -> list[list[str]]:
    runs: list[list[str]] = [[]]
    for piece in pieces:
        runs[-1].append(piece)
        if _marks(piece, capacity):
            runs.append([])
    return [run for run in runs if run]


def _pack(run: list[str], capacity: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for piece in run:
        if current and len(current) + len(piece) > capacity:
            chunks.append(current)
            current = ""
        current += piece
    if current:
        chunks.append(current)
    return chunks


def _tail(text: str, size: int) -> str:
    """The last ``size`` characters of ``text``, starting at a word (a cut mid-word drops the fragment)."""
    if len(text) <= size:
        return text
    tail = text[-size:]
    if not text[-size - 1].isspace():
        _, space, rest = tail.partition(" ")
        tail = rest if space else ""
    return tail.strip()


# ---- what the index holds for a row ------------------------------------------------------------------
@dataclass(frozen=True)
class ExpectedChunk:
    number: int
    key: str  # the vector key (chunk 0: the row's key)
    text: str  # what is embedded, and stored under the embedding field
    fingerprint: str  # the ``_fp`` the sink writes


def expected_chunks(
    config: PipelineConfig, row_key: str, text: str | None, *, max_input_chars: int
) -> list[ExpectedChunk]:
    """The chunks the sink stores for a row whose text is ``text`` ([] when it has none).

    ``max_input_chars`` is the embedder's input limit (part of every fingerprint). PoisonRecordError when a
    chunk's key would pass the 1,024-character limit.
    """
    e = config.embedding
    chunks = []
    for number, chunk in enumerate(chunk_text(text, config.chunking)):
        if number >= c.MAX_CHUNKS_PER_ROW:
            raise PoisonRecordError(
                f"the text needs more than {c.MAX_CHUNKS_PER_ROW} chunks of {config.chunking.max_chars} characters"
            )
        fp = fingerprint(
            model_id=e.model_id,
            dimensions=e.dimensions,
            normalize=e.normalize,
            max_input_chars=max_input_chars,
            text=chunk,
        )
        chunks.append(ExpectedChunk(number, chunk_key(row_key, number), chunk, fp))
    return chunks


def stored_chunk_count(chunk0: Mapping[str, Any] | None) -> int:
    """How many chunks a row has stored, read from its chunk 0 (0: none stored; 1: a vector written without a count
    or with one that is not a number). A count above ``MAX_CHUNKS_PER_ROW`` cannot have been written by the sink:
    it reads as that bound, so the row's chunks are still all covered and the reads stay bounded."""
    if not chunk0:
        return 0
    raw = (chunk0.get("metadata") or {}).get(c.META_CHUNKS)
    try:
        return min(c.MAX_CHUNKS_PER_ROW, max(1, int(raw))) if raw is not None else 1
    except (TypeError, ValueError, OverflowError):
        return 1


def chunk_keys(row_key: str, count: int, *, start: int = 0) -> list[str]:
    """The vector keys of chunks ``start`` .. ``count - 1`` of a row (keys past the length limit cannot exist)."""
    keys = []
    for number in range(start, count):
        try:
            keys.append(chunk_key(row_key, number))
        except PoisonRecordError:
            break
    return keys


# ---- queries: vectors -> rows ---------------------------------------------------------------------------
def query_top_k(k: int) -> int:
    """Vectors to ask QueryVectors for, to return ``k`` rows; past one page the answer continues by nextToken."""
    return min(c.S3V_MAX_TOP_K_PAGED, k * QUERY_OVERFETCH)


@dataclass(frozen=True)
class ChunkHit:
    chunk: int
    key: str
    distance: float | None
    passage: str  # the chunk's text as stored (a prefix when it was too large for the metadata)
    scores: dict[str, Any] | None = None  # full-text and hybrid answers: ``bm25Scores``, ``fused``, ``vectorDistance``


@dataclass
class RowHit:
    key: str  # the row's vector key
    distance: float | None  # of its best chunk
    chunk: int  # its best chunk's number
    passage: str  # its best chunk's text
    metadata: dict[str, Any]  # of its best chunk (the row's columns; the text is that chunk's)
    chunks: list[ChunkHit] = field(default_factory=list)  # every matching chunk of the row, best first
    scores: dict[str, Any] | None = None  # of its best chunk


def group_hits(hits: Iterable[Mapping[str, Any]], k: int, text_field: str) -> list[RowHit]:
    """QueryVectors answers (best first) -> at most ``k`` rows, best first, each with its matching chunks."""
    rows: dict[str, RowHit] = {}
    for hit in hits:
        row_key, number = split_chunk_key(str(hit["key"]))
        metadata = dict(hit.get("metadata") or {})
        distance = hit.get("distance")
        distance = None if distance is None else float(distance)
        passage = str(metadata.get(text_field) or "")
        scores = hit.get("scores")
        chunk = ChunkHit(number, str(hit["key"]), distance, passage, scores)
        row = rows.get(row_key)
        if row is None:
            if len(rows) == k:
                continue
            rows[row_key] = RowHit(row_key, distance, number, passage, metadata, [chunk], scores)
        else:
            row.chunks.append(chunk)
    return list(rows.values())
