"""Full health reports on change and on connect, short beats otherwise."""

from typing import Any

from edged.config.models import HealthConfig
from edged.heartbeat import HealthReporter
from edged.payloads import (
    AccessHealth,
    DriverStatus,
    Health,
    MqttHealth,
    OutboxHealth,
    WifiHealth,
)
from tests.drivers.gpio.fakes import SupervisedBoard, mock_pins
from tests.helpers.drivers import Recorder


def health(**change: Any) -> Health:
    outbox = OutboxHealth(
        depth=change.pop("depth", 0),
        bytes=0,
        oldest_age_s=None,
        in_flight=0,
        by_class={},
        thin_level=0,
        refused=change.pop("refused", 0),
        thinned=0,
    )
    base: dict[str, Any] = {
        "uptime_s": 100.0,
        "rss_mb": 50.0,
        "cpu_pct": 2.0,
        "loop_lag_ms": 1.0,
        "clock": "ntp",
        "connected": True,
        "reconnects": 0,
        "outbox": outbox,
        "drivers": [DriverStatus(name="gps", driver="gps.sim", state="running")],
        "errors": {"driver.gps.fixes": 10},
        "mqtt": MqttHealth(protocol="5", fallback=False),
    }
    base.update(change)
    return Health(**base)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reporter(**cfg: Any) -> tuple[HealthReporter, Clock]:
    clock = Clock()
    r = HealthReporter(HealthConfig(**cfg), clock)
    assert r.report(health(), 1) is not None  # the first look: full
    return r, clock


def kind(report: Any) -> str | None:
    return None if report is None else report[0].name


def test_the_first_look_is_a_full_report_then_beats_only_every_beat_s() -> None:
    r, clock = reporter(beat_s=300)
    clock.now += 30
    assert kind(r.report(health(uptime_s=130.0), 1)) is None
    clock.now += 270
    report = r.report(health(uptime_s=400.0, cpu_pct=3.5), 1)
    assert kind(report) == "health/beat"
    assert report is not None and report[1].model_dump()["cpu_pct"] == 3.5


def test_a_new_session_gets_a_full_report() -> None:
    r, clock = reporter()
    clock.now += 30
    assert kind(r.report(health(), 2)) == "health"


def test_counters_that_only_grow_do_not_make_a_full_report() -> None:
    r, clock = reporter()
    clock.now += 30
    assert kind(r.report(health(errors={"driver.gps.fixes": 40}), 1)) is None


def test_a_new_kind_of_error_makes_a_full_report() -> None:
    r, clock = reporter()
    clock.now += 30
    errors = {"driver.gps.fixes": 40, "cmd.bad_json": 1}
    assert kind(r.report(health(errors=errors), 1)) == "health"


def test_a_driver_state_change_makes_a_full_report() -> None:
    r, clock = reporter()
    clock.now += 30
    drivers = [DriverStatus(name="gps", driver="gps.sim", state="backoff", restarts=1)]
    assert kind(r.report(health(drivers=drivers), 1)) == "health"


def test_thresholds_crossed_make_a_full_report_and_small_moves_do_not() -> None:
    r, clock = reporter(depth_above=1000, rss_step_mb=10)
    for change in ({"depth": 999}, {"rss_mb": 59.0}, {"cpu_pct": 79.0}, {"loop_lag_ms": 900.0}):
        clock.now += 30
        assert kind(r.report(health(**change), 1)) is None, change
    for change in ({"depth": 1001}, {"rss_mb": 60.5}, {"cpu_pct": 81.0}, {"refused": 1}):
        r, clock = reporter(depth_above=1000, rss_step_mb=10)
        clock.now += 30
        assert kind(r.report(health(**change), 1)) == "health", change


def test_a_full_report_at_least_every_full_every_s() -> None:
    r, clock = reporter(full_every_s=3600, beat_s=300)
    clock.now += 3600
    assert kind(r.report(health(), 1)) == "health"


def test_beat_s_zero_keeps_the_former_rule_a_full_report_each_time() -> None:
    r, clock = reporter(beat_s=0)
    clock.now += 30
    assert kind(r.report(health(), 1)) == "health"


def test_republish_forces_a_full_report() -> None:
    r, clock = reporter()
    clock.now += 1
    assert kind(r.report(health(), 1, full=True)) == "health"


def hotspot(*, internet: bool, clients: int) -> WifiHealth:
    return WifiHealth(
        clients=clients,
        sessions=clients,
        sessions_today=clients,
        rx_bytes=clients * 1000,
        tx_bytes=clients * 5000,
        internet=internet,
        pages=0,
    )


def test_the_hotspot_losing_the_internet_makes_a_full_report_and_its_counts_do_not() -> None:
    r, clock = reporter()
    clock.now += 30
    assert kind(r.report(health(wifi=hotspot(internet=True, clients=2)), 1)) == "health"
    clock.now += 30
    assert kind(r.report(health(wifi=hotspot(internet=True, clients=9)), 1)) is None
    clock.now += 30
    assert kind(r.report(health(wifi=hotspot(internet=False, clients=9)), 1)) == "health"


def lists(version: int = 1, held_s: int = 60, expired: bool = False) -> AccessHealth:
    return AccessHealth(version=version, held_s=held_s, age_s=held_s, expired=expired)


def test_access_lists_expiring_make_a_full_report_and_their_age_does_not() -> None:
    r, clock = reporter()
    clock.now += 30
    assert kind(r.report(health(access=lists()), 1)) == "health"
    clock.now += 30
    assert kind(r.report(health(access=lists(held_s=90)), 1)) is None
    clock.now += 30
    assert kind(r.report(health(access=lists(held_s=120, expired=True)), 1)) == "health"


def test_new_access_lists_make_a_full_report() -> None:
    r, clock = reporter()
    clock.now += 30
    assert kind(r.report(health(access=lists()), 1)) == "health"
    clock.now += 30
    assert kind(r.report(health(access=lists(version=2, held_s=0)), 1)) == "health"


async def test_a_gpio_driver_failure_makes_a_full_report_naming_it() -> None:
    """While the GPIO driver is down its panic button is blind, however briefly (the first
    restart is at once): the next full report, retained, tells ops it happened and why."""
    with mock_pins():
        gpio = SupervisedBoard(Recorder("gpio"), panic={"pin": 19})
        r = HealthReporter(HealthConfig(beat_s=300))

        def now() -> Health:
            errors = gpio.host.counters.snapshot()
            return health(drivers=gpio.supervisor.statuses(), errors=errors)

        try:
            await gpio.start()
            assert kind(r.report(now(), 1)) == "health"
            assert kind(r.report(now(), 1)) is None
            await gpio.fail_once()
            report = r.report(now(), 1)
        finally:
            await gpio.stop()
    assert report is not None and isinstance(report[1], Health)
    (status,) = report[1].drivers
    assert (status.name, status.restarts, status.last_error) == (
        "gpio",
        1,
        "OSError: pin write failed",
    )
    assert report[1].errors["driver.gpio.crash"] == 1
