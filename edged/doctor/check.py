"""One line of the doctor's report: what was checked, how it went, what to do about it."""

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    """Not checked, with the reason in `detail` (a disabled driver, a device held by edged)."""


@dataclass(frozen=True)
class Check:
    """A check's result. Every non-ok result carries `advice`: what the technician does next."""

    section: str
    """config, system, clock, storage, drivers or broker: groups lines in JSON consumers."""
    name: str
    status: Status
    detail: str
    advice: str = ""
    items: tuple[str, ...] = field(default=())
    """Lines that belong to this one, such as each problem of an invalid config."""
    duration_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.value
        out["items"] = list(self.items)
        return out


def ok(section: str, name: str, detail: str, **kw: Any) -> Check:
    return Check(section, name, Status.OK, detail, **kw)


def warn(section: str, name: str, detail: str, advice: str, **kw: Any) -> Check:
    return Check(section, name, Status.WARN, detail, advice, **kw)


def fail(section: str, name: str, detail: str, advice: str, **kw: Any) -> Check:
    return Check(section, name, Status.FAIL, detail, advice, **kw)


def skip(section: str, name: str, detail: str, advice: str = "", **kw: Any) -> Check:
    return Check(section, name, Status.SKIP, detail, advice, **kw)


def size(n: float) -> str:
    """Bytes for people: 64 MiB, 1.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            text = f"{n:.0f}" if unit == "B" else f"{n:.1f}".removesuffix(".0")
            return f"{text} {unit}"
        n /= 1024
    return f"{n:.1f} TiB".replace(".0 ", " ")
