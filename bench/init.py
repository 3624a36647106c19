"""A new user's own PostgreSQL table to a first local query: ``freshvec init`` and ``freshvec local up --attach``.

The walkthrough of the end-to-end test (``freshvec.testing.newcomer``): a server on 127.0.0.1 with the books
table made by the user's DDL and INSERTs through psql, then the commands as the user types them, each a process
of its own (interpreter start included, as the user waits for it).

- ``init_seconds``: ``freshvec init --pg-url ... --table books`` from start to the config written
- ``local_up_to_first_searchable_s``: from starting ``freshvec local up --attach`` to the first query that finds
  one of the table's rows (polled through the control API every 0.1 s, so no command start is counted)
- ``local_up_ready_s``: the same start to "Ctrl-C to stop" (the rows already there indexed)
- ``newcomer_table_to_query_s``: init plus local up to the first searchable row, against the three-minute
  promise (``newcomer_within_three_minutes``); the baseline is that promise, 180 s
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from freshvec.testing.newcomer import BOOKS_SQL, Newcomer, names, wait_for

PROMISE_S = 180.0


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="freshvec-bench-init-") as folder:
        user = Newcomer(Path(folder))
        user.start_server()
        try:
            user.psql(file=BOOKS_SQL)
            started = time.monotonic()
            init = user.init()
            init_s = time.monotonic() - started
            assert init.returncode == 0, init.stderr
            up_started = time.monotonic()
            user.local_up(wait=False)
            hit = wait_for(lambda: user.first_hit("desert planet sandworms and spice"), timeout=300, interval=0.1)
            first_searchable_s = time.monotonic() - up_started
            assert hit[0]["metadata"]["name"] == "Dune", hit
            user.local_up_wait_ready()
            ready_s = user.ready_at - up_started
            assert names(user.query("desert planet sandworms and spice"))[0] == "Dune"
        finally:
            user.stop()
    total = init_s + first_searchable_s
    return {
        "init_seconds": round(init_s, 2),
        "local_up_to_first_searchable_s": round(first_searchable_s, 2),
        "local_up_ready_s": round(ready_s, 2),
        "newcomer_table_to_query_s": round(total, 2),
        "newcomer_within_three_minutes": total <= PROMISE_S,
    }


if __name__ == "__main__":
    print(run())
