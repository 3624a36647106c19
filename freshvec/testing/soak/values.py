"""Random values of every CQL type the soak's table has, as change-event JSON values (docs/change-event.md)."""

from __future__ import annotations

import base64
import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from freshvec.events import format_timestamp
from freshvec.sources.keyspaces.cqltypes import CqlType

_WORD_TEXT = (
    "amber anchor apple arctic atlas autumn badge bamboo basket beacon berry blanket bloom border breeze bridge "
    "bronze bubble cabin cactus camera candle canyon carbon castle cedar cherry circuit cliff cloud clover coffee "
    "comet copper coral cotton crystal dawn delta desert diamond dragon dune eagle echo ember engine falcon "
    "feather fern festival field flame forest fossil fountain galaxy garden garnet glacier granite harbor hazel "
    "helmet honey horizon island ivory jacket jasmine jungle kettle lagoon lantern lemon lighthouse lily marble "
    "meadow melody meteor mirror mountain nectar needle ocean olive orbit orchard otter paper pepper pebble "
    "piano planet prairie quartz quill rabbit rainbow raven reef ribbon river rocket saddle salmon sapphire "
    "satellite shadow silver spice spiral summit sunset tiger timber tulip tundra valley velvet violet volcano "
    "walnut whale willow window winter wolf yarn zebra"
)
WORDS = tuple(_WORD_TEXT.split())
_NAMES = ("Ada", "Brook", "Cyrus", "Dana", "Elio", "Fern", "Gale", "Hana", "Ivo", "June")


# ---------------------------------------------------------------------------------------------
# Values of every CQL type, as change-event JSON values
# ---------------------------------------------------------------------------------------------
def random_value(cql_type: CqlType, rng: random.Random) -> Any:
    """A random value of ``cql_type`` in the change-event JSON form (docs/change-event.md)."""
    name = cql_type.base.name
    base = cql_type.base
    if name in ("text", "varchar"):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
    if name == "ascii":
        return f"SKU-{rng.randint(0, 99_999):05d}"
    if name == "int":
        return rng.randint(-(2**31), 2**31 - 1)
    if name == "bigint":
        return rng.randint(-(2**63), 2**63 - 1)
    if name == "smallint":
        return rng.randint(-(2**15), 2**15 - 1)
    if name == "tinyint":
        return rng.randint(-128, 127)
    if name == "varint":
        return rng.choice((rng.randint(-1000, 1000), rng.randint(2**60, 2**80)))
    if name == "float":
        return rng.randint(-(10**6), 10**6) / 64  # exact in binary: survives the float32 round trip
    if name == "double":
        return round(rng.uniform(-1e6, 1e6), 6)
    if name == "decimal":
        return f"{rng.randint(-99_999, 99_999)}.{rng.randint(0, 9999):04d}"
    if name == "boolean":
        return rng.random() < 0.5
    if name == "date":
        return (date(1970, 1, 1) + timedelta(days=rng.randint(0, 25_000))).isoformat()
    if name == "timestamp":
        moment = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(milliseconds=rng.randint(0, 10**12))
        return format_timestamp(moment)
    if name == "time":
        return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}"
    if name == "duration":
        return f"{rng.randint(0, 48)}h{rng.randint(0, 59)}m"
    if name == "inet":
        if rng.random() < 0.8:
            return ".".join(str(rng.randint(1, 254)) for _ in range(4))
        return f"2001:db8::{rng.randint(1, 0xFFFF):x}"
    if name == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if name == "timeuuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=1))
    if name == "blob":
        return base64.b64encode(rng.randbytes(rng.randint(1, 24))).decode("ascii")
    if name == "list":
        return [random_value(base.params[0], rng) for _ in range(rng.randint(1, 4))]
    if name == "set":
        return sorted({json.dumps(random_value(base.params[0], rng)) for _ in range(rng.randint(1, 4))})
    if name == "map":
        key_type, value_type = base.params
        entries = {json.dumps(random_value(key_type, rng)): random_value(value_type, rng) for _ in range(3)}
        if key_type.is_text:
            return {json.loads(k): v for k, v in entries.items()}
        return [[json.loads(k), v] for k, v in entries.items()]
    if name == "tuple":
        return [random_value(param, rng) for param in base.params]
    if name == "udt":
        return {"name": rng.choice(_NAMES), "age": rng.randint(18, 90)}
    raise ValueError(f"the soak has no generator for CQL type {cql_type}")


def set_value(cql_type: CqlType, rng: random.Random) -> Any:
    value = random_value(cql_type, rng)
    if cql_type.base.name == "set":  # random_value keeps set members as JSON text to de-duplicate them
        return [json.loads(item) for item in value]
    return value


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14)))
