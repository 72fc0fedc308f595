"""Sets of row ids bound to SQL statements whose text never changes.

SQLite keeps every prepared statement in the connection's statement cache (Python's, 128
deep), and a statement's program grows with its parameters: `id IN (?,?,…)` with 350
parameters is ~50 KB. A text built from the number of ids (acks of one commit, the rows in
flight) is a new statement for every count, so the cache filled with a hundred of them:
~5 MB of SQLite's memory during a 100,000-message drain (`bench.outbox`), for as long as
the connection lives. Here a set of ids is one parameter or a list of rows, never text:

- `runs`: consecutive ids as (first, last) pairs, for `executemany` of one
  `… WHERE id BETWEEN ? AND ?` (a drain acknowledges mostly consecutive ids);
- `as_json`: a JSON array for `… IN (SELECT value FROM json_each(?))` (SQLite ≥ 3.38 has
  JSON built in; Debian 12 ships 3.40).
"""

import json
from collections.abc import Iterable


def runs(ids: Iterable[int]) -> list[tuple[int, int]]:
    """The ids (any order, repeats allowed) as sorted, disjoint (first, last) runs."""
    out: list[tuple[int, int]] = []
    for i in sorted(set(ids)):
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def as_json(ids: Iterable[int]) -> str:
    """The ids as one JSON array parameter."""
    return json.dumps(list(ids))
