"""Where the CLI writes: results on stdout (``out``), progress and per-item notes on stderr (``err``)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class RateColumn(ProgressColumn):
    """Rows per second, averaged by rich over the recent past."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s")


def progress(*extra: ProgressColumn) -> Progress:
    """The CLI's progress display on stderr: what, bar, done of total, rate, time so far; then ``extra``."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        *extra,
        console=err,
        transient=False,
    )


def progress_eta() -> Progress:
    """``progress`` with the time left (rich's estimate from the recent rate, shown once a total is known)."""
    return progress(TextColumn("ETA"), TimeRemainingColumn())


def unindexable_rows(rows: list[str], what: str) -> None:
    """Rows no vector can hold (each "key: reason", the key already shortened): the first few and how many."""
    rows = list(dict.fromkeys(rows))  # a page re-read after an interruption names its rows again
    for line in rows[:5]:
        err.print(Text(f"cannot be indexed: {line}"))
    more = f" ({len(rows) - 5} more not shown)" if len(rows) > 5 else ""
    err.print(Text(f"error: {len(rows)} row(s) cannot be indexed{more}: {what}"))


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was: one line of a report, whatever the key."""
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text)} characters)"
