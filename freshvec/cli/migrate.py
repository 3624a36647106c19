"""``freshvec migrate``: move readers to the next index generation with no downtime, one step per command.

``plan`` counts what the next generation needs and prices both paths; ``start`` fills it from the table (on
demand through the sink, or with Bedrock batch jobs whose vectors ride in the re-syncs); ``status`` reconciles
every live generation; ``compare`` runs a query set against both; ``cutover`` and ``rollback`` rewrite the index
pointer; ``finish`` retires the generation readers left. Every step is idempotent and resumes after a crash from
``.freshvec/migration-<stack>-<stack id>.json`` (``freshvec.cli.migrate_state``). docs/migrations.md has the guarantees.

Size: the seven commands share one context (stack, pointer, progress file) and their printing; the work of the
two longest (filling, comparing) lives in ``migrate_fill`` and ``migrate_compare``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from freshvec import constants as c
from freshvec import migration, pricing
from freshvec.adapters.service_quotas import OnDemandRate, bedrock_quota_values, on_demand_rate
from freshvec.chunking import expected_chunks
from freshvec.cli import console, generations, local_client, migrate_compare, migrate_fill, reconcile, resync
from freshvec.cli.errors import OperatorError
from freshvec.cli.local_client import local_batch_clients
from freshvec.cli.migrate_context import Context, load_context
from freshvec.cli.migrate_state import MigrationState
from freshvec.cli.stack import StackResources
from freshvec.errors import FreshvecError
from freshvec.generations import Generation, generation_named, same_fingerprint_space
from freshvec.ports import BatchLimits
from freshvec.retry import RetryPolicy

migrate_app = typer.Typer(
    help="Move readers to the next index generation: plan, start, status, compare, cutover, rollback, finish.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

StateOption = Annotated[
    Path | None, typer.Option("--state", help="Migration progress file [.freshvec/migration-<stack>-<stack id>.json]")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]
SegmentsOption = Annotated[int, typer.Option("--segments", min=1, max=4096, help="Table segments read in parallel")]
CaOption = Annotated[Path | None, typer.Option("--ca-bundle", help="PEM trust store for Keyspaces TLS")]


# ---- plan ---------------------------------------------------------------------------------------------------
def census(ctx: Context, session: Any, segments: int) -> migration.Census:
    """Count the next generation's chunks from the table; the active generation's fingerprints are copied."""
    nxt, current = ctx.next_generation, ctx.current_generation
    existing: set[str] = set()
    if same_fingerprint_space(current.config, nxt.config):
        for source in reconcile.index_pages(ctx.clients("s3vectors"), ctx.scoped(current), 1):
            for page in source():
                existing.update(
                    fp for v in page if isinstance(fp := (v.get("metadata") or {}).get(c.META_FINGERPRINT), str)
                )
    scoped = ctx.scoped(nxt)
    limit = c.input_char_limit(nxt.config.embedding.provider, nxt.config.embedding.model_id)
    found = migration.Census()
    seen: set[str] = set()
    with console.progress_eta() as progress:
        task = progress.add_task("table rows", total=None)
        for source in reconcile.table_pages(scoped, session, segments):
            for page in source():
                for row, _version in page:
                    key = resync.checked_vector_key(row, nxt.config)
                    text = row.get(nxt.config.embedding_field)
                    chunks = expected_chunks(nxt.config, key, text, max_input_chars=limit) if key else []
                    found.add_row([ch.fingerprint for ch in chunks], [ch.text for ch in chunks], existing, seen)
                progress.advance(task, len(page))
    return found


def rates_for(
    generation: Generation,
    requests_per_minute: float | None,
    batch_hours: float,
    limits: BatchLimits | None,
    account: OnDemandRate | None = None,
) -> migration.Rates:
    """The plan's rates: dated prices, the on-demand quota (``--requests-per-minute``, else the account's from
    Service Quotas, else the documented default) and the model's records per batch job."""
    model = generation.config.embedding.model_id
    provider = generation.config.embedding.provider
    low, high = (limits.min_records, limits.max_records) if limits else c.BATCH_DEFAULT_RECORDS
    rpm = requests_per_minute or (account.requests_per_minute if account else None)
    return migration.Rates(
        ondemand_usd_per_1k_tokens=pricing.ondemand_usd_per_1k_tokens(model),
        batch_usd_per_1k_tokens=pricing.batch_usd_per_1k_tokens(model),
        prices_date=pricing.PRICES_DATE,
        requests_per_minute=rpm or pricing.DEFAULT_REQUESTS_PER_MINUTE.get(model, 6_000),
        tokens_per_minute=account.tokens_per_minute if account and not requests_per_minute else None,
        quota_source="--requests-per-minute"
        if requests_per_minute
        else ", ".join(account.quota_names)
        if account
        else "documented default",
        texts_per_request=c.COHERE_MAX_TEXTS_PER_CALL if provider == "cohere" else 1,
        batch_min_records=low,
        batch_max_records=high,
        batch_limits_source=limits.source if limits else "documented defaults",
        batch_hours=batch_hours,
        prices_known=provider == "local" or pricing.priced(model),
    )


def account_rate(ctx: Context, generation: Generation) -> OnDemandRate | None:
    """The account's on-demand quota for the model, from Service Quotas (None: not readable or not listed)."""
    try:
        quotas = local_batch_clients(ctx.resources)[1] if ctx.resources.is_local else ctx.clients("service-quotas")
    except OperatorError:
        return None
    values = bedrock_quota_values(quotas, RetryPolicy().call)
    return on_demand_rate(values, generation.config.embedding.model_id) if values else None


def batch_limits(ctx: Context, generation: Generation) -> BatchLimits | None:
    """The model's records per job (Service Quotas through the batch adapter); None: the documented defaults."""
    try:
        return migrate_fill.batch_jobs_for(ctx, generation).limits()
    except (OperatorError, FreshvecError) as exc:
        console.err.print(f"batch limits: {exc}; using the documented defaults")
        return None


def plan_command(
    *,
    requests_per_minute: Annotated[
        float | None,
        typer.Option(
            "--requests-per-minute",
            min=1,
            help="The account's on-demand quota [default: read from Service Quotas, else the documented one]",
        ),
    ] = None,
    batch_hours: Annotated[float, typer.Option("--batch-hours", min=0, help="Assumed batch job turnaround")] = 6.0,
    segments: SegmentsOption = 16,
    as_json: JsonOption = False,
    ca_bundle: CaOption = None,
    state_file: StateOption = None,
) -> None:
    """Rows, chunks and tokens the next generation needs; cost and time on demand and in batch; the path to take."""
    ctx = load_context(state_file)
    nxt = ctx.next_generation
    close, session = (
        (None, None) if ctx.resources.is_local else resync.connect_table(ctx.resources, ctx.clients, ca_bundle)
    )
    try:
        counted = census(ctx, session, segments)
    finally:
        if close is not None:
            close()
    rates = rates_for(nxt, requests_per_minute, batch_hours, batch_limits(ctx, nxt), account_rate(ctx, nxt))
    found = migration.plan(counted, rates)
    state = ctx.state()
    state.plan = found.as_json()
    state.done("plan")
    if as_json:
        console.out.print_json(json.dumps({"from": ctx.pointer.active, "to": nxt.name, **found.as_json()}))
        return
    n = found.census
    console.out.print(
        f"migration {ctx.pointer.active} -> {nxt.name} ({nxt.index_name}, {nxt.config.embedding.model_id})"
    )
    console.out.print(
        f"  {n.rows:,} row(s), {n.rows_with_text:,} with text; {n.chunks:,} chunk(s), {n.distinct_chunks:,} distinct; "
        f"{n.copyable_chunks:,} copied from {ctx.resources.config.generation} (same fingerprint), "
        f"{n.chunks_to_embed:,} to embed, ~{n.tokens_to_embed:,} tokens (4 characters a token)"
    )
    for name, path in (("on demand", found.ondemand), ("batch", found.batch)):
        line = f"  {name:<9} ${path.usd:,.4f}  {path.seconds / 60:,.1f} min, bound by the {path.binding}"
        console.out.print(line + ("" if path.possible else f" — not possible: {path.why_not}"))
    console.out.print(
        f"  prices of {found.rates.prices_date}; recommended: {found.recommended}, because {found.reason}"
    )


# ---- start --------------------------------------------------------------------------------------------------
def start_command(
    *,
    path: Annotated[str, typer.Option("--path", help="auto (the plan's recommendation), ondemand or batch")] = "auto",
    rate: Annotated[float, typer.Option("--rate", min=1, help="At most this many rows a second to Kinesis")] = 500,
    segments: SegmentsOption = 16,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Segments read in parallel")] = 4,
    wait_s: Annotated[float, typer.Option("--wait", min=0, help="Local mode: wait this long for the sink")] = 600,
    ca_bundle: CaOption = None,
    state_file: StateOption = None,
) -> None:
    """Fill the next generation from the table (re-syncs for it only: live changes made meanwhile win)."""
    if path not in ("auto", "ondemand", "batch"):
        raise OperatorError(f"--path {path!r}: choose auto, ondemand or batch")
    ctx = load_context(state_file)
    state = ctx.state()
    if state.phase in ("filled", "cutover", "rolled_back"):
        console.out.print(f"generation {state.target} is already filled ({state.rows_sent:,} row(s) sent)")
        return
    chosen = path if path != "auto" else state.fill_path or state.plan.get("recommended", "ondemand")
    state.fill_path = chosen
    state.phase = "filling"
    state.save()
    sent = migrate_fill.fill(ctx, state, chosen, rate=rate, segments=segments, workers=workers, ca_bundle=ca_bundle)
    if ctx.resources.is_local:
        _wait_local(ctx.resources, wait_s)
    state.rows_sent = sent
    state.done("start", "filled")
    console.out.print(
        f"generation {state.target} filled on the {chosen} path: {sent:,} row(s) re-synced for it"
        + ("" if ctx.resources.is_local else "; the sink applies them now (see `freshvec migrate status`)")
    )


def _wait_local(resources: StackResources, wait_s: float) -> None:
    try:
        local_client.control_request(resources, "POST", "sync", {"timeout": max(1, int(wait_s))})
    except OperatorError as exc:
        raise OperatorError(f"the local sink did not catch up within {wait_s:.0f} s: {exc}") from exc


# ---- status -------------------------------------------------------------------------------------------------
def status_command(
    *,
    segments: SegmentsOption = 16,
    as_json: JsonOption = False,
    ca_bundle: CaOption = None,
    state_file: StateOption = None,
) -> None:
    """Per generation: rows in sync, missing and stale; batch jobs; cost so far against the plan."""
    ctx = load_context(state_file)
    state = MigrationState.load(ctx.state_path)
    reports: dict[str, Any] = {}
    close, session = (
        (None, None) if ctx.resources.is_local else resync.connect_table(ctx.resources, ctx.clients, ca_bundle)
    )
    try:
        for generation in generations.chosen(ctx.resources, None):
            scoped = ctx.scoped(generation)
            sides = reconcile.sides_for(scoped, ctx.clients, session, segments=segments, index_segments=1)
            reports[generation.name] = reconcile.reconcile(scoped, sides, show=3)
    finally:
        if close is not None:
            close()
    doc = {
        "active": ctx.pointer.active,
        "pointer": generations.describe(ctx.pointer),
        "phase": state.phase if state else None,
        "path": state.fill_path if state else None,
        "generations": {name: r.as_json() for name, r in reports.items()},
        "jobs": migrate_fill.job_summary(ctx, state) if state else [],
        "cost": migrate_fill.cost_so_far(state) if state else None,
    }
    if as_json:
        console.out.print_json(json.dumps(doc, default=str))
        return
    console.out.print(f"readers use {ctx.pointer.active}; migration: {doc['phase'] or 'none'} ({doc['path'] or '-'})")
    for name, r in reports.items():
        console.out.print(
            f"  {name}: {r.rows:,} row(s), {r.in_sync:,} vector(s) in sync, {r.counts['missing']:,} missing, "
            f"{r.counts['stale']:,} stale, {r.counts['metadata']:,} metadata, {r.counts['orphan']:,} orphan"
        )
    for job in doc["jobs"]:
        console.out.print(f"  job {job['name']}: {job['status']} ({job['record_count']:,} record(s))")
    if doc["cost"]:
        cost = doc["cost"]
        console.out.print(
            f"  cost so far ~${cost['so_far_usd']:,.4f} of ~${cost['planned_usd']:,.4f} planned ({cost['basis']})"
        )


# ---- compare ------------------------------------------------------------------------------------------------
def compare_command(
    *,
    queries: Annotated[
        Path | None, typer.Option("--queries", help="Query set: JSON Lines {id, text}, or one a line")
    ] = None,
    sample: Annotated[int, typer.Option("--sample", min=1, max=10_000, help="Without --queries: texts sampled")] = 50,
    k: Annotated[int, typer.Option("--k", min=1, max=c.S3V_MAX_TOP_K, help="Rows compared per query")] = 10,
    judgments: Annotated[
        Path | None, typer.Option("--judgments", help="JSON Lines {query, key: {primary key}, relevance}")
    ] = None,
    min_overlap: Annotated[float | None, typer.Option("--min-overlap", min=0, max=1, help="Fail below this")] = None,
    min_recall: Annotated[float | None, typer.Option("--min-recall", min=0, max=1, help="Fail below this")] = None,
    as_json: JsonOption = False,
    ca_bundle: CaOption = None,
    state_file: StateOption = None,
) -> None:
    """Run a query set against both generations: overlap@k, and recall@k and nDCG@k with judgments."""
    ctx = load_context(state_file)
    nxt = ctx.next_generation
    other = ctx.pointer.active if ctx.pointer.active != nxt.name else ctx.resources.config.generation
    sampling = queries is None and not ctx.resources.is_local
    close, session = resync.connect_table(ctx.resources, ctx.clients, ca_bundle) if sampling else (None, None)
    try:
        result = migrate_compare.compare(
            ctx, [generation_named(ctx.resources.config, other), nxt], queries=queries, sample=sample, k=k,
            judgments=judgments, session=session,
        )  # fmt: skip
    finally:
        if close is not None:
            close()
    failures = migrate_compare.below(result, min_overlap=min_overlap, min_recall=min_recall, target=nxt.name)
    if as_json:
        console.out.print_json(json.dumps({**result, "failed": failures}))
    else:
        migrate_compare.print_result(result)
        for failure in failures:
            console.out.print(f"below the gate: {failure}")
    if failures:
        raise typer.Exit(1)


# ---- cutover, rollback, finish --------------------------------------------------------------------------------
def _switch(ctx: Context, to: str, step: str, phase: str) -> None:
    state = ctx.state()
    store = generations.pointer_store(ctx.resources, ctx.clients)
    started = time.monotonic()
    if ctx.pointer.active != to:
        store.write(ctx.pointer.switched_to(to).to_json())
    elapsed = time.monotonic() - started
    state.cutover_s.append(elapsed)
    state.done(step, phase)
    entry = ctx.pointer.entry(to)
    console.out.print(
        f"readers now use generation {to} ({entry.index}); the switch took {elapsed * 1000:,.0f} ms, readers that "
        f"cache the pointer follow within {c.POINTER_CACHE_TTL_S:.0f} s"
    )


def cutover_command(
    force: Annotated[bool, typer.Option("--force", help="Switch although `migrate start` has not finished")] = False,
    state_file: StateOption = None,
) -> None:
    """Point readers at the next generation (one pointer write; no deploy). Both stay exact."""
    ctx = load_context(state_file)
    nxt = ctx.next_generation
    state = ctx.state()
    if state.phase in ("planned", "filling") and not force:
        raise OperatorError(f"generation {nxt.name} is not filled yet ({state.phase}): run `freshvec migrate start`")
    _switch(ctx, nxt.name, "cutover", "cutover")


def rollback_command(state_file: StateOption = None) -> None:
    """Point readers back at the generation they used before (one pointer write); both stay exact."""
    ctx = load_context(state_file)
    state = ctx.state()
    _switch(ctx, state.source, "rollback", "rolled_back")


def finish_command(state_file: StateOption = None) -> None:
    """Retire the generation readers no longer use: the sink stops writing it and its index goes."""
    ctx = load_context(state_file)
    done = MigrationState.load(ctx.state_path)
    if ctx.resources.config.next_generation is None:
        if done is not None and done.phase == "finished":
            console.out.print(f"migration to {done.target} already finished")
            return
        if done is not None and ctx.resources.config.generation in (done.target, done.source):
            done.done("finish", "finished")  # retired before a crash kept it from being recorded
            console.out.print(f"generation {done.source if done.target == ctx.pointer.active else done.target} retired")
            return
        raise OperatorError("no migration to finish: the config has no next generation")
    state = ctx.state()
    retiring = state.source if ctx.pointer.active == state.target else state.target
    if ctx.pointer.active == retiring:
        raise OperatorError(f"readers use {retiring}; cut over or roll back first")
    if ctx.resources.is_local:
        local_client.control_request(ctx.resources, "POST", "generations/retire", {"name": retiring})
        tail = f"its index is deleted; local mode runs on {ctx.pointer.active} alone"
    else:
        from freshvec.generations import abandoned, promoted

        config = promoted(ctx.resources.config) if retiring == state.source else abandoned(ctx.resources.config)
        store = generations.pointer_store(ctx.resources, ctx.clients)
        store.write(ctx.pointer.without(retiring).to_json())
        Path(".freshvec").mkdir(exist_ok=True)
        out = Path(".freshvec") / f"config-{ctx.resources.stack_name}-{ctx.pointer.active}.json"
        out.write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
        tail = (
            f"put {out} in cdk.json's freshvec context and `cdk deploy`: the sink stops writing {retiring} and "
            "CloudFormation deletes its index"
        )
    state.done("finish", "finished")
    console.out.print(f"generation {retiring} retired; {tail}")


def register(app: typer.Typer, wrap: Any) -> None:
    """Add ``freshvec migrate ...`` to the app (``wrap``: the app's error handling and location options)."""
    for name, command in (
        ("plan", plan_command),
        ("start", start_command),
        ("status", status_command),
        ("compare", compare_command),
        ("cutover", cutover_command),
        ("rollback", rollback_command),
        ("finish", finish_command),
    ):
        migrate_app.command(name)(wrap(command))
    app.add_typer(migrate_app, name="migrate")
