"""The one DriverContext: the bus, the driver's own counters, ready, subscriptions dropped."""

from core.bus import Bus
from core.counters import Counters
from core.driver import Device, DriverContext, DriverReady
from core.events import Tap, Unlock


def test_a_context_emits_on_the_bus_and_counts_under_the_drivers_name() -> None:
    counters = Counters()
    bus = Bus(counters)
    taps: list[Tap] = []
    bus.subscribe(Tap, taps.append)
    ctx = DriverContext("front-reader", bus, counters)
    ctx.emit(Tap(b"\x04\x01\x02\x03", "front-reader", 1.0))
    ctx.count("bad_uid")
    ctx.count("bad_uid", 2)
    assert taps == [Tap(b"\x04\x01\x02\x03", "front-reader", 1.0)]
    assert ctx.emitted == 1
    assert counters.snapshot() == {"driver.front-reader.bad_uid": 3}
    assert ctx.log.name == "edged.driver.front-reader"


def test_ready_is_handed_to_whoever_runs_the_driver() -> None:
    said: list[str] = []
    ctx = DriverContext("gps", Bus(Counters()), Counters(), on_ready=lambda: said.append("ready"))
    ctx.ready()
    ctx.ready()
    assert said == ["ready", "ready"]
    DriverContext("gps", Bus(Counters()), Counters()).ready()  # nobody listening: fine


def test_the_first_ready_of_each_start_tells_the_services() -> None:
    bus = Bus(Counters())
    heard: list[DriverReady] = []
    bus.subscribe(DriverReady, heard.append)
    for _ in range(2):  # two starts of the driver, each in its own context
        ctx = DriverContext("gpio", bus, Counters())
        ctx.ready()
        ctx.ready()  # a driver may say it again (a GPS talking again): not a new start
    assert [e.driver for e in heard] == ["gpio", "gpio"]
    assert heard[0].ts <= heard[1].ts


def test_close_drops_what_the_driver_subscribed_and_nothing_else() -> None:
    bus = Bus(Counters())
    seen_by_driver: list[Unlock] = []
    seen_by_others: list[Unlock] = []
    bus.subscribe(Unlock, seen_by_others.append)
    ctx = DriverContext("gpio", bus, Counters())
    ctx.subscribe(Unlock, seen_by_driver.append)
    bus.emit(Unlock(1.0, 0.0))
    ctx.close()
    bus.emit(Unlock(2.0, 0.0))
    assert seen_by_driver == [Unlock(1.0, 0.0)]
    assert seen_by_others == [Unlock(1.0, 0.0), Unlock(2.0, 0.0)]


def test_a_device_kind_comes_from_its_name() -> None:
    assert Device.at("/dev/ttyUSB0", "port") == Device("/dev/ttyUSB0", "serial", "port")
    assert Device.at("/dev/i2c-1", "connstring").kind == "i2c"
    assert Device.at("/dev/spidev0.0", "connstring").kind == "spi"
    assert Device.at("/dev/gpiochip0", "pin_factory").kind == "gpio"
