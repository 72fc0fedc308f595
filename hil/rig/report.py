"""What a scenario found: one line per check, with how long it took; JSON for machines."""

import time
import traceback
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0
    skipped: bool = False  # not applicable on this bench (said why in detail)
    open_in: str = (
        ""  # failed, and known to be fixed elsewhere (a branch, an issue): shown, not fatal
    )


@dataclass
class Report:
    scenario: str
    checks: list[Check] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    verbose: bool = True

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok or c.open_in for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and not c.open_in]

    @property
    def open(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.open_in]

    def skip(self, name: str, why: str) -> None:
        self._add(Check(name, True, why, skipped=True))

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self._add(Check(name, bool(ok), detail))
        return bool(ok)

    def held(self, attack: str, held: bool, detail: str = "", *, open_in: str = "") -> bool:
        """An attack's outcome, said as such: held, or NOT HELD (with what happened). A
        finding fixed on another branch (`open_in`) is shown as open and does not fail the
        run; on the branch that has the fix, the same check holds."""
        verdict = "held" if held else "NOT HELD"
        self._add(
            Check(f"{attack}: {verdict}", bool(held), detail, open_in="" if held else open_in)
        )
        return bool(held)

    async def step(self, name: str, action: Awaitable[T]) -> T | None:
        """Run one step; a failure is recorded with its reason and the scenario goes on."""
        t0 = time.monotonic()
        try:
            result = await action
        except Exception as exc:  # a failed step is a finding, not the end of the run
            detail = f"{type(exc).__name__}: {exc}"
            if (
                not isinstance(exc, AssertionError | TimeoutError)
                and "Rig" not in type(exc).__name__
            ):
                detail += "\n" + traceback.format_exc(limit=3)
            self._add(Check(name, False, detail, time.monotonic() - t0))
            return None
        self._add(Check(name, True, "", time.monotonic() - t0))
        return result

    def _add(self, check: Check) -> None:
        self.checks.append(check)
        if self.verbose:
            marks = {True: "ok  ", False: "OPEN" if check.open_in else "FAIL"}
            mark = "skip" if check.skipped else marks[check.ok]
            opened = f" [open: {check.open_in}]" if check.open_in else ""
            took = f" ({check.seconds:.1f} s)" if check.seconds >= 0.1 else ""
            detail = f": {check.detail}" if check.detail else ""
            print(f"  {mark} {check.name}{took}{detail}{opened}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "ok": self.ok,
            "seconds": round(time.monotonic() - self.started, 1),
            "checks": [asdict(c) for c in self.checks],
            "measured": self.measured,
        }

    def summary(self) -> str:
        n = len(self.checks)
        took = time.monotonic() - self.started
        verdict = "passed" if self.ok else f"FAILED ({len(self.failed)} of {n} checks)"
        if self.open:
            verdict += (
                f", {len(self.open)} open ({', '.join(sorted({c.open_in for c in self.open}))})"
            )
        return f"{self.scenario}: {verdict}, {n} checks in {took:.0f} s"
