"""insert_select: every row reads back what its object held, however each column travels
(bound once, in a row's array, as a flat array, or cut from a blob of fixed-width text)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pytest

from daemon.adapters.sqlite_batch import Column, insert_select


@dataclass
class Row:
    id: str
    name: str | None
    n: int


COLUMNS = (Column.attr("id", shared=False), Column.attr("name"), Column.attr("n"))


def round_trip(rows: list[Row]) -> tuple[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id TEXT, name TEXT, n INTEGER)")
    sql, params = insert_select("t", COLUMNS, rows)
    conn.execute(sql, params)
    read = conn.execute("SELECT id, typeof(id), name, n FROM t ORDER BY rowid").fetchall()
    return sql, read


@pytest.mark.parametrize(
    ("ids", "names", "packed"),
    [
        (["a1", "b2", "c3"], ["x", "y", "z"], 2),  # both of one width
        (["a1", "b22", "c3"], ["x", "y", "z"], 1),  # ids' widths differ
        (["é1", "b2", "c3"], ["xy", "y", "z"], 0),  # not ASCII, widths differ
        (["a1", "b2", "c3"], ["x", "x", "x"], 1),  # a shared name, bound once
        (["a1", "b2", "c3"], ["x", None, "z"], 1),  # a None among names
        (["", "", ""], ["x", "y", "z"], 1),  # empty text
    ],
)
def test_every_row_reads_back_as_given(ids: list[str], names: list[str | None], packed: int):
    rows = [Row(i, name, n) for n, (i, name) in enumerate(zip(ids, names, strict=True))]
    sql, read = round_trip(rows)
    assert read == [(r.id, "text", r.name, r.n) for r in rows]
    assert sql.count("substr(") == packed


def test_one_row_binds_every_value():
    sql, read = round_trip([Row("only", "x", 1)])
    assert read == [("only", "text", "x", 1)]
    assert "substr(" not in sql and "->>" not in sql
