"""The options every CAN backend shares: how frames become events.

A backend reads frames (a real adapter through python-can, or a candump log replayed
through python-can's virtual bus) and emits, through the same receive and decode path,
`core.events.J1939Signals` for every DBC message and `core.events.ActiveFaults` for DM1.
"""

from collections.abc import Iterable

from pydantic import Field, PrivateAttr, field_validator, model_validator

from core.driver import DriverOptions
from core.errors import ConfigError
from core.paths import ExistingConfigPath
from drivers.can.decoder import SHIPPED_DBC, Decoders
from drivers.can.table import load_table


class CanDecodeOptions(DriverOptions):
    """How frames become events; shared by `can.bus` and `can.replay`."""

    dbc: ExistingConfigPath | None = Field(
        default=None,
        description="DBC file, relative to the config file; default: the shipped FMS DBC "
        "(config/fms.dbc)",
    )
    pgns: list[int] | None = Field(
        default=None,
        description="decode only these PGNs (DBC messages, 65226 for DM1); default: all",
    )
    min_interval_s: float = Field(
        default=0.1,
        ge=0,
        le=60,
        description="about one J1939Signals per PGN and source in this time, the latest "
        "value always delivered; 0: every message",
    )

    _decoders: Decoders | None = PrivateAttr(default=None)
    _doors: tuple[str, ...] | None = PrivateAttr(default=None)

    @field_validator("pgns")
    @classmethod
    def _pgns_in_range(cls, pgns: list[int] | None) -> list[int] | None:
        for pgn in pgns or ():
            if not 0 <= pgn <= 0x3FFFF:
                raise ValueError(f"{pgn} is not a PGN (0..262143)")
        return pgns

    @model_validator(mode="after")
    def _dbc_usable(self) -> "CanDecodeOptions":
        """Read the DBC now, so `edged check-config` reports a broken one or a bad PGN."""
        try:
            self._decoders = Decoders(self.dbc or SHIPPED_DBC, self.pgns)
        except ConfigError as exc:
            raise ValueError("; ".join(exc.problems)) from None
        return self

    def signals(self) -> dict[str, frozenset[str]]:
        """Every signal of the DBC by message name, `pgns` or not: what `[services.vehicle]`
        may name as `"MESSAGE.Signal"` (the config check holds it to them)."""
        table = load_table(self.dbc or SHIPPED_DBC)
        return {m["name"]: frozenset(s["name"] for s in m["signals"]) for m in table["messages"]}

    @property
    def door_signals(self) -> tuple[str, ...] | None:
        """The door status signals the node uses (`[services.vehicle.doors]`, as
        `"MESSAGE.Signal"`), which the loader hands over (`use_doors`): the throttle lets a
        change of theirs through at once, and no other change of their frames
        (drivers/can/pipeline.py). None when not told: any change of DC1 or DC2."""
        return self._doors

    def use_doors(self, doors: "Iterable[str]") -> None:
        self._doors = tuple(doors)

    def decoders(self) -> Decoders:
        """The DBC indexed by PGN, read once per configuration (restarts reuse it)."""
        if self._decoders is None:
            self._decoders = Decoders(self.dbc or SHIPPED_DBC, self.pgns)
        return self._decoders
