"""PostgreSQL values: text form -> change-event JSON -> metadata, pgoutput decoding, loader text (literal values)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from freshvec.config import PipelineConfig
from freshvec.metadata import MetadataBuilder
from freshvec.sources.postgres import pgoutput as po
from freshvec.sources.postgres import types as t

COLUMNS = {
    "id": "bigint", "body": "text", "price": "numeric(10,2)", "score": "double precision", "day": "date",
    "at": "timestamptz", "doc": "jsonb", "tags": "text[]", "big": "bigint", "odd": "point",
}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "type_text", "expected"),
    [
        ("12.50", "numeric", "12.50"),
        ("NaN", "numeric", "NaN"),
        ("Infinity", "double precision", "Infinity"),
        ("t", "boolean", True),
        ("2024-01-02 03:04:05+00", "timestamptz", "2024-01-02T03:04:05.000Z"),
        ("2024-01-02 03:04:05.000001", "timestamp", "2024-01-02T03:04:05.000001Z"),
        ("{{1,2},{3,NULL}}", "int[]", [[1, 2], [3, None]]),
        ('{"a,b","c\\"d"}', "varchar[]", ["a,b", 'c"d']),
        ("{}", "text[]", []),
        ("\\x00ff", "bytea", "AP8="),
        ("(1,2)", "point", {"$unknown": "point", "value": "(1,2)"}),
        ("not a number", "integer", {"$unknown": "integer", "value": "not a number"}),
    ],
)
def test_text_forms_become_change_event_values(text, type_text, expected):
    assert t.from_text(text, type_text) == expected


def test_metadata_of_a_postgres_row_uses_each_columns_own_type():
    config = PipelineConfig.from_dict(
        {
            "embedding_field": "body",
            "metadata_fields": [name for name in COLUMNS if name != "body"],
            "source": {"kind": "postgres", "postgres": {"table": "docs", "columns": COLUMNS, "primary_key": ["id"]}},
        }
    )
    row = {
        "id": 1, "body": "text", "price": "12.50", "score": 0.5, "day": "2024-02-29", "at": "1970-01-01T00:00:01.5Z",
        "doc": {"b": 1, "a": [True]}, "tags": ["x", None, "y"], "big": 2**60,
        "odd": {"$unknown": "point", "value": "(1,2)"},
    }  # fmt: skip
    meta = MetadataBuilder(config).build(row, seq="1#0", changed_at=datetime(2024, 1, 1, tzinfo=UTC))
    assert {k: meta[k] for k in COLUMNS if k in meta and k != "body"} == {
        "id": 1, "price": 12.5, "score": 0.5, "day": 20240229, "at": 1500, "doc": '{"a":[true],"b":1}',
        "tags": ["x", "y"], "big": str(2**60), "odd": "(1,2)",
    }  # fmt: skip


def _tuple(*values: bytes | None) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        out += b"n" if value is None else b"t" + struct.pack(">i", len(value)) + value
    return out


def test_pgoutput_messages_decode_field_by_field():
    begin = po.decode(b"B" + struct.pack(">QqI", 0x1_0000_0010, 1_000_000, 77))
    assert begin == po.Begin(0x1_0000_0010, datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC), 77)
    relation = po.decode(
        b"R" + struct.pack(">I", 16384) + b"public\0docs\0" + b"f" + struct.pack(">h", 2)
        + b"\x01id\0" + struct.pack(">Ii", 20, -1) + b"\x00body\0" + struct.pack(">Ii", 25, -1)
    )  # fmt: skip
    assert relation.columns[0] == po.Column("id", 20, -1, True) and relation.replica_identity == "f"
    update = po.decode(
        b"U" + struct.pack(">I", 16384) + b"O" + _tuple(b"1", b"old") + b"N" + b"\x00\x02t\x00\x00\x00\x011u"
    )
    assert update == po.Update(16384, ["1", po.UNCHANGED], ["1", "old"], False)
    truncate = po.decode(b"T" + struct.pack(">ibII", 2, 3, 1, 2))
    assert truncate == po.Truncate((1, 2), cascade=True, restart_identity=True)
    commit = po.decode(b"C\x00" + struct.pack(">QQq", 5, 9, 0))
    assert (commit.commit_lsn, commit.end_lsn) == (5, 9)
    with pytest.raises(po.PgOutputError):
        po.decode(b"I" + struct.pack(">I", 1) + b"N" + b"\x00\x01t\x00\x00\x00\x09ab")
    assert po.format_lsn(0x16_B374D848) == "16/B374D848" and po.parse_lsn("16/B374D848") == 0x16_B374D848


def test_loader_text_round_trips_through_the_text_form():
    assert t.to_text(['a"b', None, "c\\d"], "text[]") == '{"a\\"b",NULL,"c\\\\d"}'
    assert t.from_text(t.to_text(['a"b', None, "c\\d"], "text[]"), "text[]") == ['a"b', None, "c\\d"]
    assert t.to_text("AP8=", "bytea") == "\\x00ff"
    with pytest.raises(t.PgTypeError, match="whole number"):
        t.to_text("1.5", "integer")
