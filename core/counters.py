"""Error and event counters per edge (`cmd.bad_json`, `driver.gps.crash`...), shown in health."""

from collections import Counter


class Counters:
    def __init__(self) -> None:
        self._c: Counter[str] = Counter()

    def inc(self, key: str, n: int = 1) -> None:
        self._c[key] += n

    def __getitem__(self, key: str) -> int:
        return self._c[key]

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._c.items()))
