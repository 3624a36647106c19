"""``freshvec init``: read an existing table's schema and write a complete, validated pipeline config.

PostgreSQL: the catalog (columns and types, SERIAL/identity, NOT NULL, the primary key, the publications that
include the table, its replica identity) and ``wal_level``; Amazon Keyspaces: ``system_schema`` (columns,
partition and clustering keys) and the table's CDC settings. A sample of rows decides the embedded text
(``freshvec.cli.init_proposal``); every choice is printed with its reason, the config is validated by the
same rules as every other command (``PipelineConfig.from_dict``) and written to ``cdk.json`` (its
``context.freshvec``, the other keys kept) or, for any other file name, as a bare config document.

Passwords are never written: the commands that connect take them from ``--pg-url`` or ``FRESHVEC_PG_PASSWORD``
/ ``PGPASSWORD``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from freshvec.adapters import postgres as pg_adapter
from freshvec.cli import console, keyspaces, settings
from freshvec.cli.errors import OperatorError
from freshvec.cli.init_proposal import Proposal, ShapeColumn, TableShape, build_config, propose
from freshvec.config import CONTEXT_KEY, DEFAULT_CONFIG, ConfigError, PipelineConfig, PostgresConnectionConfig
from freshvec.errors import TransientError
from freshvec.sources.keyspaces import schema as ks_schema
from freshvec.sources.keyspaces.cqltypes import parse_cql_type
from freshvec.sources.postgres import catalog
from freshvec.sources.postgres import types as pgtypes
from freshvec.sources.postgres.session import prepare_session, qualified, quote_ident

DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "cdk.json"  # the file every other command reads
DEFAULT_PUBLICATION = "freshvec"


class InitSource(StrEnum):
    POSTGRES = "postgres"
    KEYSPACES = "keyspaces"


def init_command(
    table: Annotated[str, typer.Option("--table", "-t", help="The table: name, or schema.name / keyspace.name.")],
    *,
    source: Annotated[
        InitSource | None,
        typer.Option(
            "--source",
            case_sensitive=False,
            help="postgres or keyspaces [default: postgres with --pg-url/--host, keyspaces with --keyspace]",
        ),
    ] = None,
    pg_url: Annotated[
        str | None,
        typer.Option(
            "--pg-url", envvar="FRESHVEC_PG_URL", help="postgresql://user[:password]@host[:port]/database[?sslmode=...]"
        ),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="PostgreSQL host (instead of --pg-url)")] = None,
    port: Annotated[int | None, typer.Option("--port", help="PostgreSQL port [default: 5432]")] = None,
    database: Annotated[str | None, typer.Option("--database", "--db", help="PostgreSQL database")] = None,
    user: Annotated[str | None, typer.Option("--user", help="PostgreSQL user")] = None,
    sslmode: Annotated[
        str | None,
        typer.Option(
            "--sslmode",
            help="verify-full, verify-ca, require or disable [default: disable on "
            "127.0.0.1/localhost, else verify-full]",
        ),
    ] = None,
    schema: Annotated[str, typer.Option("--schema", help="PostgreSQL schema (or give schema.table)")] = "public",
    keyspace: Annotated[str | None, typer.Option("--keyspace", help="Amazon Keyspaces keyspace")] = None,
    ca_bundle: Annotated[Path | None, typer.Option("--ca-bundle", help="PEM CA bundle for TLS")] = None,
    embedding_field: Annotated[
        str | None, typer.Option("--embedding-field", help="The text column to embed [default: the longest text]")
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option(
            "--metadata", help="Comma-separated metadata columns ('' for none) [default: every other filterable column]"
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write: a cdk.json gets its context.freshvec replaced, any "
            "other file the bare config [default: this checkout's cdk.json]",
        ),
    ] = None,
    stack_name: Annotated[str, typer.Option("--stack-name", help="CloudFormation stack name to write")] = "freshvec",
    sample_rows: Annotated[int, typer.Option("--sample-rows", min=1, help="Rows to measure text lengths on")] = 200,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Write without asking, replacing an existing config")
    ] = False,
) -> None:
    """Read an existing table's schema and write a validated config for it (prints what it chose and why)."""
    kind = _source_kind(source, pg_url, host, keyspace)
    wanted_metadata = None if metadata is None else [name.strip() for name in metadata.split(",") if name.strip()]
    if kind is InitSource.POSTGRES:
        connection, password = _pg_connection(
            pg_url, host=host, port=port, database=database, user=user, sslmode=sslmode, ca_bundle=ca_bundle
        )
        shape, document, checks, proposal = _from_postgres(
            connection,
            password,
            schema=schema,
            table=table,
            embedding_field=embedding_field,
            metadata=wanted_metadata,
            stack_name=stack_name,
            sample_rows=sample_rows,
        )
    else:
        if keyspace is None and "." not in table:
            raise OperatorError("--keyspace is required for an Amazon Keyspaces table (or give keyspace.table)")
        ks_name, ks_table = table.split(".", 1) if "." in table else (str(keyspace), table)
        shape, document, checks, proposal = _from_keyspaces(
            ks_name,
            ks_table,
            ca_bundle=ca_bundle,
            embedding_field=embedding_field,
            metadata=wanted_metadata,
            stack_name=stack_name,
            sample_rows=sample_rows,
        )
    config = PipelineConfig.from_dict(document)  # the same validation every command applies
    target = output or DEFAULT_OUTPUT
    out = console.out
    out.print(f"table {shape.name} ({shape.source}): {len(shape.columns)} columns")
    for column in shape.columns:
        out.print(f"  {column.name:<24} {column.type}" + (f"  ({column.note})" if column.note else ""))
    for line in checks:
        out.print(line)
    for line in proposal.reasons:
        out.print(line)
    out.print(f"config valid: embedding {config.embedding_field!r}, index {config.vector_store.index_name!r}")
    _write(target, document, yes=yes)
    out.print(f"wrote the config to {target}" + (f" ({CONTEXT_KEY} in its context)" if _is_cdk_json(target) else ""))
    _next_steps(kind, target)


# ---- PostgreSQL ----------------------------------------------------------------------------------
def _pg_connection(
    url: str | None,
    *,
    host: str | None,
    port: int | None,
    database: str | None,
    user: str | None,
    sslmode: str | None,
    ca_bundle: Path | None,
) -> tuple[PostgresConnectionConfig, str | None]:
    try:
        connection, password = pg_adapter.connection_from_url(url or "postgresql://")
    except ValueError as exc:
        raise OperatorError(f"--pg-url: {exc}") from exc
    overrides: dict[str, Any] = {
        name: value
        for name, value in (("host", host), ("port", port), ("database", database), ("user", user))
        if value is not None
    }
    if host is not None and url is None and sslmode is None:
        overrides["sslmode"] = "disable" if host in pg_adapter.LOOPBACK_HOSTS else "verify-full"
    if sslmode is not None:
        overrides["sslmode"] = sslmode
    if ca_bundle is not None:
        overrides["ca_bundle"] = str(ca_bundle)
    connection = dataclasses.replace(connection, **overrides)
    return connection, password or pg_adapter.password_from_environment(connection)


def _from_postgres(
    connection: PostgresConnectionConfig,
    password: str | None,
    *,
    schema: str,
    table: str,
    embedding_field: str | None,
    metadata: list[str] | None,
    stack_name: str,
    sample_rows: int,
) -> tuple[TableShape, dict[str, Any], list[str], Proposal]:
    if "." in table:
        schema, table = table.split(".", 1)
    try:
        conn = pg_adapter.connect(connection, password)
    except TransientError as exc:
        raise OperatorError(f"{exc} (is the server running? check --pg-url/--host and --port)") from exc
    try:
        prepare_session(conn)
        described = catalog.describe_table(conn, schema, table)
        lengths, sampled = catalog.text_lengths(conn, described, catalog.text_columns(described), sample_rows)
        rights = _pg_rights(conn, described)
    finally:
        conn.close()
    if not described.primary_key:
        raise OperatorError(
            f"table {described.name} has no primary key; the pipeline keys its vectors by it: "
            f"ALTER TABLE {qualified(schema, table)} ADD PRIMARY KEY (...)"
        )
    key = set(described.primary_key)
    shape = TableShape(
        "postgres",
        described.name,
        tuple(_pg_shape_column(col, col.name in key) for col in described.columns),
        lengths,
        sampled,
    )
    proposal = propose(shape, embedding_field, metadata)
    publication = _publication(described)
    connection_doc = {
        "host": connection.host,
        "port": connection.port,
        "database": connection.database,
        "user": connection.user,
        "sslmode": connection.sslmode,
    }
    if connection.ca_bundle:
        connection_doc["ca_bundle"] = connection.ca_bundle
    source = {
        "kind": "postgres",
        "postgres": {
            "schema": schema,
            "table": table,
            "columns": {col.name: col.type for col in shape.columns},
            "primary_key": list(described.primary_key),
            "publication": publication,
            "slot": "freshvec",
            "connection": connection_doc,
        },
    }
    document = build_config(shape, proposal, source=source, stack_name=stack_name)
    return shape, document, [*_pg_checks(described, publication), *rights], proposal


def _pg_shape_column(column: catalog.PgColumn, is_key: bool) -> ShapeColumn:
    family = pgtypes.family(column.type)
    flags = ("primary key" if is_key else "", "NOT NULL" if column.not_null else "",
             "numbered by the server" if column.serial else "")  # fmt: skip
    notes = [part for part in flags if part]
    if family is None:
        notes.append("type unknown to freshvec: carried as its text")
    return ShapeColumn(
        name=column.name,
        type=column.config_type,
        is_text=family == "text",
        is_key=is_key,
        filterable=family not in (None, "bytea", "json"),
        bounded="(" in column.type,
        note=", ".join(notes),
    )


def _publication(table: catalog.PgTable) -> str:
    if DEFAULT_PUBLICATION in table.publications or not table.publications:
        return DEFAULT_PUBLICATION
    return table.publications[0]


def _pg_checks(table: catalog.PgTable, publication: str) -> list[str]:
    where = qualified(table.schema, table.table)
    lines = [f"primary key: ({', '.join(table.primary_key)}): ok"]
    if table.wal_level == "logical":
        lines.append("wal_level: logical: ok")
    else:
        lines.append(
            f"wal_level: {table.wal_level}: needs logical (ALTER SYSTEM SET wal_level = logical, then restart; "
            "RDS/Aurora: rds.logical_replication = 1)"
        )
    if table.replica_identity == "FULL":
        lines.append("replica identity: FULL: ok")
    else:
        lines.append(
            f"replica identity: {table.replica_identity}: the pipeline sets FULL at start (ALTER TABLE {where} "
            "REPLICA IDENTITY FULL; needs the table's owner)"
        )
    if publication in table.publications:
        lines.append(f"publication: {publication} includes the table: ok")
    else:
        lines.append(
            f"publication: none includes the table yet; `freshvec local up --attach` creates {publication} "
            f"(or: CREATE PUBLICATION {quote_ident(publication)} FOR TABLE {where})"
        )
    return lines


def _pg_rights(conn: Any, table: catalog.PgTable) -> list[str]:
    role = conn.run("SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user")[0][0]
    if role:
        return ["replication: this role may use replication slots: ok"]
    return ["replication: this role may not use replication slots: ALTER ROLE ... REPLICATION (RDS: GRANT "
            "rds_replication TO ...)"]  # fmt: skip


# ---- Amazon Keyspaces -----------------------------------------------------------------------------
def _from_keyspaces(
    keyspace: str,
    table: str,
    *,
    ca_bundle: Path | None,
    embedding_field: str | None,
    metadata: list[str] | None,
    stack_name: str,
    sample_rows: int,
) -> tuple[TableShape, dict[str, Any], list[str], Proposal]:
    cluster, session = keyspaces.connect_table(settings.settings().resolved_region(), ca_bundle)
    try:
        described = ks_schema.describe_table(session, keyspace, table)
        texts = [col.name for col in described.columns if col.supported and parse_cql_type(col.type).is_text]
        lengths, sampled = ks_schema.text_lengths(session, described, texts, sample_rows)
    finally:
        if cluster is not None:
            cluster.shutdown()
    keys = set(described.partition_key) | set(described.clustering_key)
    order = {"partition_key": 0, "clustering": 1}  # keys first in key order, then the rest as system_schema lists them
    columns = []
    for col in sorted(described.columns, key=lambda c: (order.get(c.kind, 2), c.position if c.kind in order else 0)):
        parsed = parse_cql_type(col.type) if col.supported else None
        notes = [_KS_KIND_NOTES.get(col.kind, ""), "" if col.supported else "type not supported: left out"]
        columns.append(
            ShapeColumn(
                name=col.name,
                type=col.type,
                is_text=bool(parsed and parsed.is_text),
                is_key=col.name in keys,
                filterable=bool(parsed) and col.type not in ("blob", "duration", "counter"),
                note=", ".join(part for part in notes if part),
            )
        )
    shape = TableShape("keyspaces", described.name, tuple(columns), lengths, sampled)
    usable = TableShape("keyspaces", described.name, tuple(c for c in columns if "left out" not in c.note),
                        lengths, sampled)  # fmt: skip
    proposal = propose(usable, embedding_field, metadata)
    tables = {
        "keyspace": keyspace,
        "table": table,
        "columns": {col.name: col.type for col in usable.columns},
        "partition_key": list(described.partition_key),
        "clustering_key": list(described.clustering_key),
    }
    document = build_config(usable, proposal, keyspaces=tables, stack_name=stack_name)
    return shape, document, _ks_checks(described), proposal


_KS_KIND_NOTES = {"partition_key": "partition key", "clustering": "clustering key", "static": "static"}


def _ks_checks(table: ks_schema.KsTable) -> list[str]:
    lines = [
        f"primary key: partition ({', '.join(table.partition_key)})"
        + (f", clustering ({', '.join(table.clustering_key)})" if table.clustering_key else "")
    ]
    enable = (
        f"ALTER TABLE {table.keyspace}.{table.table} WITH cdc = true AND CUSTOM_PROPERTIES = "
        f"{{'cdc_specification': {{'view_type': '{ks_schema.CDC_VIEW_TYPE}'}}}}"
    )
    if table.cdc_status == "ENABLED" and table.cdc_view_type == ks_schema.CDC_VIEW_TYPE:
        lines.append(f"CDC: on ({table.cdc_view_type}): ok")
    elif table.cdc_status == "ENABLED":
        lines.append(f"CDC: on with {table.cdc_view_type}; the pipeline needs {ks_schema.CDC_VIEW_TYPE}")
    elif table.cdc_status == "unknown":
        lines.append("CDC: unknown (no system_schema_mcs: not Amazon Keyspaces)")
    else:
        lines.append(f"CDC: {table.cdc_status.lower()}; the pipeline needs it on: {enable}")
    return lines


# ---- output --------------------------------------------------------------------------------------
def _is_cdk_json(path: Path) -> bool:
    return path.name == "cdk.json"


def _write(target: Path, document: dict[str, Any], *, yes: bool) -> None:
    """Into a cdk.json's context (other keys kept), else the bare document; an existing config is replaced only
    with --yes or a yes at the prompt."""
    existing: Any = None
    if target.exists():
        try:
            existing = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OperatorError(f"{target} exists and is not JSON ({exc}); choose another --output") from exc
    if _is_cdk_json(target):
        whole = existing if isinstance(existing, dict) else {"app": ".venv/bin/python app.py"}
        before = whole.get("context", {}).get(CONTEXT_KEY) if isinstance(whole.get("context"), dict) else None
        had = before is not None and not _is_the_sample(before)
        if before is not None and not had:
            console.out.print(f"replacing the sample movies config in {target} (git checkout cdk.json brings it back)")
        whole.setdefault("context", {})[CONTEXT_KEY] = document
        text = json.dumps(whole, indent=2) + "\n"
    else:
        had = existing is not None
        text = json.dumps(document, indent=2) + "\n"
    if had and not yes:
        if not sys.stdin.isatty():
            raise OperatorError(f"{target} already holds a freshvec config (not the sample); pass --yes to replace it")
        if not typer.confirm(f"replace the freshvec config in {target}?", default=False):
            raise typer.Exit(1)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def _is_the_sample(raw: Any) -> bool:
    """Whether a config is the sample movie table this checkout ships (replaced without asking)."""
    try:
        return PipelineConfig.from_dict(raw).to_dict() == PipelineConfig.from_dict(DEFAULT_CONFIG).to_dict()
    except (ConfigError, TypeError, ValueError):
        return False


def _next_steps(kind: InitSource, target: Path) -> None:
    config_flag = "" if target.resolve() == DEFAULT_OUTPUT else f" --config {target}"
    out = console.out
    if kind is InitSource.POSTGRES:
        out.print("the password is not written to the config: the next commands read it from PGPASSWORD (or "
                  "FRESHVEC_PG_PASSWORD, or --pg-url)")  # fmt: skip
        out.print("next:")
        out.print(f"  freshvec local up --attach{config_flag}   # your table, indexed locally (leave it running)")
        out.print("  freshvec --local query 'what to look for'      # in another terminal")
    else:
        out.print("next: cdk deploy (docs/deploy.md), then freshvec query 'what to look for'")


def _source_kind(source: InitSource | None, pg_url: str | None, host: str | None, keyspace: str | None) -> InitSource:
    if source is not None:
        return source
    if pg_url or host:
        return InitSource.POSTGRES
    if keyspace:
        return InitSource.KEYSPACES
    raise OperatorError("say where the table is: --pg-url (or --host) for PostgreSQL, --keyspace for Amazon Keyspaces")
