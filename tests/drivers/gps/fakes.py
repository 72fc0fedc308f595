"""What the GPS driver tests share: NMEA lines as a receiver sends them, and a receiver
on a pty feeding the real `gps.nmea-serial` driver."""

import asyncio
from pathlib import Path

from core.driver import DriverContext
from core.events import Fix
from drivers.gps.serial import NmeaSerialGps, NmeaSerialOptions
from hil.gps.emulator import NmeaEmulator, epochs
from tests.helpers.drivers import wait_until
from tests.helpers.host import TestHost

CORPUS = Path(__file__).resolve().parent / "corpus"


def nmea(body: str) -> bytes:
    """`$body*hh\\r\\n` with the checksum a receiver would send."""
    checksum = 0
    for byte in body.encode("ascii"):
        checksum ^= byte
    return f"${body}*{checksum:02X}\r\n".encode("ascii")


def recording(name: str) -> list[bytes]:
    """The bursts of corpus log `name` (corpus/README.md), each line with its CRLF."""
    raw = (CORPUS / f"{name}.nmea").read_bytes()
    return [b.strip(b"\r\n") + b"\r\n" for b in raw.split(b"\r\n\r\n") if b.strip()]


async def through_driver(
    raw: list[bytes], link: Path, node: TestHost, *, fixes: int, burst_s: float, what: str
) -> None:
    """`raw` (a log's lines) sent by the HIL emulator on a pty behind `link` to the real
    `gps.nmea-serial` driver, its fixes on `node`'s bus (where the services under test
    listen), the shortest interval of the log replayed in `burst_s`; returns once `fixes`
    fixes, valid or void, came and a second more for any that should not."""
    bursts = epochs(raw)
    shortest = min(gap for gap, _ in bursts)
    ctx = DriverContext("gps", node.bus, node.counters)
    driver = NmeaSerialGps(NmeaSerialOptions(port=str(link)))
    emulator = NmeaEmulator(raw, link, speed=shortest / burst_s, loop=False)
    emulator.start(after_s=0.5)  # the driver opens the pty meanwhile
    task = asyncio.create_task(driver.run(ctx))
    try:
        await wait_until(
            lambda: len(node.of_type(Fix)) >= fixes, 10 + len(bursts) * burst_s * 2, what
        )
        await asyncio.sleep(1.0)  # anything more that should not come
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        emulator.close()
