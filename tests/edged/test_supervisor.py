import asyncio
import random
import time
from pathlib import Path
from typing import Any, ClassVar

from core.driver import DriverContext, DriverOptions
from core.errors import ConfigError, DriverError
from edged.config.loader import load_config
from edged.config.models import SupervisorConfig
from edged.node import Node
from edged.payloads import ERROR_TEXT_MAX
from edged.supervisor import Supervisor, backoff_delay, restart_delay
from tests.helpers.drivers import Recorder, wait_until
from tests.helpers.journal import FEW, Journal
from tests.helpers.nodes import write_config

FAST = SupervisorConfig(backoff_initial_s=0.01, backoff_max_s=0.05, stable_after_s=10)


class Ticker:
    """Emits a tick every 10 ms, forever."""

    Options = DriverOptions

    async def run(self, ctx: DriverContext) -> None:
        ctx.ready()
        while True:
            ctx.emit(("tick", ctx.name))
            await asyncio.sleep(0.01)


class Flaky:
    """Runs a little, then fails like an unplugged serial port."""

    Options = DriverOptions
    starts = 0

    async def run(self, ctx: DriverContext) -> None:
        Flaky.starts += 1
        ctx.ready()
        await asyncio.sleep(0.02)
        raise OSError(5, "Input/output error")


class MarkedFlaky(Flaky):
    """Flaky, saying each of its starts."""

    async def run(self, ctx: DriverContext) -> None:
        ctx.emit(("start", ctx.name))
        await super().run(ctx)


class Stamped:
    """Runs 20 ms, then fails; notes when each of its starts began."""

    Options = DriverOptions
    starts: ClassVar[list[float]] = []

    async def run(self, ctx: DriverContext) -> None:
        Stamped.starts.append(time.monotonic())
        ctx.ready()
        await asyncio.sleep(0.02)
        raise OSError(5, "Input/output error")


class Garbled:
    """Fails with a device's whole garbled read in its message."""

    Options = DriverOptions

    async def run(self, ctx: DriverContext) -> None:
        ctx.ready()
        await asyncio.sleep(0.01)
        raise ValueError("cannot parse " + "\x00garbage" * 100_000)


class Misconfigured:
    Options = DriverOptions

    async def run(self, ctx: DriverContext) -> None:
        raise ConfigError("route.json", ["route: no such file"])


class Learner:
    """Notes where each of its starts may keep what it learned about the machine."""

    Options = DriverOptions
    saw: ClassVar[list[Path | None]] = []

    async def run(self, ctx: DriverContext) -> None:
        Learner.saw.append(ctx.state_dir)
        ctx.ready()
        await asyncio.Event().wait()


async def run_for(sup: Supervisor, seconds: float, **drivers: Any) -> None:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(sup.supervise(name, "test", cls)) for name, cls in drivers.items()]
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()


async def test_a_crashing_driver_is_restarted_with_its_error_recorded() -> None:
    Flaky.starts = 0
    sup = Recorder().supervisor(FAST)
    await run_for(sup, 0.5, flaky=Flaky)
    status = sup.drivers["flaky"]
    assert Flaky.starts >= 3
    assert status.restarts >= 2
    assert status.last_error == "OSError: [Errno 5] Input/output error"


async def test_a_drivers_error_in_health_is_clipped_whatever_its_message_held() -> None:
    """Health carries `last_error` in every report until the next error: a 1 MB message
    must not ride in each of them."""
    sup = Recorder().supervisor(FAST)
    await run_for(sup, 0.2, garbled=Garbled)
    said = sup.statuses()[0].last_error or ""
    assert said.startswith("ValueError: cannot parse") and said.endswith("…")
    assert len(said) == ERROR_TEXT_MAX


async def test_other_drivers_keep_running_while_one_crashes() -> None:
    """The ticking driver goes on between each two starts of the crashing one: counted by
    their order, not by time (a busy machine ticks less often, never not at all: the
    ticker's 10 ms are always due before the crashing one's 20 ms run ends)."""
    rec = Recorder(kinds=(tuple,))
    sup = rec.supervisor(FAST)
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(sup.supervise(name, "test", cls))
            for name, cls in (("gps", Ticker), ("flaky", MarkedFlaky))
        ]
        await wait_until(lambda: rec.events.count(("start", "flaky")) >= 4, 10, "4 starts")
        for t in tasks:
            t.cancel()
    order = "".join(
        "s" if e == ("start", "flaky") else "t"
        for e in rec.events
        if e in (("start", "flaky"), ("tick", "gps"))
    )
    between = order.strip("t").split("s")[1:-1]  # the ticks between each two starts
    assert len(between) >= 3 and all(between), order
    assert sup.drivers["gps"].restarts == 0


async def test_state_shows_backoff_between_restarts() -> None:
    slow = SupervisorConfig(backoff_initial_s=5, backoff_max_s=5)
    sup = Recorder().supervisor(slow)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sup.supervise("flaky", "test", Flaky))
        await asyncio.sleep(0.1)
        assert sup.drivers["flaky"].state == "backoff"
        task.cancel()
    assert sup.drivers["flaky"].state == "stopped"


async def test_a_running_driver_reports_running() -> None:
    sup = Recorder().supervisor(FAST)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sup.supervise("gps", "gps.sim", Ticker))
        await asyncio.sleep(0.05)
        assert sup.statuses()[0].state == "running"
        task.cancel()


async def test_a_config_error_marks_the_driver_failed_without_restarting() -> None:
    rec = Recorder()
    sup = rec.supervisor(FAST)
    await run_for(sup, 0.2, bad=Misconfigured)
    status = sup.drivers["bad"]
    assert status.state == "failed" and status.restarts == 0
    assert "no such file" in (status.last_error or "")
    assert rec.counters.snapshot() == {"driver.bad.failed": 1}


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    cfg = SupervisorConfig(backoff_initial_s=1, backoff_max_s=30)
    rng = random.Random(1)
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (40, 30)]:
        delays = [backoff_delay(failures, cfg, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 10, "no jitter"


async def test_the_first_failure_in_a_row_restarts_at_once_the_next_backs_off() -> None:
    """A GPIO driver down is a panic button blind: with the default 1 s backoff from the
    first failure, it was blind 0.5-1 s, and a press in that window was lost."""
    Stamped.starts = []
    sup = Recorder().supervisor(SupervisorConfig())  # the defaults: backoff from 1 s
    await run_for(sup, 0.4, flaky=Stamped)
    assert len(Stamped.starts) == 2  # the third start waits 0.5-1 s
    assert Stamped.starts[1] - Stamped.starts[0] < 0.02 + 0.05


def test_restart_delay_is_nothing_first_then_the_backoff_one_start_later() -> None:
    cfg = SupervisorConfig(backoff_initial_s=1, backoff_max_s=30)
    assert restart_delay(1, cfg, random.Random(1)) == 0.0
    for failures in (2, 3, 6, 40):
        rng_a, rng_b = random.Random(failures), random.Random(failures)
        assert restart_delay(failures, cfg, rng_a) == backoff_delay(failures - 1, cfg, rng_b)


async def test_every_start_of_a_nodes_driver_gets_the_nodes_state_directory(
    tmp_path: Path,
) -> None:
    """Beside the outbox: where a reader keeps its layout check's agreement (drivers.nfc)."""
    (tmp_path / "etc").mkdir()
    config = write_config(tmp_path / "etc", 1883)
    loaded = load_config(config)
    node = Node(loaded, config_path=config)
    Learner.saw = []
    await run_for(node.supervisor, 0.2, learner=Learner)
    assert Learner.saw and set(Learner.saw) == {loaded.outbox.path.parent}
    assert loaded.outbox.path.parent == tmp_path / "etc"


class Unplugged:
    """Fails at once, as a driver whose device is not there."""

    Options = DriverOptions

    async def run(self, ctx: DriverContext) -> None:
        raise OSError(2, "No such file or directory")


async def test_a_driver_failing_for_days_is_still_restarted_not_a_crash_of_the_node() -> None:
    """2 ** 1024 is no float (OverflowError): the 1025th failure in a row, 17 hours of an
    unplugged device at the default 60 s cap (17 minutes at a 1 s cap), raised out of the
    supervisor and took every other driver and the node down with it."""
    tiny = SupervisorConfig(backoff_initial_s=1e-6, backoff_max_s=1e-6, stable_after_s=10)
    sup = Recorder().supervisor(tiny)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sup.supervise("gps", "test", Unplugged))
        await asyncio.sleep(0)  # supervise registers the driver
        while sup.drivers["gps"].restarts <= 1100 and not task.done():
            await asyncio.sleep(0.01)
        assert not task.done(), task.exception()
        task.cancel()


async def test_every_failure_and_restart_of_a_driver_is_in_the_journal(journal: Journal) -> None:
    """A crash-looping driver is no flood to summarise: each failure and each restart is
    what an operator acts on, and the backoff already spaces them out."""
    rec = Recorder()
    sup = Supervisor(FAST, rec.bus, rec.counters)
    task = asyncio.create_task(sup.supervise("flaky", "test.flaky", Flaky))
    try:
        while (flaky := sup.drivers.get("flaky")) is None or flaky.restarts < 3 * FEW:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(journal.with_("driver flaky failed (OSError")) >= 3 * FEW
    assert len(journal.with_("driver flaky running")) >= 3 * FEW


class UsbReaderAway:
    """A USB reader gone (libnfc: "no such USB reader"): each start fails until it is back."""

    Options = DriverOptions
    back: ClassVar[bool] = False

    async def run(self, ctx: DriverContext) -> None:
        if not UsbReaderAway.back:
            raise DriverError("cannot open NFC reader acr122_usb: no such USB reader")
        ctx.ready()
        await asyncio.Event().wait()


async def test_a_usb_device_plugged_back_restarts_its_driver_before_its_backoff_ends(
    tmp_path: Path,
) -> None:
    """An ACR122U unplugged for minutes names no device file: its node comes back in
    /dev/bus/usb (`Opens.plugged_in`). The backoff grown meanwhile (a minute) kept the
    reader down that long after it was plugged back in."""
    usb = tmp_path / "usb"
    (usb / "001").mkdir(parents=True)
    (usb / "001" / "001").touch()  # the root hub
    slow = SupervisorConfig(backoff_initial_s=20, backoff_max_s=60, stable_after_s=30)
    sup = Recorder().supervisor(slow)
    UsbReaderAway.back = False
    task = asyncio.create_task(
        sup.supervise("reader", "nfc.libnfc", UsbReaderAway, plugged_in=str(usb))
    )
    try:
        await wait_until(
            lambda: "reader" in sup.drivers and sup.drivers["reader"].failures >= 2, 2, "backoff"
        )
        (usb / "001" / "001").unlink()  # something else leaves: no reason to restart
        await asyncio.sleep(0.6)
        assert sup.drivers["reader"].restarts == 2
        UsbReaderAway.back = True
        (usb / "001" / "007").touch()  # the reader, plugged back in
        plugged = time.monotonic()
        await wait_until(lambda: sup.drivers["reader"].state == "running", 3, "running")
        assert time.monotonic() - plugged < 1.5
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_usb_nfc_reader_says_where_it_appears_when_plugged_in() -> None:
    from drivers.nfc.libnfc import LibnfcOptions, LibnfcReader

    assert LibnfcReader.opens(LibnfcOptions(connstring="acr122_usb")).plugged_in == "/dev/bus/usb"
    serial = LibnfcReader.opens(LibnfcOptions(connstring="pn532_uart:/dev/ttyUSB0"))
    assert serial.plugged_in == "" and serial.devices[0].path == "/dev/ttyUSB0"


class OnWhileThere:
    """A driver on a USB serial adapter in a reset loop (a Pi short of power, a flaky hub):
    it runs while its device file is there and fails when the file goes."""

    Options = DriverOptions
    path: ClassVar[Path]

    async def run(self, ctx: DriverContext) -> None:
        if not OnWhileThere.path.exists():
            raise DriverError("could not open port: No such file or directory")
        ctx.ready()
        while OnWhileThere.path.exists():
            await asyncio.sleep(0.01)
        raise OSError(5, "Input/output error")


async def test_a_device_file_flapping_does_not_restart_its_driver_at_each_return(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A device that comes and goes every fraction of a second (a USB reset loop) restarted
    its driver at each return, whatever the backoff: a restart storm (each one a failure
    logged to the kept journal). One early restart, then the backoff is waited in full."""
    import edged.supervisor

    monkeypatch.setattr(edged.supervisor, "APPEAR_POLL_S", 0.02)
    OnWhileThere.path = tmp_path / "ttyUSB0"
    slow = SupervisorConfig(backoff_initial_s=20, backoff_max_s=60, stable_after_s=30)
    sup = Recorder().supervisor(slow)
    stop = asyncio.Event()

    async def flap() -> None:
        while not stop.is_set():
            OnWhileThere.path.touch()
            await asyncio.sleep(0.1)
            OnWhileThere.path.unlink()
            await asyncio.sleep(0.1)

    flapping = asyncio.create_task(flap())
    task = asyncio.create_task(
        sup.supervise("reader", "nfc.libnfc", OnWhileThere, files=(str(OnWhileThere.path),))
    )
    try:
        await asyncio.sleep(1.0)  # ~5 returns of the file
        # at once after the first failure, early after the second, then 20 s of backoff
        assert sup.drivers["reader"].restarts <= 3
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, flapping, return_exceptions=True)
