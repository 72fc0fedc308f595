import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from core.errors import DriverError
from core.events import Fix, FixMode
from drivers.gps.gpsd import GpsdGps, GpsdOptions, GpsdReports, Malformed
from edged.config.models import SupervisorConfig
from tests.helpers.drivers import Recorder, wait_until
from tests.helpers.journal import FEW, Journal

TPV = {
    "class": "TPV",
    "device": "/dev/ttyACM0",
    "mode": 3,
    "time": "2025-06-12T08:15:30.000Z",
    "lat": 45.885701,
    "lon": 2.175175,
    "altHAE": 500.3,
    "altMSL": 451.1,
    "speed": 13.889,
    "track": 12.67,
}
SKY = {
    "class": "SKY",
    "device": "/dev/ttyACM0",
    "hdop": 0.87,
    "satellites": [{"PRN": p, "used": p < 20} for p in (2, 5, 12, 13, 25, 29)],
}


def tpv(**changes: Any) -> dict[str, Any]:
    return {**TPV, **changes}


# -- reports ------------------------------------------------------------------------------


def test_tpv_with_a_3d_fix_becomes_a_fix_in_utc() -> None:
    fix = GpsdReports().handle(TPV)
    assert fix == Fix(
        fix_time=datetime(2025, 6, 12, 8, 15, 30, tzinfo=UTC),
        lat=45.885701,
        lon=2.175175,
        alt=451.1,
        speed=13.889,
        course=12.67,
        mode=FixMode.THREE_D,
        quality=1,
    )


def test_satellites_used_and_hdop_come_from_the_last_sky() -> None:
    reports = GpsdReports()
    reports.handle(SKY)
    fix = reports.handle(TPV)
    assert fix is not None and (fix.satellites, fix.hdop) == (4, 0.87)


@pytest.mark.parametrize("mode", [0, 1])
def test_tpv_without_a_fix_is_a_void_fix(mode: int) -> None:
    fix = GpsdReports().handle(tpv(mode=mode))
    assert fix is not None and not fix.valid and (fix.lat, fix.lon) == (0.0, 0.0)


def test_tpv_without_time_is_a_void_fix_on_the_system_clock() -> None:
    fix = GpsdReports().handle({k: v for k, v in TPV.items() if k != "time"})
    assert fix is not None and not fix.valid and fix.fix_time.tzinfo is not None


def test_dgps_status_gives_quality_2() -> None:
    fix = GpsdReports().handle(tpv(status=2))
    assert fix is not None and fix.quality == 2


@pytest.mark.parametrize(("status", "quality"), [(5, 6), (6, 1)], ids=["DR", "GNSSDR"])
def test_gnss_with_dead_reckoning_is_a_gnss_fix_and_dead_reckoning_alone_an_estimate(
    status: int, quality: int
) -> None:
    """gpsd's STATUS_GNSSDR (6) is GNSS and dead reckoning combined, a fix u-blox reports
    in NMEA as quality 1; only STATUS_DR (5), without satellites, is GGA's 6, estimated."""
    fix = GpsdReports().handle(tpv(status=status))
    assert fix is not None and fix.quality == quality


def test_reports_of_another_device_are_ignored() -> None:
    assert GpsdReports(device="/dev/ttyUSB1").handle(TPV) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "3"},
        {"mode": True},
        {"mode": 7},
        {"lat": "45.8"},
        {"lat": 91.0},
        {"lon": -180.5},
        {"lat": None},
        {"lat": 10**400},  # a JSON integer no float holds
        {"time": "yesterday"},
        {"time": 1718179200},
        {"time": "9999-12-31T23:59:59.999999-05:00"},  # past the calendar's end in UTC
        {"time": "0001-01-01T00:00:00+01:00"},  # before its start
    ],
)
def test_tpv_with_a_bad_field_is_malformed(bad: dict[str, Any]) -> None:
    with pytest.raises(Malformed):
        GpsdReports().handle(tpv(**bad))


@pytest.mark.parametrize(
    "bad",
    [{"speed": -1.0}, {"speed": True}, {"speed": 10**400}, {"track": 400}, {"altMSL": "high"}],
)
def test_optional_field_out_of_range_is_dropped_not_passed_on(bad: dict[str, Any]) -> None:
    fix = GpsdReports().handle(tpv(**bad))
    assert fix is not None and fix.valid
    assert fix.speed is None or fix.speed >= 0
    assert fix.course is None or 0 <= fix.course < 360


def test_a_tpv_dated_1024_weeks_early_is_moved_past_the_week_rollover_and_counted() -> None:
    # gpsd 3.20-3.22 from 24 October 2021 on: the day after, its fixes said 10 March 2002
    counted: list[str] = []
    reports = GpsdReports(
        count=lambda key, n: counted.append(key),
        now=lambda: datetime(2021, 10, 25, 12, 0, tzinfo=UTC),
    )
    fix = reports.handle(tpv(time="2002-03-11T09:30:00.000Z"))
    assert fix is not None and fix.valid and fix.date_known
    assert fix.fix_time == datetime(2021, 10, 25, 9, 30, tzinfo=UTC)
    assert counted == ["week_rollover"]


def test_a_date_before_2017_no_rollover_explains_is_kept_as_sent_and_said_unknown() -> None:
    # 2015 against a clock in 2026: one rollover on is 2034, past what the clock allows
    counted: list[str] = []
    reports = GpsdReports(
        count=lambda key, n: counted.append(key),
        now=lambda: datetime(2026, 3, 10, tzinfo=UTC),
    )
    fix = reports.handle(tpv(time="2015-06-01T10:00:00.000Z"))
    assert fix is not None and fix.valid and not fix.date_known
    assert fix.fix_time == datetime(2015, 6, 1, 10, 0, tzinfo=UTC)
    assert counted == ["implausible_date"]


def test_a_tpv_a_rollover_would_put_past_a_synced_clock_is_kept_as_sent_and_unknown() -> None:
    # 1 January 2008 in December 2026: 1024 weeks on is August 2027, months ahead
    counted: list[str] = []
    reports = GpsdReports(
        count=lambda key, n: counted.append(key),
        now=lambda: datetime(2026, 12, 7, 21, 0, tzinfo=UTC),
        synced=lambda: True,
    )
    fix = reports.handle(tpv(time="2008-01-01T11:34:36.000Z"))
    assert fix is not None and fix.valid and not fix.date_known
    assert fix.fix_time == datetime(2008, 1, 1, 11, 34, 36, tzinfo=UTC)
    assert counted == ["implausible_date"]


def test_a_tpv_a_rollover_puts_past_an_unsynced_clock_is_moved_but_unknown() -> None:
    reports = GpsdReports(now=lambda: datetime(2026, 12, 7, 21, 0, tzinfo=UTC))
    fix = reports.handle(tpv(time="2008-01-01T11:34:36.000Z"))
    assert fix is not None and fix.valid and not fix.date_known
    assert fix.fix_time == datetime(2027, 8, 17, 11, 34, 36, tzinfo=UTC)


# -- the driver against a fake gpsd --------------------------------------------------------


class FakeGpsd:
    """A TCP server that records what the client sends and plays lines to it."""

    def __init__(self) -> None:
        self.received = b""
        self.clients: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.drivers: list[asyncio.Task[None]] = []

    async def start(self) -> "FakeGpsd":
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.append(writer)
        self.received += await reader.readline()

    async def send(self, *lines: bytes | dict[str, Any]) -> None:
        for line in lines:
            data = line if isinstance(line, bytes) else json.dumps(line).encode() + b"\r\n"
            for w in self.clients:
                w.write(data)
                await w.drain()

    def hang_up(self) -> None:
        """Close the clients' connections, as a gpsd restart does; keep listening."""
        for w in self.clients:
            w.close()
        self.clients = []
        self.received = b""

    async def close(self) -> None:
        for w in self.clients:
            w.close()
        self.clients = []
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def gpsd() -> AsyncIterator[FakeGpsd]:
    server = await FakeGpsd().start()
    yield server
    for task in server.drivers:
        task.cancel()
    await asyncio.gather(*server.drivers, return_exceptions=True)
    await server.close()


async def connected(gpsd: FakeGpsd, rec: Recorder, **options: Any) -> "asyncio.Task[None]":
    """A driver connected to the fake gpsd (cancelled when the test ends)."""
    task = asyncio.create_task(GpsdGps(GpsdOptions(port=gpsd.port, **options)).run(rec.ctx))
    gpsd.drivers.append(task)
    await wait_until(lambda: gpsd.received.endswith(b"\n"), 2, "the WATCH command")
    return task


async def test_driver_asks_gpsd_for_json_reports(gpsd: FakeGpsd) -> None:
    await connected(gpsd, Recorder("gps"))
    assert json.loads(gpsd.received.removeprefix(b"?WATCH=")) == {"enable": True, "json": True}


async def test_driver_is_ready_on_the_first_tpv_and_emits_it(gpsd: FakeGpsd) -> None:
    rec = Recorder("gps")
    await connected(gpsd, rec)
    await gpsd.send({"class": "VERSION", "release": "3.22"})
    await asyncio.sleep(0.05)
    assert rec.readies == 0
    await gpsd.send(TPV)
    await wait_until(lambda: len(rec.fixes) == 1, 2, "a fix")
    assert rec.readies == 1


async def test_hostile_lines_are_counted_and_skipped(gpsd: FakeGpsd) -> None:
    rec = Recorder("gps")
    await connected(gpsd, rec, max_line=4096)
    await gpsd.send(
        b"not json\n",
        b"[1, 2, 3]\n",
        b"[" * 3000 + b"\n",
        b'{"class": "TPV", "lat": ' + b"9" * 5000 + b"}\n",
        b'{"class": "TPV", "mode": 3, "lat": 1e999, "lon": 0, "time": "2025-01-01T00:00:00Z"}\n',
        b'{"class": "TPV", "mode": 3, "lat": 1'
        + b"0" * 400
        + b', "lon": 0, "time": "2025-01-01T00:00:00Z"}\n',
        b'{"class": "ERROR", "message": "unrecognized request"}\n',
        b'{"class": "TPV", "mode": 3, "lat": 95, "lon": 0, "time": "2025-01-01T00:00:00Z"}\n',
        TPV,
    )
    await wait_until(lambda: len(rec.fixes) == 1, 2, "the good TPV after the bad lines")
    assert rec.counts == {"bad_json": 3, "too_long": 1, "malformed": 3, "gpsd_error": 1}


async def test_a_time_with_no_utc_date_is_counted_and_the_next_tpv_still_comes(
    gpsd: FakeGpsd,
) -> None:
    """A zone offset at the end of the calendar has no UTC datetime: the OverflowError it
    raised ended the connection, and a gpsd (or a peer posing as one) sending it every
    cycle kept the node without position."""
    rec = Recorder("gps")
    task = await connected(gpsd, rec)
    await gpsd.send(tpv(time="9999-12-31T23:59:59.999999-05:00"), TPV)
    await wait_until(lambda: len(rec.fixes) == 1 or task.done(), 2, "the good TPV")
    assert not task.done() and rec.counts == {"malformed": 1}


async def test_the_driver_counts_a_week_rollover_it_corrects(gpsd: FakeGpsd) -> None:
    rec = Recorder("gps")
    await connected(gpsd, rec)
    await gpsd.send(tpv(time="2002-03-10T00:00:01.000Z"))  # gpsd 3.22, 24 October 2021
    await wait_until(lambda: len(rec.fixes) == 1, 2, "the fix")
    assert rec.fixes[0].fix_time == datetime(2021, 10, 24, 0, 0, 1, tzinfo=UTC)
    assert rec.counts == {"week_rollover": 1}


async def test_a_fix_carries_when_its_tpv_arrived(gpsd: FakeGpsd) -> None:
    """The position service bounds the receiver's time between two fixes by the time
    between their arrivals: a gpsd's fix without it escaped that bound."""
    rec = Recorder("gps")
    await connected(gpsd, rec)
    before = asyncio.get_running_loop().time()
    await gpsd.send(TPV)
    await wait_until(lambda: len(rec.fixes) == 1, 2, "the fix")
    received = rec.fixes[0].received
    assert received is not None and before <= received <= asyncio.get_running_loop().time()


async def test_a_gpsd_reporting_errors_in_a_loop_leaves_a_few_lines_in_the_journal(
    gpsd: FakeGpsd, journal: Journal
) -> None:
    """Each ERROR report was a line: 257,000 a minute from a gpsd that sends them in a loop,
    over journald's rate limit. The first ones are logged at once, the rest counted."""
    rec = Recorder("gps")
    await connected(gpsd, rec)
    error = {"class": "ERROR", "message": "unrecognized request"}
    await gpsd.send(*[error] * 2000)
    await wait_until(lambda: rec.counts["gpsd_error"] == 2000, 5, "every report read")
    said = journal.with_("reports an error")
    assert 1 <= len(said) <= FEW
    assert said[0].endswith(f"127.0.0.1:{gpsd.port} reports an error: unrecognized request")


async def test_over_long_line_in_pieces_is_counted_once(gpsd: FakeGpsd) -> None:
    rec = Recorder("gps")
    await connected(gpsd, rec, max_line=1024)
    for _ in range(10):
        await gpsd.send(b"x" * 500)
        await asyncio.sleep(0.01)
    await gpsd.send(b"\n", TPV)
    await wait_until(lambda: len(rec.fixes) == 1, 2, "the TPV after the long line")
    assert rec.counts == {"too_long": 1}


async def test_closed_connection_raises_for_a_reconnect(gpsd: FakeGpsd) -> None:
    rec = Recorder("gps")
    task = await connected(gpsd, rec)
    await gpsd.close()
    with pytest.raises(DriverError, match="closed the connection"):
        await asyncio.wait_for(task, 2)


async def test_supervisor_reconnects_after_gpsd_hangs_up(gpsd: FakeGpsd) -> None:
    rec = Recorder("gps")
    events = rec.events
    sup = rec.supervisor(SupervisorConfig(backoff_initial_s=0.05, backoff_max_s=0.1))
    task = asyncio.create_task(
        sup.supervise("gps", "gps.gpsd", lambda: GpsdGps(GpsdOptions(port=gpsd.port)))
    )
    gpsd.drivers.append(task)
    await wait_until(lambda: gpsd.received.endswith(b"\n"), 2, "the first WATCH")
    await gpsd.send(TPV)
    await wait_until(lambda: len(events) == 1, 2, "a fix")
    gpsd.hang_up()
    await wait_until(lambda: gpsd.received.endswith(b"\n"), 2, "the WATCH after reconnecting")
    await gpsd.send(TPV)
    await wait_until(lambda: len(events) == 2, 2, "a fix after reconnecting")
    status = sup.drivers["gps"]
    assert status.restarts == 1 and "closed the connection" in (status.last_error or "")


async def test_silent_gpsd_raises_after_silence_s(gpsd: FakeGpsd) -> None:
    task = await connected(gpsd, Recorder("gps"), silence_s=0.1)
    with pytest.raises(DriverError, match=r"sent nothing for 0\.1 s"):
        await asyncio.wait_for(task, 2)


async def test_unreachable_gpsd_says_to_check_that_it_runs(gpsd: FakeGpsd) -> None:
    port = gpsd.port
    await gpsd.close()
    with pytest.raises(DriverError, match="is gpsd running"):
        await GpsdGps(GpsdOptions(port=port)).run(Recorder("gps").ctx)
