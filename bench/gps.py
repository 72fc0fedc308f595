"""GPS driver throughput and CPU, against baselines measured in the same run.

    python -m bench.gps --json            # the full run (about 45 s)
    python -m bench.gps --quick --json    # a smoke test: small log, 2 s per CPU phase
    python -m bench.gps --seconds 30      # longer CPU phases, progress on stderr

Phases:

1. throughput - in this process, on a generated u-blox M8 drive at 10 Hz (RMC VTG GGA GSA
                GSA: five sentences per epoch, all of a parsed type): bytes fed in 4 KiB
                reads through the driver's decoder (line splitting, checksums, parsing,
                epoch merging) and every Fix through `PositionService.on_fix` (real
                service on the bus of a host of its own, publications counted). `sentences_per_s` is
                the best of `--rounds` rounds. Same for the default u-blox output with
                GSV and GLL (11 sentences per epoch), and, as baselines, line splitting
                alone and pynmea2 1.19 parsing the lines and reading the fields a Fix
                needs, without merging or service (null when pynmea2 is not installed).
2. cpu        - the emulator in a child process (`python -m hil.gps.emulator`, so its CPU
                is not counted) replays the 10 Hz log at 115200 baud in 32-byte chunks, as
                a UART FIFO delivers; this process runs the real `gps.nmea-serial` driver
                on its pty with the position service behind it. `cpu_pct_10hz` is this
                process's user + system CPU time (getrusage) over the wall time, in % of
                one core. Measured with the default `batch_s` (0.02), with `batch_s` = 0
                (a wake-up per chunk), and for a bare reader that only reads (the floor).
"""

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bench.common import rnd, say

if TYPE_CHECKING:
    from pydantic import BaseModel

    from edged.outbox import PutResult
    from edged.topics import TopicSpec

ROOT = Path(__file__).resolve().parents[1]
LOG_10HZ = ROOT / "hil" / "gps" / "logs" / "ublox-m8-10hz.nmea"
READ = 4096


class BenchHost:
    """The host a PositionService is built on (`edged.host.Host`): a real bus, clock and
    counters, state in memory; publications are only counted."""

    def __init__(self) -> None:
        from core.bus import Bus
        from core.counters import Counters
        from edged.clock import Clock
        from edged.config.models import NodeConfig, Profile
        from edged.host import MemoryState

        self.node = NodeConfig(fleet="bench", id="gps-1", profile=Profile.SHUTTLE)
        self.clock = Clock()
        self.counters = Counters()
        self.bus = Bus(self.counters)
        self.state = MemoryState()
        self.published = 0

    def publish(
        self,
        spec: "TopicSpec",
        body: "BaseModel",
        *,
        name: str | None = None,
        qos: int | None = None,
    ) -> "asyncio.Future[PutResult]":
        self.published += 1
        return cast("asyncio.Future[PutResult]", Future())  # never awaited by services


def position_service() -> tuple[Any, BenchHost]:
    """The real service with its default config, on a host of its own."""
    from edged.config.services import PositionServiceConfig
    from edged.services.position import PositionService

    host = BenchHost()
    return PositionService(host, PositionServiceConfig()), host


def generated_log(minutes: float, family: Callable[..., list[str]], **kw: Any) -> tuple[bytes, int]:
    """A drive of `minutes` at 10 Hz, back and forth along the road: (bytes, sentences)."""
    from hil.gps.make_logs import drive

    lines: list[str] = []
    start = datetime(2025, 6, 12, 6, 0, tzinfo=UTC)
    for state in drive(start, 10, minutes * 60):
        lines += family(state, **kw)
    return "".join(f"{line}\r\n" for line in lines).encode("ascii"), len(lines)


def chunks(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), READ):
        yield data[i : i + READ]


def rate_decoder(data: bytes, sentences: int) -> tuple[float, int, int]:
    """Sentences/s through decoder + PositionService.on_fix; (rate, fixes, publications)."""
    from drivers.gps.decoder import NmeaDecoder

    service, node = position_service()
    decoder = NmeaDecoder()
    on_fix = service.on_fix
    fixes = 0
    parts = list(chunks(data))
    t0 = time.perf_counter()
    for part in parts:
        for fix in decoder.feed(part):
            on_fix(fix)
            fixes += 1
    elapsed = time.perf_counter() - t0
    return sentences / elapsed, fixes, node.published


def rate_split_only(data: bytes, sentences: int) -> float:
    """The floor: line splitting and the `$` search, nothing parsed."""
    from drivers.gps.nmea import LineSplitter

    splitter = LineSplitter()
    parts = list(chunks(data))
    t0 = time.perf_counter()
    n = 0
    for part in parts:
        n += len(splitter.feed(part))
    return sentences / (time.perf_counter() - t0)


PYNMEA2_FIELDS = {  # what a Fix needs from each type; pynmea2 converts on attribute access
    "RMC": (
        "timestamp",
        "status",
        "latitude",
        "longitude",
        "spd_over_grnd",
        "true_course",
        "datestamp",
    ),
    "GGA": (
        "timestamp",
        "latitude",
        "longitude",
        "gps_qual",
        "num_sats",
        "horizontal_dil",
        "altitude",
    ),
    "VTG": ("true_track", "spd_over_grnd_kts"),
    "GSA": ("mode_fix_type", "hdop"),
}


def rate_pynmea2(data: bytes) -> float | None:
    """pynmea2 parsing plus reading the fields a Fix needs (no line splitting, no epoch
    merge, no service): the library this driver does not use, for comparison."""
    try:
        import pynmea2  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        return None
    lines = data.decode("ascii").splitlines()
    t0 = time.perf_counter()
    for line in lines:
        msg = pynmea2.parse(line, check=True)
        for name in PYNMEA2_FIELDS.get(msg.sentence_type, ()):
            getattr(msg, name)
    return len(lines) / (time.perf_counter() - t0)


def best(rounds: int, measure: Callable[[], float | None]) -> float | None:
    values = [v for v in (measure() for _ in range(rounds)) if v is not None]
    return max(values) if values else None


# -- phase 2: CPU while following a 10 Hz receiver -------------------------------------------


class Seen:
    """What the driver did: fixes on the bus, and whether it said ready."""

    def __init__(self) -> None:
        self.fixes = 0
        self.ready = False

    def fix(self, _fix: Any) -> None:
        self.fixes += 1

    def said_ready(self) -> None:
        self.ready = True


async def read_only(port: str, stop: asyncio.Event) -> int:
    """The floor: the same port, read on readiness, bytes thrown away."""
    import serial

    ser = serial.Serial(port, 115200, timeout=0, exclusive=True)
    loop = asyncio.get_running_loop()
    total = 0

    def readable() -> None:
        nonlocal total
        with contextlib.suppress(BlockingIOError):
            total += len(os.read(ser.fileno(), 65536))

    loop.add_reader(ser.fileno(), readable)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(ser.fileno())
        ser.close()
    return total


async def follow(port: str, seconds: float, batch_s: float | None) -> dict[str, Any]:
    """CPU of this process following the emulator for `seconds` (None: bare reader)."""
    from core.driver import DriverContext
    from core.events import Fix
    from drivers.gps.serial import NmeaSerialGps, NmeaSerialOptions

    _service, node = position_service()  # on the bus, as in a node
    seen = Seen()
    node.bus.subscribe(Fix, seen.fix)
    ctx = DriverContext("gps", node.bus, node.counters, on_ready=seen.said_ready)
    stop = asyncio.Event()
    task: asyncio.Task[Any]
    if batch_s is None:
        task = asyncio.create_task(read_only(port, stop))
    else:
        driver = NmeaSerialGps(NmeaSerialOptions(port=port, baud=115200, batch_s=batch_s))
        task = asyncio.create_task(driver.run(ctx))
        deadline = time.monotonic() + 5
        while not seen.ready:
            if task.done():
                task.result()  # raises the driver's error
            if time.monotonic() > deadline:
                raise RuntimeError("the driver did not become ready on the emulator")
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # settle
    fixes0 = seen.fixes
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    await asyncio.sleep(seconds)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    fixes = seen.fixes - fixes0
    stop.set()
    if batch_s is None:
        await task
    else:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {
        "cpu_pct": 100 * cpu / (t1 - t0),
        "fixes_per_s": fixes / (t1 - t0),
        "counted_errors": {
            k.removeprefix("driver.gps."): n for k, n in node.counters.snapshot().items()
        },
        "published": node.published,
    }


def start_emulator(link: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "hil.gps.emulator", str(LOG_10HZ), "--link", str(link)]
    cmd += ["--speed", "1", "--baud", "115200", "--chunk", "32"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"the emulator did not start: {line!r}")
    return proc


async def measure_cpu(seconds: float, quiet: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gps-") as tmp:
        for key, batch_s in (("default", 0.02), ("unbatched", 0.0), ("read_only", None)):
            link = Path(tmp) / f"gps-{key}"
            proc = start_emulator(link)
            try:
                say(quiet, f"cpu: {key} for {seconds:g} s")
                out[key] = await follow(str(link), seconds, batch_s)
            finally:
                proc.terminate()
                proc.wait(timeout=5)
                if proc.stdout is not None:
                    proc.stdout.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.gps")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--quick", action="store_true", help="smoke test sizes")
    ap.add_argument("--seconds", type=float, default=10.0, help="each CPU phase")
    ap.add_argument("--minutes", type=float, default=30.0, help="drive length for throughput")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    quiet = args.json
    if args.quick:
        args.seconds, args.minutes, args.rounds = 2.0, 2.0, 1
    from hil.gps.make_logs import ublox_m8

    say(quiet, f"generating a {args.minutes:g} min drive at 10 Hz")
    data, sentences = generated_log(args.minutes, ublox_m8, gsv_and_gll=False)
    data_gsv, sentences_gsv = generated_log(args.minutes / 2, ublox_m8)
    say(quiet, f"throughput: {sentences} sentences, {len(data) / 1e6:.1f} MB")
    rates = [rate_decoder(data, sentences) for _ in range(args.rounds)]
    rate, fixes, published = max(rates)
    rate_gsv = best(args.rounds, lambda: rate_decoder(data_gsv, sentences_gsv)[0])
    split = best(args.rounds, lambda: rate_split_only(data, sentences))
    say(quiet, "baseline: pynmea2")
    pynmea = best(args.rounds, lambda: rate_pynmea2(data[: data.index(b"\n", len(data) // 4) + 1]))
    cpu = asyncio.run(measure_cpu(args.seconds, quiet))
    result = {
        "bench": "gps",
        "sentences_per_s": round(rate),
        "cpu_pct_10hz": rnd(cpu["default"]["cpu_pct"], 2),
        "aims": {"sentences_per_s": 50_000, "cpu_pct_10hz": 2.0},
        "throughput": {
            "sentences": sentences,
            "fixes": fixes,
            "published": published,
            "sentences_per_s_with_gsv_gll": rnd(rate_gsv, 0),
            "baseline_split_only_per_s": rnd(split, 0),
            "baseline_pynmea2_parse_and_fields_per_s": rnd(pynmea, 0),
        },
        "cpu_10hz_115200": {
            key: {k: rnd(v, 2) if isinstance(v, float) else v for k, v in phase.items()}
            for key, phase in cpu.items()
        },
        "seconds": args.seconds,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
