"""A migration to the next index generation, as numbers: what it must embed, what it may copy, what it costs and
how long it takes on each path, which path is better and why; and the comparison that gates the switch.

``Census`` is counted from the table (the next generation's chunks and fingerprints) and the active index (which
of those fingerprints it already holds: those chunks are copied, never embedded). ``plan`` turns it into cost
and time with ``Rates`` — prices dated in ``freshvec.pricing``, the account's on-demand quota, the index's
write limit — for the two paths:

- **on demand**: the sink embeds under the adaptive pacing; time is bound by the Bedrock quota (requests a
  minute, one text per Titan request, 96 per Cohere request) or by the index's write limit (2,500 vectors a
  second), whichever is slower;
- **batch**: Bedrock batch inference at about half the price; a job needs at least the model's minimum number
  of records, takes hours to be scheduled and run, and the writes still go through the index's limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from freshvec import constants as c

CHARS_PER_TOKEN = 4  # an estimate for English prose; the plan says it is one
BINDING_QUOTA = "bedrock on-demand quota"
BINDING_INDEX = "index write limit (2,500 vectors/s)"
BINDING_BATCH = "batch job turnaround"


@dataclass
class Census:
    rows: int = 0
    rows_with_text: int = 0
    chunks: int = 0  # vectors the next generation will hold
    distinct_chunks: int = 0  # distinct fingerprints among them (identical texts are embedded once)
    copyable_chunks: int = 0  # distinct fingerprints the active generation already holds: copied, not embedded
    rows_copyable: int = 0  # rows whose every chunk is copied
    chars_to_embed: int = 0

    @property
    def chunks_to_embed(self) -> int:
        return self.distinct_chunks - self.copyable_chunks

    @property
    def tokens_to_embed(self) -> int:
        return math.ceil(self.chars_to_embed / CHARS_PER_TOKEN)

    @property
    def reembed_avoided_share(self) -> float:
        """Share of the rows with text whose every chunk already existed (by fingerprint) and is copied."""
        return self.rows_copyable / self.rows_with_text if self.rows_with_text else 0.0

    def add_row(self, fingerprints: Sequence[str], texts: Sequence[str], existing: set[str], seen: set[str]) -> None:
        """Count one row's chunks (``fingerprints[i]`` of ``texts[i]``); ``existing``: the active index's
        fingerprints; ``seen``: the fingerprints counted so far (updated)."""
        self.rows += 1
        if not fingerprints:
            return
        self.rows_with_text += 1
        self.chunks += len(fingerprints)
        self.rows_copyable += all(fp in existing for fp in fingerprints)
        for fp, text in zip(fingerprints, texts, strict=True):
            if fp in seen:
                continue
            seen.add(fp)
            self.distinct_chunks += 1
            if fp in existing:
                self.copyable_chunks += 1
            else:
                self.chars_to_embed += len(text)


@dataclass(frozen=True)
class Rates:
    ondemand_usd_per_1k_tokens: float
    batch_usd_per_1k_tokens: float
    prices_date: str
    requests_per_minute: float  # the account's on-demand InvokeModel quota for the model
    texts_per_request: int  # 1 (Titan, Nova) or 96 (Cohere)
    batch_min_records: int
    batch_max_records: int
    batch_limits_source: str = "documented defaults"
    batch_hours: float = 6.0  # scheduling plus run time of a job: an assumption, stated in the plan
    index_vectors_per_s: float = c.S3V_INDEX_VECTORS_PER_S
    prices_known: bool = True  # False: the model has no dated price (costs show 0)
    tokens_per_minute: float | None = None  # the account's on-demand token quota, where the model has one
    quota_source: str = "documented default"


@dataclass
class PathEstimate:
    usd: float
    seconds: float
    binding: str  # the limit that decides the time
    possible: bool = True
    why_not: str = ""


@dataclass
class MigrationPlan:
    census: Census
    rates: Rates
    ondemand: PathEstimate
    batch: PathEstimate
    recommended: str  # "ondemand" | "batch"
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        census = asdict(self.census) | {
            "chunks_to_embed": self.census.chunks_to_embed,
            "tokens_to_embed_estimate": self.census.tokens_to_embed,
            "reembed_avoided_share": round(self.census.reembed_avoided_share, 4),
        }
        return {
            "census": census,
            "rates": asdict(self.rates),
            "ondemand": asdict(self.ondemand),
            "batch": asdict(self.batch),
            "recommended": self.recommended,
            "reason": self.reason,
            **self.extra,
        }


def plan(census: Census, rates: Rates) -> MigrationPlan:
    tokens = census.tokens_to_embed
    write_s = census.chunks / rates.index_vectors_per_s
    requests = math.ceil(census.chunks_to_embed / max(1, rates.texts_per_request))
    quota_s = requests / (rates.requests_per_minute / 60) if requests else 0.0
    if rates.tokens_per_minute:  # a token quota binds too, where the account has one
        quota_s = max(quota_s, tokens / (rates.tokens_per_minute / 60))
    ondemand = PathEstimate(
        usd=tokens / 1000 * rates.ondemand_usd_per_1k_tokens,
        seconds=max(quota_s, write_s),
        binding=BINDING_QUOTA if quota_s >= write_s else BINDING_INDEX,
    )
    to_embed = census.chunks_to_embed
    jobs = math.ceil(to_embed / rates.batch_max_records) if to_embed else 0
    batch = PathEstimate(
        usd=tokens / 1000 * rates.batch_usd_per_1k_tokens,
        seconds=(rates.batch_hours * 3600 if jobs else 0.0) + write_s,
        binding=BINDING_BATCH if jobs else BINDING_INDEX,
    )
    if to_embed < rates.batch_min_records:
        batch.possible = False
        batch.why_not = (
            f"{to_embed} text(s) to embed is below the batch minimum of {rates.batch_min_records} records per job "
            f"({rates.batch_limits_source})"
        )
    saving = ondemand.usd - batch.usd
    if not batch.possible:
        recommended, reason = "ondemand", batch.why_not
    elif ondemand.seconds > batch.seconds:
        recommended = "batch"
        reason = f"the on-demand path would take longer ({_hours(ondemand.seconds)}, bound by the {ondemand.binding})"
    elif saving >= 1.0:
        recommended = "batch"
        reason = f"it saves ${saving:,.2f} ({_hours(batch.seconds)} against {_hours(ondemand.seconds)} on demand)"
    else:
        recommended = "ondemand"
        reason = f"batch would save only ${saving:,.2f} and take {_hours(batch.seconds)}"
    return MigrationPlan(census, rates, ondemand, batch, recommended, reason, {"batch_jobs": jobs})


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.1f} min"


# ---- the comparison ---------------------------------------------------------------------------------------
def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """The share of the top ``k`` rows two generations agree on (order ignored); 1.0 when both found nothing."""
    top_a, top_b = set(a[:k]), set(b[:k])
    if not top_a and not top_b:
        return 1.0
    return len(top_a & top_b) / k


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def judged_metrics(
    runs: Mapping[str, Mapping[str, Sequence[tuple[str, float]]]],
    qrels: Mapping[str, Mapping[str, int]],
    k: int,
) -> dict[str, dict[str, float]]:
    """recall@k and nDCG@k per generation with ir-measures (the TREC definitions); ``runs[generation][query]`` is
    the ranked ``(row, score)`` list, ``qrels[query][row]`` the judged relevance (0 = not relevant)."""
    import ir_measures  # deferred: only compare with a judgment file needs it
    from ir_measures import R, nDCG

    measures = [R @ k, nDCG @ k]
    qrel_list = [ir_measures.Qrel(q, d, int(rel)) for q, docs in qrels.items() for d, rel in docs.items()]
    results: dict[str, dict[str, float]] = {}
    for generation, run in runs.items():
        scored = [ir_measures.ScoredDoc(q, d, float(s)) for q, docs in run.items() for d, s in docs if q in qrels]
        found = ir_measures.calc_aggregate(measures, qrel_list, scored)
        results[generation] = {f"recall@{k}": float(found[R @ k]), f"ndcg@{k}": float(found[nDCG @ k])}
    return results
