"""Local mode on the user's own PostgreSQL: check the table as it is, set only what the pipeline needs.

Each check says its result in one line and, when it cannot go on, fails with a ``PostgresError`` naming what
to run: ``wal_level``, the table and the configured columns, the primary key. What local mode may set it sets
after saying so: replica identity FULL, the table into the config's publication (the publication created
when missing), and a replication slot of its own, ``<slot>_local``, dropped again at stop (the local index
lives only as long as local mode does; a deployed pipeline's slot is never touched). The table itself is
never created, altered in its columns, or emptied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from freshvec.config import PipelineConfig, PostgresConnectionConfig
from freshvec.sources.postgres import catalog
from freshvec.sources.postgres import types as pgtypes
from freshvec.sources.postgres.errors import PostgresError, server_message
from freshvec.sources.postgres.session import qualified, quote_ident

LOCAL_SLOT_SUFFIX = "_local"
MAX_SLOT_NAME = 63

Say = Callable[[str], None]


@dataclass(frozen=True)
class Attachment:
    """The server to attach to: the connection (the config's, or from ``--pg-url``) and its password."""

    connection: PostgresConnectionConfig
    password: str | None


def local_slot(config: PipelineConfig) -> str:
    return (config.postgres.slot[: MAX_SLOT_NAME - len(LOCAL_SLOT_SUFFIX)]) + LOCAL_SLOT_SUFFIX


def attached_config(config: PipelineConfig, attachment: Attachment) -> PipelineConfig:
    """``config`` reading the attached server through local mode's own slot. The password goes into this
    in-memory config only (the forwarder connects with it); whatever is shown or written carries
    ``resources.without_password`` of it."""
    pg = config.postgres
    connection = dataclasses.replace(attachment.connection, password=attachment.password, password_secret_arn=None,
                                     password_secret_kms_key_arn=None)  # fmt: skip
    postgres = dataclasses.replace(pg, connection=connection, slot=local_slot(config))
    return dataclasses.replace(config, source=dataclasses.replace(config.source, postgres=postgres))


def prepare(conn: Any, config: PipelineConfig, say: Say) -> None:
    """Check the attached table and set what the pipeline needs (see the module doc); PostgresError otherwise."""
    pg = config.postgres
    where = qualified(pg.schema, pg.table)
    wal_level = str(conn.run("SHOW wal_level")[0][0])
    if wal_level != "logical":
        raise PostgresError(
            f"wal_level is {wal_level}: logical replication needs logical. Run ALTER SYSTEM SET wal_level = logical "
            "and restart the server (RDS/Aurora: rds.logical_replication = 1 in the parameter group, then reboot)"
        )
    say("wal_level: logical: ok")
    table = catalog.describe_table(conn, pg.schema, pg.table)
    actual = {column.name: column.type for column in table.columns}
    for name, declared in pg.columns.items():
        if name not in actual:
            raise PostgresError(f"column {name!r} is in the config but {table.name} has no such column: "
                                f"{_rewrite_config(config, table)}")  # fmt: skip
        if pgtypes.is_known(declared) and not pgtypes.same_type(declared, actual[name]):
            raise PostgresError(f"column {name!r} of {table.name} is {actual[name]}, but the config says {declared}: "
                                f"{_rewrite_config(config, table)}, or set source.postgres.columns.{name} to "
                                f"{actual[name]!r}")  # fmt: skip
    if not table.primary_key:
        raise PostgresError(f"{table.name} has no primary key: ALTER TABLE {where} ADD PRIMARY KEY (...)")
    if list(table.primary_key) != list(pg.primary_key):
        raise PostgresError(f"the primary key of {table.name} is ({', '.join(table.primary_key)}), but the config "
                            f"says ({', '.join(pg.primary_key)}): {_rewrite_config(config, table)}")  # fmt: skip
    say(f"primary key: ({', '.join(table.primary_key)}): ok")
    _replica_identity(conn, table, pg.set_replica_identity_full, say)
    _publication(conn, table, pg.publication, say)


def _rewrite_config(config: PipelineConfig, table: catalog.PgTable) -> str:
    """What to run to write the config from the table as it is (no password: init reads it as psql does)."""
    c = config.postgres.connection
    url = f"postgresql://{c.user}@{c.host}:{c.port}/{c.database}"
    return f"write the config from the table with `freshvec init --pg-url {url} --table {table.schema}.{table.table}`"


def _replica_identity(conn: Any, table: catalog.PgTable, may_set: bool, say: Say) -> None:
    where = qualified(table.schema, table.table)
    if table.replica_identity == "FULL":
        say("replica identity: FULL: ok")
        return
    statement = f"ALTER TABLE {where} REPLICA IDENTITY FULL"
    if not may_set:
        raise PostgresError(f"replica identity of {table.name} is {table.replica_identity}, not FULL: run {statement}")
    say(f"replica identity: {table.replica_identity}: setting FULL, so updates carry the whole row ({statement})")
    try:
        conn.run(statement)
    except Exception as exc:
        raise PostgresError(
            f"could not set REPLICA IDENTITY FULL ({exc}); the table's owner must run {statement}"
        ) from exc


def _publication(conn: Any, table: catalog.PgTable, publication: str, say: Say) -> None:
    where = qualified(table.schema, table.table)
    if publication in table.publications:
        say(f"publication: {publication} includes {table.name}: ok")
        return
    if conn.run("SELECT 1 FROM pg_publication WHERE pubname = :p", p=publication):
        statement = f"ALTER PUBLICATION {quote_ident(publication)} ADD TABLE {where}"
        say(f"publication: {publication} does not include {table.name}: adding it ({statement})")
    else:
        statement = f"CREATE PUBLICATION {quote_ident(publication)} FOR TABLE {where}"
        say(f"publication: {publication} does not exist: creating it ({statement})")
    try:
        conn.run(statement)
    except Exception as exc:
        raise PostgresError(
            f"could not change the publication ({exc}); the table's owner must run {statement}"
        ) from exc


def claim(conn: Any, slot: str) -> None:
    """Hold a session advisory lock named after the slot on ``conn`` for as long as it is open, so a second
    ``local up --attach`` on the same table cannot drop the first one's slot (a slot read with SQL functions is
    only marked active during each read); the server releases the lock when the connection closes, crash or not."""
    if not conn.run("SELECT pg_try_advisory_lock(hashtext(:k))", k=f"freshvec-local:{slot}")[0][0]:
        raise PostgresError(
            f"another `freshvec local up --attach` is using replication slot {slot} on this database; stop it first"
        )


def make_slot(conn: Any, slot: str, say: Say) -> None:
    """Local mode's own slot, new: an earlier run's leftover (a crash) is dropped first (``claim`` first)."""
    found = conn.run("SELECT 1 FROM pg_replication_slots WHERE slot_name = :s", s=slot)
    if found:
        say(f"replication slot {slot}: left by an earlier local run: dropping it")
        conn.run("SELECT pg_drop_replication_slot(:s)", s=slot)
    try:
        conn.run("SELECT pg_create_logical_replication_slot(:s, 'pgoutput')", s=slot)
    except Exception as exc:
        raise PostgresError(
            f"could not create replication slot {slot} ({server_message(exc)}); the role needs REPLICATION "
            "(ALTER ROLE ... REPLICATION; RDS/Aurora: GRANT rds_replication TO ...) and a free slot "
            "(max_replication_slots)"
        ) from exc
    say(f"replication slot {slot}: created (dropped when local mode stops)")


def drop_slot(conn: Any, slot: str) -> None:
    conn.run("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = :s", s=slot)
