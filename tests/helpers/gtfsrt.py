"""Every GTFS-Realtime feed the tests are served goes through here: parsed with
`gtfs-realtime-bindings`, then judged by an independent validator from PyPI
(`gtfs-rt-validator`, MobilityData's rules ported, modern mode) against the simulated
network's static GTFS. A feed with any ERROR-level notice or a system error fails."""

import os
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from google.transit import gtfs_realtime_pb2 as rt
from gtfs_rt_validator.api import (
    Mode,
    PreparedFeed,
    Request,
    prepare_feed,
    resolve,
    resolve_roles,
    validate,
)
from gtfs_rt_validator.inputs import SortBy

from tests.helpers.nodes import ROOT

STATIC = ROOT / "config" / "gtfs" / "creuse"


def zip_static(folder: Path = STATIC, out: Path | None = None) -> Path:
    out = out or Path(tempfile.mkdtemp(prefix="gtfs-")) / "creuse.zip"
    with zipfile.ZipFile(out, "w") as z:
        for f in sorted(folder.glob("*.txt")):
            z.write(f, f.name)
    return out


class FeedChecker:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gtfs-rt-check-"))
        self.static = zip_static(out=self.dir / "creuse.zip")
        self.prepared: PreparedFeed = prepare_feed(self.static, mode=Mode.MODERN)
        self.checked = 0

    def check(self, body: bytes, at: float | None = None) -> rt.FeedMessage:
        """The parsed feed; `at`: the validator's clock (the feed's own, in seconds)."""
        message = rt.FeedMessage()
        message.ParseFromString(body)  # raises on bytes that are not a FeedMessage
        assert message.header.gtfs_realtime_version == "2.0"
        self.checked += 1
        path = self.dir / f"vehicle-positions-{self.checked}.pb"
        path.write_bytes(body)
        result = validate(
            Request(
                mode=Mode.MODERN,
                gtfs=self.prepared,
                inputs=resolve_roles({"vp": str(path)}),
                at=datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC),
            )
        )
        notices = [
            f"{o.rule_id}: {o.prefix}"
            for o in result.run.notices._occurrences
            if o.rule_id in result.error_ids()
        ]
        system = [f"{o.rule_id}: {o.prefix}" for o in result.run.system_errors._occurrences]
        assert not notices and not system, f"the validator found errors: {notices + system}"
        assert result.run.messages_validated == 1
        return message

    def check_polls(self, polls: list[tuple[bytes, float]]) -> None:
        """Successive polls of one feed (body, when it was fetched), judged as the validator's
        replay judges a consumer's downloads: each against the one before (E017, E018), each
        against the moment it was fetched (E050)."""
        self.checked += 1
        folder = self.dir / f"polls-{self.checked}"
        folder.mkdir()
        for i, (body, at) in enumerate(polls):
            path = folder / f"vehicle-positions-{i:04d}.pb"
            path.write_bytes(body)
            os.utime(path, (at, at))
        result = validate(
            Request(
                mode=Mode.MODERN,
                gtfs=self.prepared,
                inputs=resolve(str(folder), sort_by=SortBy.DATE_MODIFIED),
            )
        )
        notices = [
            f"{o.rule_id}: {o.prefix}"
            for o in result.run.notices._occurrences
            if o.rule_id in result.error_ids()
        ]
        system = [f"{o.rule_id}: {o.prefix}" for o in result.run.system_errors._occurrences]
        assert not notices and not system, f"the validator found errors: {notices + system}"
