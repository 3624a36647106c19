"""Rows from CSV and JSON Lines files, as the loader and the local demo read them.

Each record keeps its line number, so a row that cannot be read is reported by line and skipped while the rest
loads; a file that cannot be read at all (missing, unknown format, a CSV header naming a column the table does
not have) raises ``LoaderFileError``. Values stay raw here; converting them by the table's types is the
source's job (``freshvec.sources.keyspaces.driver``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any


def sample_movies() -> Path:
    """The sample movies (``media.movies``, the table ``cdk.json`` describes), shipped inside the package so the
    default works in any install, not only in a checkout of the repository."""
    return Path(str(resources.files("freshvec") / "data" / "movies.jsonl"))


def product_set() -> Path:
    """The retrieval set where exact terms matter (``products.jsonl``, ``queries.jsonl`` with judgments), shipped
    beside the sample movies; see its README.md."""
    return Path(str(resources.files("freshvec") / "data" / "products"))


class LoaderFileError(ValueError):
    """The input file as a whole cannot be loaded (missing, unknown format, columns not in the table)."""


@dataclass(frozen=True)
class SourceRecord:
    """One record of the input file: its line number and raw values, or why it could not be read."""

    line: int
    values: dict[str, Any] | None
    error: str | None = None


def read_records(path: str | Path, columns: Iterable[str]) -> Iterator[SourceRecord]:
    """Records of a ``.csv`` or ``.jsonl``/``.ndjson``/``.json`` (JSON Lines) file, checked against the table."""
    path = Path(path)
    if not path.is_file():
        raise LoaderFileError(f"{path}: no such file")
    known = list(columns)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, known)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl(path, known)
    raise LoaderFileError(f"{path}: unknown file type {suffix!r}; use .csv or .jsonl (JSON Lines)")


_NOT_UTF8 = "not UTF-8 text (save the file as UTF-8)"


def _undecodable(text: str) -> bool:
    """Whether ``text`` holds bytes that were not UTF-8 (read with errors="surrogateescape")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _read_csv(path: Path, known: list[str]) -> Iterator[SourceRecord]:
    # surrogateescape: a line that is not UTF-8 is reported and skipped instead of ending the whole load
    handle = path.open(newline="", encoding="utf-8", errors="surrogateescape")
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    if any(_undecodable(name) for name in header):
        handle.close()
        raise LoaderFileError(f"{path}: the header row is {_NOT_UTF8}")
    unknown = [name for name in header if name not in known]
    if unknown:
        handle.close()
        raise LoaderFileError(f"{path}: column {unknown[0]!r} is not in the table; table columns: {', '.join(known)}")
    if not header:
        handle.close()
        raise LoaderFileError(f"{path}: the CSV file has no header row")

    def records() -> Iterator[SourceRecord]:
        with handle:
            for raw in reader:
                if None in raw:
                    yield SourceRecord(reader.line_num, None, f"{len(raw[None])} value(s) more than header columns")
                    continue
                if any(v is not None and _undecodable(v) for v in raw.values()):
                    yield SourceRecord(reader.line_num, None, _NOT_UTF8)
                    continue
                # An empty CSV cell is a null: CSV cannot tell the two apart.
                yield SourceRecord(reader.line_num, {k: (None if v == "" else v) for k, v in raw.items()})

    return records()


def _read_jsonl(path: Path, known: list[str]) -> Iterator[SourceRecord]:
    def records() -> Iterator[SourceRecord]:
        with path.open(encoding="utf-8", errors="surrogateescape") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                if _undecodable(text):
                    yield SourceRecord(number, None, _NOT_UTF8)
                    continue
                try:
                    doc = json.loads(text, parse_float=Decimal)
                except json.JSONDecodeError as exc:
                    yield SourceRecord(number, None, f"not valid JSON: {exc.msg} at column {exc.colno}")
                    continue
                if not isinstance(doc, dict):
                    yield SourceRecord(number, None, "each line must be one JSON object")
                    continue
                unknown = [name for name in doc if name not in known]
                if unknown:
                    yield SourceRecord(number, None, f"column {unknown[0]!r} is not in the table")
                    continue
                yield SourceRecord(number, doc)

    return records()


# ---- what to write: insert, update or delete ---------------------------------------------------
