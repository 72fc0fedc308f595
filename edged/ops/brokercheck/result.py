"""One line of `edgectl broker-check`: what was probed, what the broker did, what edged does."""

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    OK = "ok"
    LIMITED = "limited"
    """Works with a restriction that edged copes with (the `edged` text says how)."""
    MISSING = "missing"


@dataclass(frozen=True)
class Finding:
    key: str
    """Stable name for JSON consumers: `protocols`, `will`, `retained_wildcard`…"""
    title: str
    verdict: Verdict
    measured: str
    """What the probe saw, in numbers and topics: never what a broker is said to do."""
    edged: str
    """What edged does about it (or what the operator must do)."""
    needed: bool
    """Whether edged cannot work right without it: a needed item missing fails the check."""

    @property
    def fails(self) -> bool:
        return self.needed and self.verdict is Verdict.MISSING

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict.value
        return out
