import itertools
import json
import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from edged.outbox.idsets import as_json, runs

ids = st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=300)


@given(ids)
def test_runs_cover_exactly_the_ids(values: list[int]) -> None:
    covered = {i for lo, hi in runs(values) for i in range(lo, hi + 1)}  # hi - lo < 300
    assert covered == set(values)


@given(ids)
def test_runs_are_sorted_disjoint_and_never_adjacent(values: list[int]) -> None:
    found = runs(values)
    assert all(lo <= hi for lo, hi in found)
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(found))


def test_consecutive_ids_in_any_order_make_one_run() -> None:
    assert runs([5, 3, 4, 4, 7, 6]) == [(3, 7)]


def test_no_ids_make_no_runs() -> None:
    assert runs([]) == []


@given(st.lists(st.integers(min_value=1, max_value=60), max_size=60))
def test_a_delete_by_runs_removes_exactly_those_rows(values: list[int]) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE msg (id INTEGER PRIMARY KEY)")
    db.executemany("INSERT INTO msg VALUES (?)", ((i,) for i in range(1, 61)))
    db.executemany("DELETE FROM msg WHERE id BETWEEN ? AND ?", runs(values))
    left = {r[0] for r in db.execute("SELECT id FROM msg")}
    assert left == set(range(1, 61)) - set(values)


@given(st.lists(st.integers(min_value=1, max_value=60), max_size=60))
def test_a_json_id_set_selects_exactly_those_rows(values: list[int]) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE msg (id INTEGER PRIMARY KEY)")
    db.executemany("INSERT INTO msg VALUES (?)", ((i,) for i in range(1, 61)))
    query = "SELECT id FROM msg WHERE id NOT IN (SELECT value FROM json_each(?))"
    left = {r[0] for r in db.execute(query, (as_json(values),))}
    assert left == set(range(1, 61)) - set(values)
    assert json.loads(as_json(values)) == values
