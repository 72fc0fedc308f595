"""FleetView: what dispatch keeps from the messages it receives, and what it refuses to keep."""

import io
import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from edged.ops.fleet import MAX_TOPICS_PER_NODE, OTHER, FleetView
from edged.ops.table import fleet_table, occupancy_text
from edged.ops.urls import BrokerAddress, parse_broker_url

PREFIX = "rnst/v1"
BASE = f"{PREFIX}/creuse/shuttle-07"
KEY = "creuse/shuttle-07"
NOW = 1_800_000_000.0  # seconds
NOW_MS = int(NOW * 1000)


def view() -> FleetView:
    return FleetView(PREFIX, clock=lambda: NOW)


def msg(**body: Any) -> bytes:
    return json.dumps({"v": 1, "seq": 1, "ts": NOW_MS, "clock": "ntp", **body}).encode()


BIRTH = msg(
    state="online",
    version="0.1.0",
    profile="shuttle",
    name="Navette",
    config_hash="abc123",
    drivers=["gps:gps.sim"],
    since=NOW_MS,
)
POSITION = msg(
    fix_time="2027-01-15T08:00:00Z",
    lat=45.9,
    lon=2.17,
    speed=10.0,
    course=90.0,
    mode="3D",
    quality=1,
    satellites=9,
    hdop=0.9,
    odometer_m=1234.5,
)
HEALTH = msg(
    uptime_s=12.0,
    rss_mb=45.0,
    cpu_pct=2.5,
    loop_lag_ms=1.5,
    clock="gps",
    connected=True,
    reconnects=1,
    outbox={
        "depth": 3,
        "bytes": 900,
        "oldest_age_s": 1.5,
        "in_flight": 0,
        "by_class": {},
        "thin_level": 0,
        "refused": 0,
        "thinned": 0,
    },
    drivers=[{"name": "gps", "driver": "gps.sim", "state": "running", "restarts": 2}],
    errors={"cmd.bad_json": 4},
)


# -- what the contract's topics become ------------------------------------------------------


def test_birth_makes_the_node_online_with_its_identity() -> None:
    v = view()
    assert v.ingest(f"{BASE}/state", BIRTH)
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert (node.state, node.version, node.profile, node.config_hash) == (
        "online",
        "0.1.0",
        "shuttle",
        "abc123",
    )
    assert node.drivers == ["gps:gps.sim"]


def test_will_makes_the_node_offline_and_keeps_what_the_birth_said() -> None:
    v = view()
    v.ingest(f"{BASE}/state", BIRTH)
    v.ingest(f"{BASE}/state", msg(state="offline", since=NOW_MS))
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert node.state == "offline"
    assert node.version == "0.1.0"


def test_position_keeps_coordinates_speed_in_kmh_and_fix_age() -> None:
    v = view()
    v.ingest(f"{BASE}/position", POSITION)
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert node.position is not None
    assert (node.position.lat, node.position.lon) == (45.9, 2.17)
    assert node.position.speed_kmh == pytest.approx(36.0)
    five_s_after_the_fix = datetime.fromisoformat("2027-01-15T08:00:05Z").timestamp()
    assert node.fix_age_s(five_s_after_the_fix) == pytest.approx(5.0)


def test_a_replayed_older_position_is_counted_but_not_shown_as_latest() -> None:
    v = view()
    v.ingest(f"{BASE}/position", msg(lat=45.0, lon=2.0, seq=10, ts=NOW_MS))
    v.ingest(f"{BASE}/position", msg(lat=44.0, lon=1.0, seq=9, ts=NOW_MS - 60_000))
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert node.position is not None
    assert node.position.lat == 45.0
    assert node.positions == 2


def test_a_position_the_node_marks_suspect_is_counted_but_not_shown_as_latest() -> None:
    """A spoofer's stop (docs/topics.md, *Suspect positions*) reaches neither the fleet
    page nor the GTFS-Realtime feed built from it: the last believed position stands."""
    v = view()
    v.ingest(f"{BASE}/position", msg(lat=45.0, lon=2.0, seq=10))
    v.ingest(f"{BASE}/position", msg(lat=45.018, lon=2.0, seq=11, suspect="wheels"))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.position is not None
    assert (node.position.lat, node.position.seq, node.positions) == (45.0, 10, 2)


def test_a_node_with_a_wiped_outbox_restarting_its_seq_still_moves() -> None:
    v = view()
    v.ingest(f"{BASE}/position", msg(lat=45.0, lon=2.0, seq=5000, ts=NOW_MS))
    v.ingest(f"{BASE}/position", msg(lat=44.0, lon=1.0, seq=1, ts=NOW_MS + 1000))
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert node.position is not None
    assert node.position.lat == 44.0


def test_within_one_epoch_seq_orders_positions_even_when_the_clock_stepped_back() -> None:
    v = view()
    v.ingest(f"{BASE}/position", msg(lat=45.0, lon=2.0, seq=10, ts=NOW_MS, epoch="a" * 16))
    # the GPS clock stepped back an hour: ts goes back, seq does not
    v.ingest(
        f"{BASE}/position", msg(lat=44.0, lon=1.0, seq=11, ts=NOW_MS - 3_600_000, epoch="a" * 16)
    )
    v.ingest(f"{BASE}/position", msg(lat=43.0, lon=1.0, seq=9, ts=NOW_MS + 5, epoch="a" * 16))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.position is not None
    assert node.position.lat == 44.0


def test_times_stamped_by_an_unsynced_clock_are_not_trusted_for_ages() -> None:
    v = view()
    v.ingest(f"{BASE}/state", msg(state="online", clock="unsynced", ts=1000))
    v.ingest(f"{BASE}/position", msg(lat=45.0, lon=2.0, clock="unsynced", ts=1000))
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert node.last_seen_age_s(NOW) == 0  # from the arrival, not from 1970
    assert node.fix_age_s(NOW) is None


def test_health_gives_outbox_depth_drivers_and_counters() -> None:
    v = view()
    v.ingest(f"{BASE}/health", HEALTH)
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert node.health is not None
    assert node.outbox_depth == 3
    assert [(d.name, d.state, d.restarts) for d in node.health.drivers] == [("gps", "running", 2)]
    assert node.health.errors == {"cmd.bad_json": 4}
    assert node.health.reconnects == 1


def test_occupancy_keeps_count_and_capacity() -> None:
    v = view()
    v.ingest(
        f"{BASE}/occupancy", msg(count=12, capacity=30, percent=40.0, status="MANY_SEATS_AVAILABLE")
    )
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert node.occupancy is not None
    assert (node.occupancy.count, node.occupancy.capacity) == (12, 30)


def test_occupancy_says_the_node_s_doubt_and_the_table_shows_it() -> None:
    v = view()
    v.ingest(f"{BASE}/occupancy", msg(count=12, capacity=30, doubt=["beam_stuck"]))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.occupancy is not None
    assert node.occupancy.doubt == ("beam_stuck",)
    assert occupancy_text(node).plain == "12/30 doubt: beam_stuck"
    v.ingest(f"{BASE}/occupancy", msg(count=12, capacity=30))  # cleared: the field absent
    assert node.occupancy.doubt == () and occupancy_text(node).plain == "12/30"


@pytest.mark.parametrize(
    ("doubt", "kept"),
    [
        ("beam_stuck", ()),
        ({"a": 1}, ()),
        ([1, None, "beam_stuck"], ("beam_stuck",)),
        (["\x1b[2Jx" * 50], ("?[2Jx" * 8,)),
        (["n"] * 1000, ("n",) * 8),
    ],
)
def test_a_hostile_doubt_is_bounded_and_printable(doubt: Any, kept: tuple[str, ...]) -> None:
    v = view()
    v.ingest(f"{BASE}/occupancy", msg(count=1, doubt=doubt))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.occupancy is not None
    assert node.occupancy.doubt == kept


def test_an_alarm_is_active_until_its_clearing_message() -> None:
    v = view()
    v.ingest(f"{BASE}/alarm/panic", msg(kind="panic", active=True, reason="button"))
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert [a.kind for a in node.active_alarms] == ["panic"]
    v.ingest(f"{BASE}/alarm/panic", msg(kind="panic", active=False))
    assert node.active_alarms == []


E = "e" * 16


def test_an_alarm_raise_sent_after_its_clear_does_not_raise_it_again() -> None:
    """A node sends an overtaken alarm message after the newer one, unretained (refused by
    the broker, then tried again): the view stays at the newest transition."""
    v = view()
    v.ingest(f"{BASE}/alarm/panic", msg(kind="panic", active=True, seq=5, epoch=E))
    v.ingest(f"{BASE}/alarm/panic", msg(kind="panic", active=False, seq=6, epoch=E))
    v.ingest(f"{BASE}/alarm/panic", msg(kind="panic", active=True, seq=5, epoch=E))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.active_alarms == []


def test_each_alarm_kind_is_ordered_on_its_own() -> None:
    v = view()
    v.ingest(f"{BASE}/alarm/outbox_full", msg(kind="outbox_full", active=False, seq=9, epoch=E))
    v.ingest(f"{BASE}/alarm/panic", msg(kind="panic", active=True, seq=3, epoch=E))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and [a.kind for a in node.active_alarms] == ["panic"]


@pytest.mark.parametrize(
    ("suffix", "newer", "older", "shown"),
    [
        ("occupancy", {"count": 9}, {"count": 2}, lambda n: n.occupancy.count == 9),
        (
            "journey",
            {"assigned": True, "route_id": "new"},
            {"assigned": True, "route_id": "old"},
            lambda n: n.journey.route_id == "new",
        ),
    ],
)
def test_an_older_state_message_does_not_replace_the_newer(
    suffix: str, newer: dict[str, Any], older: dict[str, Any], shown: Any
) -> None:
    v = view()
    v.ingest(f"{BASE}/{suffix}", msg(**newer, seq=9, epoch=E))
    v.ingest(f"{BASE}/{suffix}", msg(**older, seq=2, epoch=E))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and shown(node)


def test_the_will_stamped_before_the_birth_still_makes_the_node_offline() -> None:
    """The will is stamped when the session begins, before the birth: never ordered."""
    v = view()
    v.ingest(f"{BASE}/state", msg(state="online", version="0.1.0", seq=10, epoch=E))
    v.ingest(f"{BASE}/state", msg(state="offline", seq=3, epoch=E))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.state == "offline"


def test_the_will_of_an_earlier_session_come_after_the_birth_keeps_the_node_online() -> None:
    """`since` is when a session began, in its birth and its will (and in a `republish`'s
    birth): a broker cluster may deliver the will of the session before after the birth
    of the next. That node is online: it was shown offline, out of the feed, until its
    next session."""
    v = view()
    v.ingest(f"{BASE}/state", msg(state="online", version="0.1.0", since=NOW_MS, seq=20))
    # stamped as its session began: `ts` too is a minute before
    v.ingest(
        f"{BASE}/state", msg(state="offline", since=NOW_MS - 60_000, seq=12, ts=NOW_MS - 60_000)
    )
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.state == "online"
    v.ingest(f"{BASE}/state", msg(state="offline", since=NOW_MS, seq=21))  # this session's
    assert node.state == "offline"


@pytest.mark.parametrize(
    "offline",
    [
        pytest.param({"seq": 21, "ts": NOW_MS - 50_000}, id="said-after-a-clock-step-back"),
        pytest.param({"seq": 21, "ts": NOW_MS - 60_000}, id="will-of-a-connection-that-kept-it"),
    ],
)
def test_an_offline_of_this_session_with_an_earlier_since_still_makes_the_node_offline(
    offline: dict[str, Any],
) -> None:
    """`since` is the node's clock, and NTP may step it back within a session (or between a
    birth and the reconnect that kept it, `will_delay_s`): the `offline` said at the stop,
    or the will of that reconnect, then has a `since` older than the birth's, and was passed
    over as a late will of an earlier session: the stopped node stayed online for good.
    Sent after the birth (its `seq`), it is this node's news."""
    v = view()
    v.ingest(f"{BASE}/state", msg(state="online", version="0.1.0", since=NOW_MS, seq=20, epoch=E))
    v.ingest(f"{BASE}/state", msg(state="offline", since=NOW_MS - 60_000, epoch=E, **offline))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.state == "offline"


def test_journey_keeps_the_mode_and_the_run_as_bounded_text() -> None:
    v = view()
    run = {"route_id": "L1", "trip_id": "t" * 500, "direction_id": 1, "line": "1\x1b[2J"}
    assert v.ingest(f"{BASE}/journey", msg(mode="school", assigned=True, **run))
    j = v.nodes[KEY].journey
    assert j is not None and j.mode == "school" and j.route_id == "L1" and j.direction_id == 1
    assert j.trip_id == "t" * 128 and j.line == "1?[2J"
    assert v.ingest(f"{BASE}/journey", msg(mode="on-demand", assigned=False, route_id="L1"))
    j = v.nodes[KEY].journey
    assert j is not None and not j.assigned and j.route_id is None
    assert not v.ingest(f"{BASE}/journey", msg(mode="school"))  # no `assigned`: not the contract


def test_faults_keep_the_first_codes_their_count_and_the_lamps() -> None:
    v = view()
    codes = [{"source": 0, "spn": 100 + i, "fmi": 1, "occurrence": 1} for i in range(40)]
    lamps = [{"source": 0, "malfunction": 0, "red_stop": 1, "amber_warning": 0, "protect": 0}]
    assert v.ingest(f"{BASE}/vehicle/faults", msg(active=codes, lamps=lamps))
    f = v.nodes[KEY].faults
    assert f is not None and f.count == 40 and len(f.codes) == 16 and f.red and not f.amber


def test_faults_count_the_codes_the_node_left_out() -> None:
    v = view()
    codes = [{"source": 0, "spn": 100 + i, "fmi": 1, "occurrence": 1} for i in range(256)]
    assert v.ingest(f"{BASE}/vehicle/faults", msg(active=codes, lamps=[], omitted=1000))
    f = v.nodes[KEY].faults
    assert f is not None and f.count == 1256


def test_a_red_lamp_of_an_ecu_after_the_sixteenth_is_seen() -> None:
    """Every ECU of a truck sends its DM1, faults or none (J1939-73): 20 on a backbone is
    common, the node lists them by source address, and the tachograph (0xEE) comes last.
    Its red stop lamp is a red lamp, whatever the codes kept for the view."""
    v = view()
    lamps = [
        {"source": s, "malfunction": 0, "red_stop": 0, "amber_warning": 0, "protect": 0}
        for s in range(19)
    ]
    lamps.append(
        {"source": 0xEE, "malfunction": 0, "red_stop": 1, "amber_warning": 0, "protect": 0}
    )
    codes = [{"source": 0xEE, "spn": 1611, "fmi": 12, "occurrence": 1}]
    assert v.ingest(f"{BASE}/vehicle/faults", msg(active=codes, lamps=lamps))
    f = v.nodes[KEY].faults
    assert f is not None and f.red


def test_an_alarm_keeps_its_id_and_who_acknowledged_it() -> None:
    v = view()
    details = {"alarm_id": "1-abc", "raised_at": NOW_MS, "acked_by": "régulation"}
    v.ingest(
        f"{BASE}/alarm/panic",
        msg(kind="panic", active=False, reason="acknowledged", details=details),
    )
    a = v.nodes[KEY].alarms["panic"]
    assert (a.alarm_id, a.raised_at, a.acked_by) == ("1-abc", NOW_MS, "régulation")


def test_each_accepted_message_moves_the_view_version_and_marks_its_node() -> None:
    v = view()
    v.ingest(f"{BASE}/state", BIRTH)
    v.ingest(f"{PREFIX}/creuse/other/state", BIRTH)
    v.ingest(f"{BASE}/state", b"junk")
    assert v.version == 2
    assert v.nodes[KEY].changed == 1 and v.nodes["creuse/other"].changed == 2


def test_messages_are_counted_per_topic_including_replies() -> None:
    v = view()
    for topic in ("state", "position", "position", "reply/ping", "events/door"):
        v.ingest(f"{BASE}/{topic}", msg(state="online", lat=1.0, lon=1.0, id="x", ok=True))
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert node.messages == {"state": 1, "position": 2, "reply/ping": 1, "events/door": 1}


def test_retained_news_is_as_old_as_its_timestamp_not_its_arrival() -> None:
    v = view()
    v.ingest(f"{BASE}/state", msg(state="offline", ts=NOW_MS - 3_600_000))
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert node.last_seen_age_s(NOW) == pytest.approx(3600)


# -- what is ignored or rejected --------------------------------------------------------------


def test_commands_to_a_node_do_not_make_it_appear() -> None:
    v = view()
    assert not v.ingest(f"{PREFIX}/creuse/ghost/cmd/ping", b'{"id": "1", "args": {}}')
    assert v.nodes == {}
    assert v.ignored == 1


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/creuse/shuttle-07/state",  # another prefix
        f"{PREFIX}/creuse/shuttle-07",  # no topic under the node
        f"{PREFIX}/creuse/shuttle-07/telemetry",  # not in the contract
        f"{PREFIX}/Creuse/shuttle-07/state",  # not a valid fleet name
        f"{PREFIX}/creuse/+/state",  # a wildcard as a name
        f"{PREFIX}/creuse/shuttle-07/reply/NOT VALID",
        f"{PREFIX}/creuse/shuttle-07/state/extra",
        "",
    ],
)
def test_topics_outside_the_contract_are_ignored(topic: str) -> None:
    v = view()
    assert not v.ingest(topic, BIRTH)
    assert v.nodes == {}
    assert v.ignored == 1


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe\x00",
        b"",
        b"[1, 2]",
        b"42",
        b"null",
        b'"online"',
        b'{"state": "maybe"}',
        b'{"state": ["online"]}',
        b"{" * 100_000,
        None,
    ],
)
def test_state_payloads_that_are_not_the_contract_are_rejected(payload: bytes | None) -> None:
    v = view()
    assert not v.ingest(f"{BASE}/state", payload)
    assert v.nodes == {}
    assert v.rejected == 1


@pytest.mark.parametrize(
    "body",
    [
        {"lat": "45.9", "lon": 2.17},
        {"lat": 45.9},
        {"lat": True, "lon": 2.17},
        {"lat": 91.0, "lon": 2.17},
        {"lat": float("nan"), "lon": 2.17},
        {"lat": 10**400, "lon": 2.17},
    ],
)
def test_positions_without_usable_coordinates_are_rejected(body: dict[str, Any]) -> None:
    v = view()
    assert not v.ingest(f"{BASE}/position", json.dumps(body).encode())
    assert v.nodes == {}


def test_wrong_types_in_health_become_unknowns_not_errors() -> None:
    v = view()
    junk = msg(
        uptime_s="long",
        rss_mb=-1,
        cpu_pct=None,
        reconnects=True,
        outbox=[1],
        drivers=["gps", {"name": 3}, {"name": "gps", "state": "running"}],
        errors={"a": "b", "c": 1},
    )
    assert v.ingest(f"{BASE}/health", junk)
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert node.health is not None
    assert node.health.uptime_s is None
    assert node.health.rss_mb is None
    assert node.health.reconnects is None
    assert node.outbox_depth is None
    assert [d.name for d in node.health.drivers] == ["gps"]
    assert node.health.errors == {"c": 1}


def test_control_characters_in_names_never_reach_the_screen() -> None:
    v = view()
    v.ingest(f"{BASE}/state", msg(state="online", version="1\x1b[2J\x07", name="a\nb"))
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert node.version == "1?[2J?"
    assert node.name == "a?b"


def test_topic_counters_per_node_are_bounded() -> None:
    v = view()
    for i in range(MAX_TOPICS_PER_NODE + 10):
        v.ingest(f"{BASE}/reply/cmd{i}", msg(id=str(i), ok=True))
    node = v.node("creuse", "shuttle-07")
    assert node is not None
    assert len(node.messages) == MAX_TOPICS_PER_NODE + 1
    assert node.messages[OTHER] == 10


def test_the_number_of_nodes_is_bounded() -> None:
    v = FleetView(PREFIX, clock=lambda: NOW, max_nodes=3)
    for i in range(5):
        v.ingest(f"{PREFIX}/f/n{i}/state", BIRTH)
    assert len(v.nodes) == 3
    assert v.ignored == 2


@pytest.mark.parametrize("name", ["[red]x[/red]", "[/oops]"])
def test_markup_in_a_node_s_doubt_prints_as_itself_in_the_table(name: str) -> None:
    """A peer's retained `occupancy` is its own words: `[/oops]` (a closing tag with
    nothing open) made rich raise, and edgectl's whole fleet table with it."""
    v = view()
    v.ingest(f"{BASE}/occupancy", msg(count=3, capacity=30, doubt=[name]))
    out = io.StringIO()
    Console(file=out, width=250, no_color=True).print(fleet_table(v, NOW))
    assert f"doubt: {name}" in out.getvalue()


def test_markup_in_a_node_name_prints_as_itself_in_the_table() -> None:
    v = view()
    v.ingest(f"{BASE}/state", msg(state="online"))
    v.ingest(f"{BASE}/alarm/panic", msg(kind="[red]x[/red]", active=True))
    out = io.StringIO()
    Console(file=out, width=200, no_color=True).print(fleet_table(v, NOW))
    assert "[red]x[/red]" in out.getvalue()


# -- whatever arrives, nothing raises and every message is accounted for ------------------------


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=10), children, max_size=4
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    _containers,
    max_leaves=20,
)
contract_keys = st.sampled_from(
    [
        "state",
        "version",
        "drivers",
        "since",
        "lat",
        "lon",
        "speed",
        "fix_time",
        "ts",
        "odometer_m",
        "outbox",
        "depth",
        "count",
        "capacity",
        "kind",
        "active",
        "errors",
        "assigned",
        "route_id",
        "trip_id",
        "direction_id",
        "schedule_relationship",
        "mode",
        "lamps",
        "details",
    ]
)
suffixes = st.sampled_from(
    [
        "state",
        "position",
        "health",
        "occupancy",
        "alarm",
        "alarm/panic",
        "journey",
        "vehicle/faults",
        "reply/ping",
        "cmd/ping",
        "trip",
        "junk",
    ]
)


@settings(max_examples=300, deadline=None)
@given(topic=st.text(max_size=60), payload=st.binary(max_size=200))
def test_arbitrary_topics_and_bytes_never_raise(topic: str, payload: bytes) -> None:
    v = view()
    v.ingest(topic, payload)
    v.ingest(f"{BASE}/state", payload)
    assert v.received == v.accepted + v.ignored + v.rejected == 2
    assert v.internal_errors == 0


@settings(max_examples=400, deadline=None)
@given(suffix=suffixes, body=st.dictionaries(contract_keys, json_values, max_size=8))
def test_arbitrary_json_on_contract_topics_never_raises(suffix: str, body: dict[str, Any]) -> None:
    v = view()
    try:
        payload = json.dumps(body).encode()
    except ValueError:
        return
    v.ingest(f"{BASE}/{suffix}", payload)
    assert v.received == v.accepted + v.ignored + v.rejected == 1
    assert v.internal_errors == 0
    for node in v.nodes.values():  # whatever was kept renders
        Console(file=io.StringIO(), width=200).print(fleet_table(v, NOW))
        node.fix_age_s(NOW)
        node.last_seen_age_s(NOW)


# -- broker URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://localhost:1883", BrokerAddress("localhost", 1883)),
        ("mqtt://127.0.0.1:41234", BrokerAddress("127.0.0.1", 41234)),
        ("mqtt://broker.example", BrokerAddress("broker.example", 1883)),
        ("tcp://h:1", BrokerAddress("h", 1)),
        ("h:2000", BrokerAddress("h", 2000)),
        ("mqtt://[::1]:1883", BrokerAddress("::1", 1883)),
        ("mqtts://broker.example", BrokerAddress("broker.example", 8883, tls=True)),
        ("mqtts://h:9883", BrokerAddress("h", 9883, tls=True)),
        ("ssl://h", BrokerAddress("h", 8883, tls=True)),
    ],
)
def test_broker_urls_give_host_and_port(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "empty"),
        ("http://h:1883", "unknown scheme"),
        ("wss://h:8884", "WebSocket"),
        ("mqtt://u:p@h:1883", "credentials"),
        ("mqtt://h:99999", "mqtt://host:port"),
        ("mqtt://h:port", "mqtt://host:port"),
        ("mqtt://h:0", "port 0"),
        ("mqtt://h:1883/topic", "path"),
        ("mqtt://:1883", "no host"),
    ],
)
def test_bad_broker_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_broker_url(url)


def test_an_ipv6_address_prints_in_brackets() -> None:
    assert BrokerAddress("::1", 1883).url == "mqtt://[::1]:1883"


def test_a_tls_address_prints_as_mqtts() -> None:
    assert BrokerAddress("h", 8883, tls=True).url == "mqtts://h:8883"


def test_credentials_in_a_url_point_to_the_options() -> None:
    with pytest.raises(ValueError, match="--username and --password-file"):
        parse_broker_url("mqtts://dispatch:secret@h")


def test_a_reply_to_a_dotted_command_is_counted_under_its_slash_topic() -> None:
    v = view()
    assert v.ingest(f"{BASE}/reply/config/get", msg(id="1", ok=True))
    assert v.ingest(f"{BASE}/reply/config.get", msg(id="2", ok=True))  # a node before the change


def test_the_remembered_topic_names_are_bounded_under_a_flood_of_names() -> None:
    from edged.ops import fleet

    v = view()
    for i in range(fleet.MAX_SPLITS + 10):
        v.ingest(f"{PREFIX}/creuse/n{i}/junk", b"{}")
    assert len(v._splits) <= fleet.MAX_SPLITS
    assert v.ingest(f"{BASE}/state", BIRTH)  # and a real topic still reads right


def test_a_fix_with_a_guessed_date_is_timed_by_the_trusted_envelope() -> None:
    v = view()
    guessed = "2020-01-01T12:00:00Z"  # the node's own (wrong) date, not the receiver's
    v.ingest(f"{BASE}/position", msg(lat=46.0, lon=2.0, fix_time=guessed, date_unknown=True))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.position is not None
    assert node.position.fix_ms == NOW_MS


def test_a_fix_with_a_known_date_keeps_the_receivers_time() -> None:
    v = view()
    minute_ago = "2027-01-15T07:59:00Z"  # NOW is 2027-01-15T08:00:00Z
    v.ingest(f"{BASE}/position", msg(lat=46.0, lon=2.0, fix_time=minute_ago))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.position is not None
    assert node.position.fix_ms == NOW_MS - 60_000


# -- the fleet's encodings (#20) -------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "cbor", "deflate"])
def test_a_position_reads_the_same_in_every_encoding(encoding: str) -> None:
    from edged.codec import to_wire

    v = view()
    assert v.ingest(f"{BASE}/position", to_wire(POSITION, encoding))  # type: ignore[arg-type]
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.position is not None
    assert (node.position.lat, node.position.lon) == (45.9, 2.17)


def test_a_batch_of_positions_is_read_message_by_message() -> None:
    from edged.codec import to_wire

    v = view()
    first, second = json.loads(POSITION), json.loads(POSITION)
    second.update(seq=2, lat=46.0)
    batch = json.dumps([first, second]).encode()
    assert v.ingest(f"{BASE}/position", to_wire(batch, "deflate"))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.position is not None
    assert node.position.lat == 46.0
    assert node.messages["position"] == 1  # one MQTT message


@pytest.mark.parametrize(
    "payload",
    [
        b"\xa1\x61a\xc0\x61x",  # a CBOR tag
        b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff",  # an array claiming 2^64 items
        b"\x00\x09abc",  # deflate with an unknown dictionary
        b"\x00\x01" + b"\xff" * 40,  # damaged deflate
        b"[1, 2, 3]",  # a batch of what are not messages
        b"[]",
    ],
)
def test_garbage_in_any_encoding_is_rejected_and_counted(payload: bytes) -> None:
    v = view()
    assert not v.ingest(f"{BASE}/position", payload)
    assert v.rejected == 1 and v.internal_errors == 0


def test_a_deflate_bomb_is_rejected_without_inflating_it() -> None:
    from edged.codec import deflate

    v = view()
    bomb = deflate.encode(b'{"v":1,"x":"' + b"a" * 10_000_000 + b'"}')
    assert len(bomb) < 20_000
    assert not v.ingest(f"{BASE}/position", bomb)
    assert v.rejected == 1


def test_long_topic_names_a_node_may_write_are_not_remembered() -> None:
    """A node may write `events/{kind}` and `reply/+/+/+/+` with levels as long as MQTT
    allows (64 KiB a topic): each name was remembered, up to MAX_SPLITS of them (6 GiB
    kept by `edgectl watch` and the feed service after the flood had passed)."""
    import tracemalloc

    v = view()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(300):  # 18 MB of names
            v.ingest(f"{BASE}/events/{i}" + "x" * 60_000, b"{}")
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, f"{kept:,} bytes kept"
    longest = f"{PREFIX}/{'f' * 63}/{'n' * 63}/reply/" + "/".join(["a" * 32] * 4)
    assert v.ingest(longest, msg(id="1", ok=True))  # the longest contract topic still reads


def test_a_message_of_a_batch_that_is_not_read_leaves_the_others_read_and_shown() -> None:
    """A batch is its messages each as if it had come alone: one unusable stopped the
    batch there, the messages after it were lost, and those before it changed the node
    without marking it changed, so the feed and the page kept serving what was before."""
    v = view()
    first, third = json.loads(POSITION), json.loads(POSITION)
    third.update(seq=3, lat=46.1)
    batch = json.dumps([first, {"v": 1, "seq": 2, "lat": "north"}, third]).encode()
    assert v.ingest(f"{BASE}/position", batch)
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.position is not None
    assert node.position.lat == 46.1
    assert node.changed == v.version
    assert v.rejected == 1


# -- the access lists' age ---------------------------------------------------------------------


def health_with_lists(**access: Any) -> bytes:
    return msg(
        uptime_s=1.0,
        clock="ntp",
        connected=True,
        reconnects=0,
        outbox={"depth": 0},
        drivers=[],
        errors={},
        access={"version": 12, "held_s": 60, "expired": False, **access},
    )


def lists_cell(v: FleetView) -> str:
    out = io.StringIO()
    Console(file=out, width=250, no_color=True).print(fleet_table(v, NOW))
    return out.getvalue()


def test_the_lists_age_is_counted_from_the_issued_dispatch_signed() -> None:
    v = view()
    v.ingest(f"{BASE}/health", health_with_lists(issued=NOW_MS - 3 * 86_400_000))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.lists_age_s(NOW) == 3 * 86_400
    assert "v12 3 d" in lists_cell(v)


def test_lists_past_expires_on_this_machine_s_clock_show_expired_before_the_node_knows() -> None:
    """A node without a clock, or one that was off, may not have proven it yet."""
    v = view()
    v.ingest(f"{BASE}/health", health_with_lists(expires=NOW_MS - 1000, expired=False))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.lists_expired(NOW)
    assert "expired" in lists_cell(v)


def test_lists_the_node_says_expired_show_expired() -> None:
    v = view()
    v.ingest(f"{BASE}/health", health_with_lists(expired=True))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.lists_expired(NOW)


def test_lists_without_issued_are_as_old_as_the_node_has_held_them() -> None:
    v = view()
    v.ingest(f"{BASE}/health", health_with_lists(held_s=7200))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.lists_age_s(NOW) == 7200 and not node.lists_expired(NOW)


def test_a_health_without_access_has_no_lists() -> None:
    v = view()
    v.ingest(f"{BASE}/health", HEALTH)
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.health is not None and node.health.lists is None


def test_wrong_types_in_health_access_become_unknowns_not_errors() -> None:
    v = view()
    v.ingest(f"{BASE}/health", health_with_lists(issued="yesterday", expires=-5, expired="yes"))
    node = v.node("creuse", "shuttle-07")
    assert node is not None and node.health is not None and node.health.lists is not None
    assert (node.health.lists.issued, node.health.lists.expires) == (None, None)
    assert not node.health.lists.expired
