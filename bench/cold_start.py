"""Lambda cold start: what importing the sink handler and parsing its config costs, with the config as it is
(dataclasses checked by hand, ``freshvec.config``) and with the same config as pydantic models
(``bench.pydantic_config``) — the figures behind keeping the config free of pydantic (README, "Why it is built
this way").

Each figure is the median over fresh interpreters (``python -c``, compiled files warm) of the CPU time
(``time.process_time``) from the first import to a parsed config, the variants interleaved: CPU time, not wall
time, because the machine is shared while a Lambda container has its CPU share to itself, and importing is CPU
work (the files are in the page cache). The asset and the layer ship without compiled files, so a Lambda
container also compiles every module it imports: pydantic's Python half would add its compile time on top,
which these warm figures leave out — they favour pydantic. Measured on this machine's Python; the Lambda runs
3.13 on arm64, whose absolute times differ, but the added work is the same.

- ``sink_cold_import_ms``: ``lambdas.sink.handler`` imported and ``PipelineConfig.from_json`` run on the default
  config — the import closure a sink container pays before its first batch.
- ``sink_cold_import_ms_pydantic``: the same closure plus the pydantic models of the config, the config parsed
  with ``model_validate_json`` (the handler still imports ``freshvec.config``, which a pydantic config would
  replace; that package's own share is ``config_cold_import_ms``, most of it the source type registries every
  variant needs).
- ``config_cold_import_ms`` / ``config_cold_import_ms_pydantic``: the config alone, each way.
- ``pydantic_cold_start_added_ms``: the difference of the two sink figures; ``pydantic_cold_start_ratio``:
  their quotient.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from freshvec.config import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parent.parent
RUNS = 25
_TIMED = "import time as _t; _s = _t.process_time(); {body}; print((_t.process_time() - _s) * 1000)"
_PARSE = "from freshvec.config import PipelineConfig; PipelineConfig.from_json(os.environ['CONFIG_JSON'])"
_PARSE_PYDANTIC = (
    "from bench import pydantic_config; pydantic_config.PipelineConfig.model_validate_json(os.environ['CONFIG_JSON'])"
)
VARIANTS = {
    "sink_cold_import_ms": f"import os; import lambdas.sink.handler; {_PARSE}",
    "sink_cold_import_ms_pydantic": f"import os; import lambdas.sink.handler; {_PARSE_PYDANTIC}",
    "config_cold_import_ms": f"import os; {_PARSE}",
    "config_cold_import_ms_pydantic": f"import os; {_PARSE_PYDANTIC}",
}


def _once(body: str, env: dict[str, str]) -> float:
    command = [sys.executable, "-c", _TIMED.format(body=body)]
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run() -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CONFIG_JSON": json.dumps(DEFAULT_CONFIG),
        "POWERTOOLS_METRICS_NAMESPACE": "freshvec",
    }
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for body in VARIANTS.values():
        _once(body, env)  # compiled files written once, then read: the lower bound for both variants (see above)
    for _ in range(RUNS):
        for name, body in VARIANTS.items():
            times[name].append(_once(body, env))
    figures: dict[str, Any] = {name: round(statistics.median(values), 1) for name, values in times.items()}
    base, pyd = figures["sink_cold_import_ms"], figures["sink_cold_import_ms_pydantic"]
    assert pyd > 0 and base > 0, figures
    figures["pydantic_cold_start_added_ms"] = round(pyd - base, 1)
    figures["pydantic_cold_start_ratio"] = round(pyd / base, 2)
    return figures
