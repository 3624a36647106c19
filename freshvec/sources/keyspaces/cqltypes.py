"""CQL type strings parsed into a small tree, so config validation, the loader and the local table agree.

Only the types Amazon Keyspaces supports are accepted; a UDT is written as ``udt<name>`` in the
config (its fields are not needed to validate the pipeline and arrive as an object in events).
"""

from __future__ import annotations

from dataclasses import dataclass

SCALAR_TYPES = frozenset(
    {
        "ascii",
        "bigint",
        "blob",
        "boolean",
        "counter",
        "date",
        "decimal",
        "double",
        "duration",
        "float",
        "inet",
        "int",
        "smallint",
        "text",
        "time",
        "timestamp",
        "timeuuid",
        "tinyint",
        "uuid",
        "varchar",
        "varint",
    }
)
TEXT_TYPES = frozenset({"text", "varchar", "ascii"})
INTEGER_TYPES = frozenset({"int", "bigint", "smallint", "tinyint", "varint", "counter"})
FLOAT_TYPES = frozenset({"float", "double"})
# Each collection and how many type parameters it takes (None: any number, at least one).
COLLECTION_ARITY: dict[str, int | None] = {"list": 1, "set": 1, "map": 2, "tuple": None, "frozen": 1}
ALL_TYPE_NAMES = sorted(SCALAR_TYPES | set(COLLECTION_ARITY) | {"udt"})


class CqlTypeError(ValueError):
    """A type string that is not a CQL type Keyspaces supports."""


@dataclass(frozen=True)
class CqlType:
    name: str
    params: tuple[CqlType, ...] = ()
    udt_name: str | None = None

    @property
    def base(self) -> CqlType:
        """The type with any ``frozen<>`` wrapper removed (frozen changes storage, not values)."""
        return self.params[0].base if self.name == "frozen" else self

    @property
    def is_text(self) -> bool:
        return self.base.name in TEXT_TYPES

    def __str__(self) -> str:
        if self.name == "udt":
            return f"udt<{self.udt_name}>"
        if self.params:
            return f"{self.name}<{', '.join(str(p) for p in self.params)}>"
        return self.name


def parse_cql_type(text: str) -> CqlType:
    """Parse ``map<text, frozen<list<int>>>`` and friends; raise CqlTypeError naming what is wrong."""
    parser = _Parser(text)
    result = parser.parse_type()
    parser.skip_spaces()
    if parser.pos != len(text):
        raise CqlTypeError(f"unexpected {text[parser.pos :]!r} in CQL type {text!r}")
    return result


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def word(self) -> str:
        self.skip_spaces()
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] == "_"):
            self.pos += 1
        if start == self.pos:
            raise CqlTypeError(f"expected a type name at position {start} of {self.text!r}")
        return self.text[start : self.pos]

    def peek(self, char: str) -> bool:
        self.skip_spaces()
        return self.pos < len(self.text) and self.text[self.pos] == char

    def expect(self, char: str) -> None:
        if not self.peek(char):
            raise CqlTypeError(f"expected {char!r} at position {self.pos} of {self.text!r}")
        self.pos += 1

    def parse_type(self) -> CqlType:
        name = self.word().lower()
        if name in SCALAR_TYPES:
            return CqlType(name)
        if name == "udt":
            self.expect("<")
            udt_name = self.word()
            self.expect(">")
            return CqlType("udt", udt_name=udt_name)
        if name not in COLLECTION_ARITY:
            raise CqlTypeError(f"unknown CQL type {name!r}; allowed: {', '.join(ALL_TYPE_NAMES)}")
        self.expect("<")
        params = [self.parse_type()]
        while self.peek(","):
            self.pos += 1
            params.append(self.parse_type())
        self.expect(">")
        arity = COLLECTION_ARITY[name]
        if arity is not None and len(params) != arity:
            raise CqlTypeError(f"{name} takes {arity} type parameter(s), got {len(params)} in {self.text!r}")
        return CqlType(name, tuple(params))
