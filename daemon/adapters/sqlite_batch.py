"""Many rows in one `INSERT … SELECT … FROM json_each(?)`, sending each shared value once.

SQLite 3.40 parses a row's JSON array again for every column it reads from it (`->>`),
and that parsing, not the b-trees, was most of the cost of a tick commit. Rows of one
batch mostly agree: the runs of a fan-out of schedules differ in their ids and names
only. So a column whose value is the same in every row is bound once as a parameter, and
only the columns that differ travel in the rows, as one short array per row (a single
differing column travels as a flat array of values, read without parsing). Differing
text of one length in ASCII (ids) travels apart, end to end in one blob that each row
cuts its value from, which costs SQLite a third of reading it out of a row's array.

A batch is given as objects and a table of `Column`s saying how to read and encode each
column. A `Composite` column is an SQL expression over values read the same way (a
tick's one decision becomes its JSON there, from mostly shared parts). The SQL names the
columns that differ, and SQLite caches the few shapes that occur.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from daemon.adapters.store_codec import dumps


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: how to read it off an object, and how to encode a read value
    (None: JSON and sqlite3 take it as it is). `nested` values (mappings) are bound as
    JSON text when shared, and nested as objects in a row (SQLite's `->>` gives them back
    as JSON text). A column that is never `shared` (ids) is not compared across rows."""

    name: str
    read: Callable[[Any], Any]
    encode: Callable[[Any], Any] | None = None
    nested: bool = False
    shared: bool = True

    @classmethod
    def attr(
        cls,
        name: str,
        path: str | None = None,
        encode: Callable[[Any], Any] | None = None,
        *,
        nested: bool = False,
        shared: bool = True,
    ) -> Column:
        return cls(name, attrgetter(path or name), encode, nested, shared)


@dataclass(frozen=True, slots=True)
class Composite:
    """A column computed by SQLite: `template` with one `{}` per part, each part filled
    with the expression that reads it (a bound parameter, or a row's value). The parts
    read what `source` gives of each object (taken once per object)."""

    name: str
    template: str
    parts: tuple[Column, ...]
    source: Callable[[Any], Any]


def insert_select(
    table: str, columns: Sequence[Column | Composite], objects: Sequence[Any], tail: str = ""
) -> tuple[str, list[Any]]:
    """The statement and parameters inserting one row per object (`objects` not empty).
    `tail` follows the SELECT (an ON CONFLICT or RETURNING clause)."""
    rows: list[list[Any]] = []  # the differing columns' values
    params: list[Any] = [None]  # ?1: the rows

    def read(column: Column, of: Sequence[Any] = objects) -> str | int:
        """`?n` for a value bound once, or the index of a differing column in `rows`."""
        values = list(map(column.read, of))
        first = values[0]
        encode = column.encode
        if len(values) == 1 or (column.shared and values.count(first) == len(values)):
            # the same in every row: bind it once
            if encode is not None:
                first = encode(first)
            if column.nested and not (first is None or isinstance(first, str)):
                first = dumps(first)  # a mapping; text is JSON already
            params.append(first)
            return f"?{len(params)}"
        if encode is not None:
            values = list(map(encode, values))
        if (packed := _packed(values)) is not None:
            params.append(packed)
            width = len(values[0])
            return f"CAST(substr(?{len(params)}, key * {width} + 1, {width}) AS TEXT)"
        rows.append(values)
        return len(rows) - 1

    def composite(c: Composite) -> tuple[str, list[str | int]]:
        sources = list(map(c.source, objects))
        return c.template, [read(p, sources) for p in c.parts]

    read_columns = [composite(c) if isinstance(c, Composite) else read(c) for c in columns]
    if not rows:  # one row, or rows all alike: json_each only counts them
        params[0] = dumps([0] * len(objects))
    elif len(rows) == 1:  # a flat array: `value` is the value itself (or an object's text)
        params[0] = dumps(rows[0])
    else:
        params[0] = dumps(list(zip(*rows, strict=True)))
    flat = len(rows) == 1

    def sql(expr: str | int) -> str:
        return expr if isinstance(expr, str) else "value" if flat else f"value ->> {expr}"

    select = ", ".join(
        r[0].format(*map(sql, r[1])) if isinstance(r, tuple) else sql(r) for r in read_columns
    )
    names = ", ".join(c.name for c in columns)
    # `WHERE true` settles SQLite's parse ambiguity of INSERT … SELECT … ON CONFLICT.
    text = f"INSERT INTO {table} ({names}) SELECT {select} FROM json_each(?1) WHERE true"
    return f"{text} {tail}" if tail else text, params


def _packed(values: list[Any]) -> bytes | None:
    """Text values all of one length in ASCII (ids), end to end as one blob that SQLite
    cuts by row index (a blob's `substr` counts bytes: no parsing, no scan), else None."""
    first = values[0]
    if type(first) is not str or not first:
        return None
    width = len(first)
    if not all(type(v) is str and len(v) == width for v in values):
        return None
    joined = "".join(values)
    return joined.encode("ascii") if joined.isascii() else None
