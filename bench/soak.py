"""``make soak``: the full fault-injection soak, printed (workload, oracle and run in ``freshvec.testing.soak``).

Writes 10,000 changes over about 3,300 composite keys through the local pipeline with the default fault
rates, compares the index and the DLQ with the oracle, prints the counts and writes the ``soak_*`` figures
into bench-results.json. Any difference makes it exit non-zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from freshvec.testing.faults import FaultPlan
from freshvec.testing.soak import FULL_CHANGES, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=FULL_CHANGES, help="changes to write (default 10000)")
    parser.add_argument("--keys", type=int, default=None, help="distinct keys (default: changes / 3)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=540.0, help="seconds before the soak gives up")
    parser.add_argument("--no-faults", action="store_true", help="run without injected faults (a baseline)")
    parser.add_argument(
        "--bedrock-scope",
        choices=("call", "text"),
        default="call",
        help="a Bedrock fault fails a whole embedder call (default) or single texts, as Titan's one-text requests",
    )
    parser.add_argument("--no-results", action="store_true", help="do not write bench-results.json")
    parser.add_argument("--verbose", action="store_true", help="show the pipeline's warnings (every injected fault)")
    args = parser.parse_args(argv)
    # Every injected fault makes the pipeline log a warning; the soak's own report is what matters here.
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL, format="%(levelname)s %(message)s")
    plan = FaultPlan.none(seed=args.seed) if args.no_faults else FaultPlan(seed=args.seed)
    plan = plan.with_rates(bedrock_scope=args.bedrock_scope)
    report = run(args.changes, keys=args.keys, plan=plan, seed=args.seed, timeout_s=args.timeout)
    for line in report.lines():
        print(line)
    if not args.no_results:
        from bench.__main__ import write_results

        write_results(report.figures())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
