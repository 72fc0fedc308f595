"""The kiosk service on a real node (outbox on disk, no broker): its view from the other
services' events, its commands, rider requests."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.errors import EdgedError
from edged.clock import Clock
from edged.commands.router import IncomingCommand
from edged.config.kiosk import KioskConfig
from edged.errors import CommandError
from edged.kiosk.marks import MAX_MARKS
from edged.kiosk.models import RequestRefused, RiderPost
from edged.node import Node
from edged.services.events import FixStatus, JourneyChanged, ModeChanged, OccupancyChanged
from edged.services.kiosk import (
    KEEP_REQUESTS,
    MESSAGES_KEY,
    REQUESTS_KEY,
    SCHEDULE_KEY,
    KioskService,
    default_buttons,
)
from tests.helpers.host import TestHost
from tests.helpers.kiosk import AUBUSSON, FELLETIN, T0, FakeTime, Nodes, at, stored

PARIS = ZoneInfo("Europe/Paris")
ENGLAND = "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
WALES = "🏴\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f"
SMUGGLED = "Bonjour\U000e0069\U000e0067\U000e006e\U000e006f\U000e0072\U000e0065"
"""Tag characters outside a flag: invisible text riders never see."""


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def slot(sid: str = "cpam", **kw: Any) -> dict[str, Any]:
    return {"id": sid, "provider": "CPAM", **kw}


# -- wiring -------------------------------------------------------------------------------


def routed(node: Node, config: KioskConfig) -> KioskService:
    """A kiosk service on the node, its commands in the node's router."""
    service = KioskService(node.host, config)
    for spec in service.commands():
        node.router.add(spec)
    return service


async def test_the_kiosk_declares_its_three_commands(node: Node) -> None:
    routed(node, KioskConfig(port=0))
    assert {"kiosk.schedule", "kiosk.message", "kiosk.ack"} <= set(node.router.names)
    assert {node.router.scope_of(n) for n in ("kiosk.schedule", "kiosk.message")} == {"operate"}


async def test_a_command_through_the_router_gets_an_ok_reply(node: Node) -> None:
    routed(node, KioskConfig(port=0))
    payload = json.dumps({"id": "c1", "args": {"text": "Bonjour"}}).encode()
    outcome = await node.router.handle(IncomingCommand("kiosk.message", payload))
    assert outcome.reply.ok and outcome.reply.result["lang"] == "fr"


async def test_bad_args_through_the_router_get_a_bad_args_reply(node: Node) -> None:
    routed(node, KioskConfig(port=0))
    payload = json.dumps({"id": "c2", "args": {"text": "x", "colour": "red"}}).encode()
    outcome = await node.router.handle(IncomingCommand("kiosk.message", payload))
    assert outcome.reply.error is not None and outcome.reply.error.code == "bad_args"
    assert "colour" in outcome.reply.error.message


def test_buttons_default_by_profile() -> None:
    assert default_buttons("shuttle") == ["mediator", "service"]
    assert default_buttons("venue") == ["pickup", "mediator", "service"]
    assert default_buttons("truck") == ["pickup", "mediator", "service"]


async def test_configured_buttons_replace_the_profile_default(node: Node) -> None:
    k = KioskService(node.host, KioskConfig(buttons=["mediator"]))
    assert k.view()["buttons"] == ["mediator"]


# -- where we are -------------------------------------------------------------------------


async def test_inside_a_stop_geofence_the_view_names_the_stop(
    node: Node, kiosk: KioskService
) -> None:
    at(node, *FELLETIN)
    where = kiosk.view()["where"]
    assert where == {
        "fix": "ok",
        "stop": {"id": "felletin", "name": "Felletin – place Courtaud", "kind": "stop"},
        "near": None,
    }


async def test_between_stops_the_view_says_how_far_the_nearest_is(
    node: Node, kiosk: KioskService
) -> None:
    at(node, AUBUSSON[0] - 0.02, AUBUSSON[1])  # about 2.2 km south of Aubusson
    near = kiosk.view()["where"]["near"]
    assert near["name"] == "Aubusson – gare routière" and 2.0 <= near["km"] <= 2.3


GUERET = (46.1700, 1.8700)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Guéret \u202e(gare) 12:30\u202c", "Guéret (gare) 12:30"),  # else "03:21 (erag)"
        ("Guéret\x1b[2J\x00 –\tgare\nroutière", "Guéret[2J – gare routière"),
        ("G" + "\u0301" * 100 + "uéret", "G" + "\u0301" * MAX_MARKS + "uéret"),
        ("Gu\u0301\u200d\u0301" * 3, "Gu\u0301\u200d\u0301" * 3),  # under the cap: kept
        (f"Pub {ENGLAND}\u202e {SMUGGLED}", f"Pub {ENGLAND} Bonjour"),
    ],
)
async def test_a_fence_name_reaches_the_screen_without_bidi_overrides_or_controls(
    node: Node, kiosk: KioskService, name: str, shown: str
) -> None:
    """Fence names are not the kiosk's to validate (config, `geofences.set`, older state)."""
    fence = {"id": "gueret", "name": name, "center": list(GUERET), "radius_m": 80}
    await node.services["geofences"].command_set({"geofences": [fence]})
    before = datetime.now(UTC) - timedelta(minutes=2)
    at(node, GUERET[0] + 0.01, GUERET[1], before)  # about 1.1 km north: "near"
    assert kiosk.view()["where"]["near"]["name"] == shown
    at(node, *GUERET)  # two minutes later
    assert kiosk.view()["where"]["stop"]["name"] == shown


def test_the_node_name_reaches_the_screen_without_bidi_overrides_or_controls() -> None:
    host = TestHost()
    host.node = host.node.model_copy(update={"name": "Navette\u202e 12\n"})
    assert KioskService(host, KioskConfig()).view()["node"]["name"] == "Navette 12"


def test_the_node_name_reaches_the_screen_with_a_few_marks_per_letter_at_most() -> None:
    host = TestHost()
    host.node = host.node.model_copy(update={"name": "Navette" + "\u0489" * 60 + " 12"})
    name = KioskService(host, KioskConfig()).view()["node"]["name"]
    assert name == "Navette" + "\u0489" * MAX_MARKS + " 12"


def test_a_run_s_line_and_headsign_reach_the_screen_with_a_few_marks_per_letter_at_most() -> None:
    """A run stored by an older release, which took any printable headsign."""
    host = TestHost()
    kiosk = KioskService(host, KioskConfig())
    zalgo = "Gu" + "\u0300" * 70 + "éret"
    host.bus.emit(
        JourneyChanged({"route_id": "L1", "line": "1" + "\u20dd" * 30, "headsign": zalgo})
    )
    assert kiosk.view()["journey"] == {
        "line": "1" + "\u20dd" * MAX_MARKS,
        "headsign": "Gu" + "\u0300" * MAX_MARKS + "éret",
    }


async def test_without_any_fix_the_view_says_none(kiosk: KioskService) -> None:
    assert kiosk.view()["where"] == {"fix": "none", "stop": None, "near": None}


async def test_when_the_fix_is_lost_the_view_says_lost(node: Node, kiosk: KioskService) -> None:
    at(node, *FELLETIN)
    node.bus.emit(FixStatus(lost=True))  # the position service, after fix_lost_after_s
    assert kiosk.view()["where"]["fix"] == "lost"
    node.bus.emit(FixStatus(lost=False))
    assert kiosk.view()["where"]["fix"] == "ok"


async def test_mode_comes_from_the_mode_service(node: Node, kiosk: KioskService) -> None:
    assert kiosk.view()["mode"] == "on-demand"
    node.bus.emit(ModeChanged("out-of-service"))
    assert kiosk.view()["mode"] == "out-of-service"


async def test_a_mode_set_before_the_kiosk_was_built_is_shown(node: Node) -> None:
    payload = json.dumps({"id": "m1", "args": {"mode": "school"}}).encode()
    assert (await node.router.handle(IncomingCommand("mode.set", payload))).reply.ok
    assert KioskService(node.host, KioskConfig()).view()["mode"] == "school"


async def test_connection_state_comes_from_the_uplink(node: Node, kiosk: KioskService) -> None:
    assert kiosk.view()["connected"] is False
    node.uplink.connected = True
    assert kiosk.view()["connected"] is True


# -- occupancy ----------------------------------------------------------------------------


async def test_without_a_capacity_the_gauge_is_hidden(kiosk: KioskService) -> None:
    assert kiosk.view()["occupancy"] is None  # the node's occupancy service has none


def test_without_an_occupancy_service_the_gauge_is_hidden() -> None:
    assert KioskService(TestHost(), KioskConfig()).view()["occupancy"] is None


@pytest.mark.parametrize(
    ("count", "level", "free"),
    [(10, "available", 20), (27, "few", 3), (30, "full", 0), (33, "full", 0)],
)
async def test_occupancy_gives_free_seats_and_a_level(
    node: Node, kiosk: KioskService, count: int, level: str, free: int
) -> None:
    node.bus.emit(OccupancyChanged(count, 30))  # the occupancy service
    occ = kiosk.view()["occupancy"]
    assert occ == {"count": count, "capacity": 30, "free": free, "level": level}


async def test_a_count_the_node_doubts_is_hidden_until_the_doubt_clears(
    node: Node, kiosk: KioskService
) -> None:
    node.bus.emit(OccupancyChanged(10, 30, doubt=("beam_stuck",)))  # the occupancy service
    assert kiosk.view()["occupancy"] is None
    node.bus.emit(OccupancyChanged(10, 30))
    assert kiosk.view()["occupancy"] == {
        "count": 10,
        "capacity": 30,
        "free": 20,
        "level": "available",
    }


@pytest.mark.parametrize("capacity", [0, None, True, "30"])
async def test_occupancy_without_a_usable_capacity_is_hidden(
    node: Node, kiosk: KioskService, capacity: Any
) -> None:
    node.bus.emit(OccupancyChanged(3, capacity))
    assert kiosk.view()["occupancy"] is None


# -- kiosk.schedule -----------------------------------------------------------------------


async def test_schedule_replaces_only_the_parts_given(kiosk: KioskService, clock: FakeTime) -> None:
    eta = iso(clock.ms + 600_000)
    await kiosk.command_schedule({"services": [slot()], "stops": [{"name": "Ahun", "eta": eta}]})
    await kiosk.command_schedule({"stops": [{"name": "Guéret", "eta": eta}]})
    view = kiosk.view()
    assert [s["id"] for s in view["services"]] == ["cpam"]
    assert [s["name"] for s in view["stops"]] == ["Guéret"]


async def test_schedule_empty_list_or_null_clears_that_part(kiosk: KioskService) -> None:
    await kiosk.command_schedule({"services": [slot()], "place": "Guéret"})
    await kiosk.command_schedule({"services": None})
    assert kiosk.view()["services"] == [] and kiosk.view()["place"] == "Guéret"


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"services": [slot(), slot()]},
        {"services": [slot(until="2026-11-25T10:00:00")]},  # no time zone
        {"services": [slot(start="2026-11-25T12:00:00Z", until="2026-11-25T10:00:00Z")]},
        {"services": [{"id": "x y", "provider": "A"}]},
        {"services": [slot(provider="")]},
        {"services": [slot(provider="x" * 81)]},
        {"stops": [{"name": "Ahun"}]},
        {"stops": [{"name": "Ahun", "eta": "2026-11-25T10:00:00Z", "extra": 1}]},
        {"place": {"de": "Markt"}},
        {"services": [slot(sid=f"s{i}") for i in range(41)]},
        {"unknown": 1},
    ],
)
async def test_a_bad_schedule_is_refused_whole_and_changes_nothing(
    kiosk: KioskService, args: dict[str, Any]
) -> None:
    await kiosk.command_schedule({"services": [slot("keep")]})
    before = kiosk.view()
    with pytest.raises(CommandError) as err:
        await kiosk.command_schedule(args)
    assert err.value.code == "bad_args"
    assert kiosk.view() == before


async def test_stops_come_in_eta_order_and_drop_two_minutes_after_their_eta(
    kiosk: KioskService, clock: FakeTime
) -> None:
    await kiosk.command_schedule(
        {
            "stops": [
                {"name": "later", "eta": iso(clock.ms + 600_000)},
                {"name": "soon", "eta": iso(clock.ms + 60_000)},
            ]
        }
    )
    assert [s["name"] for s in kiosk.view()["stops"]] == ["soon", "later"]
    clock.advance(60 + 121)
    assert [s["name"] for s in kiosk.view()["stops"]] == ["later"]


async def test_services_drop_out_once_closed(kiosk: KioskService, clock: FakeTime) -> None:
    await kiosk.command_schedule({"services": [slot("a", until=iso(clock.ms + 60_000)), slot("b")]})
    clock.advance(61)
    assert [s["id"] for s in kiosk.view()["services"]] == ["b"]


def shown(kiosk: KioskService) -> list[str]:
    return [s["id"] for s in kiosk.view()["services"]]


def paris_ms(day: int, hour: int, minute: int) -> int:
    """That time in Europe/Paris (the kiosk's default zone) on 2026-11-`day`."""
    return int(datetime(2026, 11, day, hour, minute, tzinfo=PARIS).timestamp() * 1000)


async def test_a_service_without_until_drops_out_at_the_end_of_its_day(
    kiosk: KioskService, clock: FakeTime
) -> None:
    """ "Services today": a desk opening at 10:00 with no closing time given closes with the
    day (the kiosk's time zone), not never; a schedule sent once stayed for ever."""
    await kiosk.command_schedule({"services": [slot("a", start=iso(paris_ms(25, 10, 0)))]})
    clock.ms = paris_ms(25, 23, 59)
    assert shown(kiosk) == ["a"]
    clock.ms = paris_ms(26, 0, 0)
    assert shown(kiosk) == []


async def test_a_service_without_until_for_tomorrow_is_shown_until_the_end_of_tomorrow(
    kiosk: KioskService, clock: FakeTime
) -> None:
    await kiosk.command_schedule({"services": [slot("a", start=iso(paris_ms(26, 9, 0)))]})
    clock.ms = paris_ms(26, 23, 59)
    assert shown(kiosk) == ["a"]
    clock.ms = paris_ms(27, 0, 0)
    assert shown(kiosk) == []


def dated(clock: FakeTime, host: TestHost | None = None) -> KioskService:
    """A kiosk on a node whose clock is known (NTP), whatever this machine's state."""
    return KioskService(host or TestHost(synced=True), KioskConfig(), now_ms=clock)


async def test_a_service_with_no_times_drops_out_at_the_end_of_the_day_it_was_sent(
    clock: FakeTime,
) -> None:
    kiosk = dated(clock)
    clock.ms = paris_ms(25, 18, 0)
    await kiosk.command_schedule({"services": [slot("a")]})
    clock.ms = paris_ms(25, 23, 59)
    assert shown(kiosk) == ["a"]
    clock.ms = paris_ms(26, 0, 0)
    assert shown(kiosk) == []


async def test_a_service_with_no_times_sent_before_the_clock_was_set_is_that_day_s(
    clock: FakeTime,
) -> None:
    """At boot a Pi runs on fake-hwclock's saved time, yesterday evening; dispatch sends the
    day's services then. Dated by that clock they vanished as soon as NTP set it."""
    synced = [False]
    host = TestHost(clock=Clock(recheck_s=0, kernel_synced=lambda: synced[0]))
    kiosk = dated(clock, host)
    clock.ms = paris_ms(24, 19, 0)  # the saved time; really the 25th, 08:00
    await kiosk.command_schedule({"services": [slot("a")]})
    synced[0] = True
    clock.ms = paris_ms(25, 8, 1)
    kiosk.expire()  # the kiosk's tick
    assert shown(kiosk) == ["a"]
    clock.ms = paris_ms(25, 23, 59)
    assert shown(kiosk) == ["a"]
    clock.ms = paris_ms(26, 0, 0)
    assert shown(kiosk) == []


async def test_the_day_a_service_ends_is_the_kiosk_time_zone_s(node: Node, clock: FakeTime) -> None:
    """At Cayenne (UTC-3) a service of 20:00 is shown until local midnight, 03:00 UTC."""
    k = KioskService(node.host, KioskConfig(timezone="America/Cayenne"), now_ms=clock)
    start = int(datetime(2026, 11, 25, 23, 0, tzinfo=UTC).timestamp() * 1000)
    await k.command_schedule({"services": [slot("a", start=iso(start))]})
    clock.ms = start + (4 * 3600 - 60) * 1000
    assert shown(k) == ["a"]
    clock.ms = start + 4 * 3600 * 1000
    assert shown(k) == []


def test_without_a_kiosk_zone_the_screen_shows_the_node_s_local_time(clock: FakeTime) -> None:
    """A node at Saint-Denis de La Réunion (`[node] timezone = "Indian/Reunion"`, UTC+4)
    whose `[services.kiosk]` says no zone showed its riders Paris time, 3 hours behind the
    validity days, bookings and daily reset of that same node."""
    host = TestHost(synced=True, timezone="Indian/Reunion")
    assert dated(clock, host).view()["timezone"] == "Indian/Reunion"


async def test_without_a_kiosk_zone_a_service_ends_at_the_node_s_local_midnight(
    clock: FakeTime,
) -> None:
    reunion = ZoneInfo("Indian/Reunion")
    k = dated(clock, TestHost(synced=True, timezone="Indian/Reunion"))
    clock.ms = int(datetime(2026, 11, 25, 18, 0, tzinfo=reunion).timestamp() * 1000)
    await k.command_schedule({"services": [slot("a")]})
    clock.ms = int(datetime(2026, 11, 26, 0, 0, tzinfo=reunion).timestamp() * 1000)
    assert shown(k) == []  # 21:00 in Paris, where the day had 3 hours to go


def test_a_kiosk_zone_given_wins_over_the_node_s(clock: FakeTime) -> None:
    host = TestHost(synced=True, timezone="Indian/Reunion")
    k = KioskService(host, KioskConfig(timezone="Europe/Paris"), now_ms=clock)
    assert k.view()["timezone"] == "Europe/Paris"


async def test_a_service_until_24_00_is_shown_until_that_midnight(clock: FakeTime) -> None:
    """An evening market "until midnight", as ISO 8601 and planning tools write it: the
    schedule was refused whole (`bad_args`: no hour 24), and the day's services with it."""
    k = dated(clock)
    clock.ms = paris_ms(25, 18, 0)
    await k.command_schedule({"services": [slot("a", until="2026-11-25T24:00:00+01:00")]})
    clock.ms = paris_ms(25, 23, 59)
    assert shown(k) == ["a"]
    clock.ms = paris_ms(26, 0, 0)
    assert shown(k) == []


@pytest.mark.parametrize("start", ["9999-12-31T12:00:00+01:00", "9999-12-31T23:00:00-05:00"])
async def test_a_service_on_the_calendar_s_last_day_leaves_the_screen_working(
    clock: FakeTime, start: str
) -> None:
    """A service starting on 9999-12-31 (a dispatch typo) with no `until` has no next
    midnight to end at: the command failed and, the schedule kept, every view after it
    (each tick, each restart) raised, the screen frozen on what it showed before."""
    host = TestHost(synced=True)
    k = dated(clock, host)
    await k.command_schedule({"services": [slot("a", start=start), slot("b")]})
    assert shown(k) == ["a", "b"]
    assert shown(dated(clock, host)) == ["a", "b"]  # restarted on the stored schedule


async def test_a_restarted_kiosk_keeps_the_day_its_services_were_sent(clock: FakeTime) -> None:
    host = TestHost(synced=True)
    clock.ms = paris_ms(25, 18, 0)
    await dated(clock, host).command_schedule({"services": [slot("a")]})
    clock.ms = paris_ms(26, 8, 0)
    assert shown(dated(clock, host)) == []


async def test_services_stored_by_an_older_release_without_their_day_are_today_s(
    clock: FakeTime,
) -> None:
    host = TestHost(synced=True)
    host.state.set(SCHEDULE_KEY, {"services": [slot("a")]})
    clock.ms = paris_ms(25, 18, 0)
    k = dated(clock, host)
    assert shown(k) == ["a"]
    clock.ms = paris_ms(26, 0, 0)
    assert shown(k) == []


async def test_a_question_about_a_service_closed_since_is_refused(
    kiosk: KioskService, clock: FakeTime
) -> None:
    """A page showing an older state (or a crafted press) asks about a closed service: no
    question goes to dispatch about a desk that is gone."""
    await kiosk.command_schedule({"services": [slot("a", until=iso(clock.ms + 60_000))]})
    clock.advance(61)
    with pytest.raises(RequestRefused) as info:
        await kiosk.ask(RiderPost(kind="service", service_id="a"))
    assert info.value.code == "unknown_service"


# -- kiosk.message ------------------------------------------------------------------------


async def test_a_message_shows_until_its_ttl_then_expires(
    kiosk: KioskService, clock: FakeTime
) -> None:
    await kiosk.command_message({"id": "m", "text": "Retard de 10 min", "ttl_s": 60})
    assert [m["text"] for m in kiosk.view()["messages"]] == ["Retard de 10 min"]
    clock.advance(61)
    kiosk.expire()
    assert kiosk.view()["messages"] == [] and kiosk.host.state.get(MESSAGES_KEY) == []


async def test_a_message_with_a_ttl_sent_before_the_clock_was_set_shows_for_its_ttl(
    clock: FakeTime,
) -> None:
    """At boot a Pi runs on fake-hwclock's saved time, 12 hours behind; a one-hour notice
    sent then ran out at that clock's hour and vanished as soon as NTP set the clock."""
    synced = [False]
    kiosk = dated(clock, TestHost(clock=Clock(recheck_s=0, kernel_synced=lambda: synced[0])))
    clock.ms = paris_ms(24, 20, 0)  # the saved time; really the 25th, 08:00
    await kiosk.command_message({"id": "m", "text": "Retard", "ttl_s": 3600})
    synced[0] = True
    clock.ms = paris_ms(25, 8, 1)
    kiosk.expire()  # the kiosk's tick
    assert [m["text"] for m in kiosk.view()["messages"]] == ["Retard"]
    clock.ms = paris_ms(25, 9, 2)
    kiosk.expire()
    assert kiosk.view()["messages"] == []


async def test_a_message_sent_on_a_1970_clock_keeps_its_expires_at(clock: FakeTime) -> None:
    synced = [False]
    kiosk = dated(clock, TestHost(clock=Clock(recheck_s=0, kernel_synced=lambda: synced[0])))
    clock.ms = 30_000  # a Pi booted without fake-hwclock
    until = paris_ms(25, 18, 0)
    await kiosk.command_message({"id": "m", "text": "Fermé", "expires_at": iso(until)})
    synced[0] = True
    clock.ms = paris_ms(25, 8, 0)
    kiosk.expire()
    assert [m["text"] for m in kiosk.view()["messages"]] == ["Fermé"]
    clock.ms = until
    kiosk.expire()
    assert kiosk.view()["messages"] == []


async def test_a_message_without_expiry_gets_the_configured_ttl(
    kiosk: KioskService, clock: FakeTime
) -> None:
    result = await kiosk.command_message({"text": "Bonjour"})
    assert result["expires_at"] == iso(clock.ms + 86_400_000).replace("+00:00", "Z")
    assert result["id"].startswith("m-")


async def test_a_message_expiring_in_the_past_is_refused_with_the_node_time(
    kiosk: KioskService, clock: FakeTime
) -> None:
    with pytest.raises(CommandError, match="already past on the node"):
        await kiosk.command_message({"text": "x", "expires_at": iso(clock.ms - 1000)})


async def test_expires_at_and_ttl_together_are_refused(kiosk: KioskService) -> None:
    with pytest.raises(CommandError, match="not both"):
        await kiosk.command_message(
            {"text": "x", "ttl_s": 60, "expires_at": "2030-01-01T00:00:00Z"}
        )


async def test_same_id_other_language_is_a_translation_same_language_replaces(
    kiosk: KioskService,
) -> None:
    await kiosk.command_message({"id": "go", "text": "Départ", "lang": "fr"})
    await kiosk.command_message({"id": "go", "text": "Leaving", "lang": "en"})
    await kiosk.command_message({"id": "go", "text": "Départ dans 5 min", "lang": "fr"})
    texts = {(m["lang"], m["text"]) for m in kiosk.view()["messages"]}
    assert texts == {("fr", "Départ dans 5 min"), ("en", "Leaving")}


async def test_clear_removes_every_language_of_a_message(kiosk: KioskService) -> None:
    for lang in ("fr", "en"):
        await kiosk.command_message({"id": "go", "text": "x", "lang": lang})
    assert await kiosk.command_message({"id": "go", "clear": True}) == {"id": "go", "cleared": 2}
    assert kiosk.view()["messages"] == []


async def test_urgent_messages_come_first_then_newest(kiosk: KioskService, clock: FakeTime) -> None:
    for i, prio in enumerate(["info", "urgent", "important", "info"]):
        clock.advance(1)
        await kiosk.command_message({"id": f"m{i}", "text": prio, "priority": prio})
    assert [m["id"] for m in kiosk.view()["messages"]] == ["m1", "m2", "m3", "m0"]


async def test_more_messages_than_the_limit_are_refused_saying_how_to_clear(
    node: Node, clock: FakeTime
) -> None:
    k = KioskService(node.host, KioskConfig(max_messages=2), now_ms=clock)
    await k.command_message({"id": "a", "text": "a"})
    await k.command_message({"id": "b", "text": "b"})
    with pytest.raises(CommandError, match='"clear": true') as err:
        await k.command_message({"id": "c", "text": "c"})
    assert err.value.code == "too_many"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "x" * 501,
        "bell\x07",
        "nul\x00",
        "\u202eevil",
        "zero\u200bwidth",
        "tab\there",
        "A" + "\u0301" * 200,
        "Bonjour" + "\u0301\u200d" * (MAX_MARKS + 1),
        SMUGGLED,
        "🏴\U000e0067\U000e0062",  # a flag's tags without their end
    ],
)
async def test_message_text_that_is_not_plain_text_is_refused(
    kiosk: KioskService, text: str
) -> None:
    with pytest.raises(CommandError) as err:
        await kiosk.command_message({"text": text})
    assert err.value.code == "bad_args"
    assert kiosk.view()["messages"] == []


@pytest.mark.parametrize(
    "text",
    [
        "Tie\u0302\u0301ng Vie\u0323\u0302t : xe buy\u0301t đến lúc 9 giờ",
        "बस नौ बजे आएगी। क्षमा करें",
        "הָאוֹטוֹבּוּס יַגִּיעַ בְּתֵשַׁע שִּׁ֤",
        "Le bus arrive 🚌👩🏽‍🚒 1\ufe0f\u20e3 ❤️‍🔥",
        f"Supporters {ENGLAND} et {WALES} bienvenus",
    ],
    ids=["vietnamese", "devanagari", "hebrew", "emoji", "flag-tag-sequences"],
)
async def test_a_message_in_a_script_with_combining_marks_is_shown_as_written(
    kiosk: KioskService, text: str
) -> None:
    await kiosk.command_message({"id": "w", "text": text})
    assert kiosk.view()["messages"][0]["text"] == text


async def test_zalgo_in_the_schedule_is_refused_saying_why(kiosk: KioskService) -> None:
    with pytest.raises(CommandError) as err:
        await kiosk.command_schedule({"services": [slot(provider="CPAM" + "\u0336" * 60)]})
    assert (
        err.value.code == "bad_args" and "60 combining marks on one character" in err.value.message
    )


async def test_html_in_a_message_is_kept_verbatim_as_text(kiosk: KioskService) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>\nligne 2'
    await kiosk.command_message({"id": "e", "text": evil})
    assert kiosk.view()["messages"][0]["text"] == evil


# -- rider requests -----------------------------------------------------------------------


async def test_a_request_is_published_durably_with_where_we_are(
    node: Node, kiosk: KioskService
) -> None:
    at(node, *FELLETIN)
    asked = await kiosk.ask(RiderPost(kind="pickup", lang="en"))
    assert asked.record.status == "sent" and not asked.repeat
    (payload,) = await stored(node, "kiosk/requests")
    assert payload["request_id"] == asked.record.request_id
    assert (
        payload["kind"] == "pickup" and payload["lang"] == "en" and payload["mode"] == "on-demand"
    )
    assert payload["stop"] == "felletin" and payload["stop_name"] == "Felletin – place Courtaud"
    assert payload["lat"] == round(FELLETIN[0], 5) and payload["fix_lost"] is False
    assert {"v", "seq", "ts", "clock"} <= set(payload)


async def test_a_request_without_a_fix_says_the_position_is_unknown(
    node: Node, kiosk: KioskService
) -> None:
    await kiosk.ask(RiderPost(kind="mediator"))
    (payload,) = await stored(node, "kiosk/requests")
    assert payload["fix_lost"] is True and "lat" not in payload and "stop" not in payload


async def test_a_question_about_a_service_names_it(node: Node, kiosk: KioskService) -> None:
    await kiosk.command_schedule({"services": [slot("cpam", provider="CPAM")]})
    await kiosk.ask(RiderPost(kind="service", service_id="cpam"))
    (payload,) = await stored(node, "kiosk/requests")
    assert payload["service_id"] == "cpam" and payload["service"] == "CPAM"


async def test_the_same_button_again_soon_shows_the_same_request_and_sends_nothing(
    node: Node, kiosk: KioskService, clock: FakeTime
) -> None:
    first = await kiosk.ask(RiderPost(kind="pickup"))
    clock.advance(30)
    again = await kiosk.ask(RiderPost(kind="pickup"))
    assert again.repeat and again.record.request_id == first.record.request_id
    assert len(await stored(node, "kiosk/requests")) == 1


async def test_the_same_button_after_the_repeat_delay_makes_a_new_request(
    node: Node, kiosk: KioskService, clock: FakeTime
) -> None:
    await kiosk.ask(RiderPost(kind="pickup"))
    clock.advance(121)
    again = await kiosk.ask(RiderPost(kind="pickup"))
    assert not again.repeat and len(await stored(node, "kiosk/requests")) == 2


async def test_a_press_after_the_clock_stepped_back_is_sent_not_taken_for_a_repeat(
    nodes: Nodes,
) -> None:
    """A power cut, then a boot on fake-hwclock's last saved time (saved hourly: up to an
    hour behind the request made just before the cut) and no NTP or GPS yet (a venue, the
    network down): the request kept on disk is from the node's future. Its age is unknown,
    not negative: a rider's press is sent, not swallowed as a repeat of it until the clock
    catches up (docs/topics.md `kiosk/requests`: a repeat is the same button *within*
    `repeat_after_s`; fake-hwclock(8): the time saved at shutdown and by cron, hourly)."""
    clock = FakeTime()
    node = await nodes.start()
    first = KioskService(node.host, KioskConfig(buttons=["mediator"]), now_ms=clock)
    before_cut = await first.ask(RiderPost(kind="mediator"))
    await nodes.stop(node)

    clock.advance(-40 * 60)  # the boot's clock: 40 min before that request
    node = await nodes.start()
    second = KioskService(node.host, KioskConfig(buttons=["mediator"]), now_ms=clock)
    asked = await second.ask(RiderPost(kind="mediator"))
    assert not asked.repeat and asked.record.request_id != before_cut.record.request_id
    sent = [p["request_id"] for p in await stored(node, "kiosk/requests")]
    assert sent == [before_cut.record.request_id, asked.record.request_id]


async def test_a_button_this_screen_does_not_have_is_refused(node: Node) -> None:
    k = KioskService(node.host, KioskConfig(buttons=["mediator"]))
    with pytest.raises(RequestRefused) as err:
        await k.ask(RiderPost(kind="pickup"))
    assert err.value.code == "not_offered"
    assert await stored(node, "kiosk/requests") == []


async def test_a_question_about_a_service_not_in_the_schedule_is_refused(
    node: Node, kiosk: KioskService
) -> None:
    with pytest.raises(RequestRefused) as err:
        await kiosk.ask(RiderPost(kind="service", service_id="ghost"))
    assert err.value.code == "unknown_service"
    assert await stored(node, "kiosk/requests") == []


async def test_a_service_id_on_another_kind_is_refused(kiosk: KioskService) -> None:
    await kiosk.command_schedule({"services": [slot("cpam")]})
    with pytest.raises(RequestRefused, match="kind service only"):
        await kiosk.ask(RiderPost(kind="pickup", service_id="cpam"))


async def test_a_request_the_outbox_refuses_shows_failed(
    node: Node, kiosk: KioskService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any, **kw: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_exception(EdgedError("outbox full"))
        return future

    monkeypatch.setattr(node.host, "publish", full)
    asked = await kiosk.ask(RiderPost(kind="mediator"))
    assert asked.record.status == "failed"
    assert node.counters["kiosk.request_failed"] == 1


async def test_only_the_last_requests_are_kept(
    node: Node, kiosk: KioskService, clock: FakeTime
) -> None:
    for _ in range(KEEP_REQUESTS + 5):
        clock.advance(200)
        await kiosk.ask(RiderPost(kind="mediator"))
    assert len(node.host.state.get(REQUESTS_KEY)) == KEEP_REQUESTS


async def test_the_view_shows_the_latest_request_per_button_while_recent(
    kiosk: KioskService, clock: FakeTime
) -> None:
    await kiosk.ask(RiderPost(kind="pickup"))
    clock.advance(200)
    newer = await kiosk.ask(RiderPost(kind="pickup"))
    assert [r["request_id"] for r in kiosk.view()["requests"]] == [newer.record.request_id]
    clock.advance(901)
    assert kiosk.view()["requests"] == []


async def test_each_service_asked_about_keeps_its_own_status_beside_the_general_question(
    kiosk: KioskService, clock: FakeTime
) -> None:
    await kiosk.command_schedule({"services": [slot("cpam"), slot("caf")]})
    about_cpam = await kiosk.ask(RiderPost(kind="service", service_id="cpam"))
    clock.advance(200)
    about_caf = await kiosk.ask(RiderPost(kind="service", service_id="caf"))
    clock.advance(200)
    general = await kiosk.ask(RiderPost(kind="service"))
    shown = {(r["service_id"], r["request_id"]) for r in kiosk.view()["requests"]}
    assert shown == {
        ("cpam", about_cpam.record.request_id),
        ("caf", about_caf.record.request_id),
        (None, general.record.request_id),
    }


# -- kiosk.ack ----------------------------------------------------------------------------


async def test_ack_marks_the_request_received_with_its_note(kiosk: KioskService) -> None:
    asked = await kiosk.ask(RiderPost(kind="pickup"))
    result = await kiosk.command_ack({"request_id": asked.record.request_id, "note": "14 h 30"})
    assert result == {"request_id": asked.record.request_id, "kind": "pickup", "already": False}
    (shown,) = kiosk.view()["requests"]
    assert shown["status"] == "received" and shown["note"] == "14 h 30"


async def test_a_second_ack_says_already_and_keeps_the_first(kiosk: KioskService) -> None:
    asked = await kiosk.ask(RiderPost(kind="pickup"))
    await kiosk.command_ack({"request_id": asked.record.request_id, "note": "first"})
    again = await kiosk.command_ack({"request_id": asked.record.request_id, "note": "second"})
    assert again["already"] is True and kiosk.view()["requests"][0]["note"] == "first"


async def test_ack_of_an_unknown_request_is_refused(kiosk: KioskService) -> None:
    with pytest.raises(CommandError) as err:
        await kiosk.command_ack({"request_id": "k0000"})
    assert err.value.code == "unknown_request"


# -- the view, and keeping it across restarts ---------------------------------------------


async def test_listeners_hear_each_change_once(kiosk: KioskService) -> None:
    heard: list[dict[str, Any]] = []
    kiosk.listen(heard.append)
    await kiosk.command_message({"id": "a", "text": "a"})
    kiosk.refresh()
    kiosk.refresh()
    assert len(heard) == 1 and heard[0]["messages"][0]["id"] == "a"


async def test_schedule_messages_and_requests_survive_a_restart(nodes: Nodes) -> None:
    clock = FakeTime()
    node = await nodes.start()
    first = KioskService(node.host, KioskConfig(buttons=["pickup"]), now_ms=clock)
    await first.command_schedule({"place": "Guéret", "services": [slot()]})
    await first.command_message({"id": "m", "text": "Bonjour", "ttl_s": 3600})
    asked = await first.ask(RiderPost(kind="pickup"))
    await nodes.stop(node)

    node = await nodes.start()
    second = KioskService(node.host, KioskConfig(buttons=["pickup"]), now_ms=clock)
    view = second.view()
    assert view["place"] == "Guéret" and [s["id"] for s in view["services"]] == ["cpam"]
    assert [m["text"] for m in view["messages"]] == ["Bonjour"]
    assert [r["request_id"] for r in view["requests"]] == [asked.record.request_id]
    assert (await second.command_ack({"request_id": asked.record.request_id}))["already"] is False


async def test_a_request_still_saving_at_a_restart_is_shown_as_sent(node: Node) -> None:
    node.host.state.set(
        REQUESTS_KEY,
        [{"request_id": "k1", "kind": "pickup", "lang": "fr", "made_ms": T0, "status": "saving"}],
    )
    k = KioskService(node.host, KioskConfig(buttons=["pickup"]), now_ms=FakeTime())
    assert k.view()["requests"][0]["status"] == "sent"


async def test_unreadable_kept_state_is_dropped_and_counted(node: Node) -> None:
    node.host.state.set(MESSAGES_KEY, [{"id": "x"}, "junk"])
    node.host.state.set("kiosk.schedule", {"services": "nope"})
    k = KioskService(node.host, KioskConfig(), now_ms=FakeTime())
    assert k.view()["messages"] == [] and k.view()["services"] == []
    assert node.counters["kiosk.bad_state"] == 3
