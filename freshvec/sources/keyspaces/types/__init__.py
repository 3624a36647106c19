"""The CQL type registry: each CQL type knows its values' four forms in one place.

``REGISTRY`` maps every CQL type name ``parse_cql_type`` accepts to one ``CqlValueType`` whose methods
convert between the stream cell (``from_cell``/``to_cell``), the driver value (``to_driver``/
``from_driver``), the change-event JSON value (the hub) and the S3 Vectors metadata value
(``to_metadata``). The dispatchers exported here are the conversions ``cells``, ``driver`` and
``freshvec.metadata`` offer; see ``base`` for the interface and the families in ``scalar``, ``temporal``
and ``composite``.
"""

from __future__ import annotations

from freshvec.sources.keyspaces.types.base import (
    BY_MEMBER,
    REGISTRY,
    UNKNOWN_TAG,
    CellError,
    CqlValueType,
    MetadataValue,
    cell_to_json,
    compact_json,
    json_to_value,
    to_driver_value,
    to_json_value,
    to_metadata_value,
    type_of,
    value_to_json,
)
from freshvec.sources.keyspaces.types.composite import (
    FrozenType,
    ListType,
    MapType,
    SetType,
    TupleType,
    UdtType,
    plain_json,
)
from freshvec.sources.keyspaces.types.scalar import (
    BlobType,
    BooleanType,
    DecimalType,
    FloatType,
    InetType,
    IntegerType,
    TextType,
    UuidType,
    decimal_number,
)
from freshvec.sources.keyspaces.types.temporal import (
    DateType,
    DurationType,
    TimestampType,
    TimeType,
    as_datetime,
    date_from_metadata,
    date_number,
    epoch_millis,
    timestamp_from_metadata,
)

__all__ = [
    "BY_MEMBER",
    "REGISTRY",
    "UNKNOWN_TAG",
    "BlobType",
    "BooleanType",
    "CellError",
    "CqlValueType",
    "DateType",
    "DecimalType",
    "DurationType",
    "FloatType",
    "FrozenType",
    "InetType",
    "IntegerType",
    "ListType",
    "MapType",
    "MetadataValue",
    "SetType",
    "TextType",
    "TimeType",
    "TimestampType",
    "TupleType",
    "UdtType",
    "UuidType",
    "as_datetime",
    "cell_to_json",
    "compact_json",
    "date_from_metadata",
    "date_number",
    "decimal_number",
    "epoch_millis",
    "json_to_value",
    "plain_json",
    "timestamp_from_metadata",
    "to_driver_value",
    "to_json_value",
    "to_metadata_value",
    "type_of",
    "value_to_json",
]
