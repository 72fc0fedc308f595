"""Every GTFS-Realtime feed the tests are served goes through here: parsed with
`gtfs-realtime-bindings`, then judged by an independent validator from PyPI
(`gtfs-rt-validator`, MobilityData's rules ported, modern mode) against the simulated
network's static GTFS. A feed with any ERROR-level notice or a system error fails; a series
of polls fails on the warnings that make a consumer drop a live feed too (POLL_WARNINGS)."""

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
    Result,
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


POLL_WARNINGS = frozenset({"W007", "W008"})
"""Warnings a series of polls fails on too: a feed not refreshed within 35 s (W007) or a
header more than 65 s old when it was fetched (W008) reads as a dead producer to a journey
planner. The polls of a series are at most 35 s apart, as a consumer's are."""


def _found(result: Result, also: frozenset[str] = frozenset()) -> list[str]:
    """The ERROR-level notices and system errors of a run, and the notices in `also`."""
    wanted = set(result.error_ids()) | also
    notices = [
        f"{o.rule_id}: {o.prefix}" for o in result.run.notices._occurrences if o.rule_id in wanted
    ]
    return notices + [f"{o.rule_id}: {o.prefix}" for o in result.run.system_errors._occurrences]


class FeedChecker:
    def __init__(self, static: Path = STATIC) -> None:
        """`static`: the static GTFS folder the feeds are judged against."""
        self.dir = Path(tempfile.mkdtemp(prefix="gtfs-rt-check-"))
        self.static = zip_static(static, out=self.dir / "static.zip")
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
        result = self._alone(path, at)
        found = _found(result)
        assert not found, f"the validator found errors: {found}"
        assert result.run.messages_validated == 1
        return message

    def _alone(self, path: Path, at: float | None) -> Result:
        return validate(
            Request(
                mode=Mode.MODERN,
                gtfs=self.prepared,
                inputs=resolve_roles({"vp": str(path)}),
                at=datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC),
            )
        )

    def check_polls(self, polls: list[tuple[bytes, float]]) -> None:
        """Successive polls of one feed (body, when it was fetched), judged as the validator's
        replay judges a consumer's downloads: each against the one before (E017, E018, W007),
        each against the moment it was fetched (E050, W008). The replay skips a download
        identical to the one before (upstream's MD5 skip); a journey planner does not, it
        reads that download's header when it gets it: such a poll is judged alone (W008)."""
        self.checked += 1
        folder = self.dir / f"polls-{self.checked}"
        folder.mkdir()
        paths = []
        for i, (body, at) in enumerate(polls):
            path = folder / f"vehicle-positions-{i:04d}.pb"
            path.write_bytes(body)
            os.utime(path, (at, at))
            paths.append(path)
        result = validate(
            Request(
                mode=Mode.MODERN,
                gtfs=self.prepared,
                inputs=resolve(str(folder), sort_by=SortBy.DATE_MODIFIED),
            )
        )
        found = _found(result, POLL_WARNINGS)
        for i in range(1, len(polls)):
            if polls[i][0] == polls[i - 1][0]:
                alone = _found(self._alone(paths[i], polls[i][1]), POLL_WARNINGS)
                found += [f"poll {i}: {f}" for f in alone]
        assert not found, f"the validator found {len(found)} problems, first: {found[:10]}"
