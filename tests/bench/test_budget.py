"""bench.budget: a short smoke run (a quarter of a simulated hour per phase, one dead zone),
and the pieces it counts with."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.budget import (
    MUST_APPEAR,
    Seen,
    service_can_log,
    setups,
    shipped_tls,
    streams,
    trips_expected,
)
from bench.wire import read_keylog, records
from hil.can.fms import DM1, EEC1, FmsBus
from hil.proxy import Connection
from tests.helpers.fileserver import fleet_ca
from tests.helpers.tls_capture import capture

ROOT = Path(__file__).resolve().parents[2]


def test_the_budget_bench_measures_both_phases_and_loses_no_event(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.budget",
            "--json",
            "--hours",
            "0.25",
            "--dead-every-s",
            "420",
            "--dead-s",
            "60",
            "--phases",
            "baseline,shipped",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=150,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    base, lever = r["phases"]["baseline"], r["phases"]["shipped"]
    for phase in (base, lever):
        assert phase["dead_zones"] >= 1 and phase["reconnects"] >= phase["dead_zones"]
        assert phase["node_exit"] == 0 and phase["undecodable"] == 0
        assert not any(phase["event_seq_gaps"].values()), phase["event_seq_gaps"]
        assert phase["per_topic"]["position"]["messages_per_hour"] > 0
        assert phase["bytes_per_reconnect"] is not None
        assert phase["streams"]["ok"], phase["streams"]
        breakdown = phase["reconnect_breakdown"]
        assert breakdown["decrypted"] and breakdown["bytes"] == breakdown["bytes_counted"]
        assert breakdown["by_kind"]["ClientHello"] > 0 and breakdown["by_kind"]["CONNECT"] > 0
    assert lever["bytes_per_hour"] < base["bytes_per_hour"]
    assert lever["bytes_per_reconnect"] < base["bytes_per_reconnect"]  # TLS resumed
    assert "health/beat" not in base["per_topic"]
    assert r["baseline_bytes_per_hour"] == base["bytes_per_hour"]
    assert r["streams_ok"]
    assert r["reconnect_breakdown"] == lever["reconnect_breakdown"]  # the headline's
    # resumed: no certificate; full: the node's certificate goes up
    assert lever["reconnect_breakdown"]["resumed"] and not base["reconnect_breakdown"]["resumed"]
    assert "Certificate" in base["reconnect_breakdown"]["by_kind"]
    assert "Certificate" not in lever["reconnect_breakdown"]["by_kind"]
    # the shipped [broker.tls] block: TLS 1.2 resumed by session id after each dead zone,
    # the broker's side of the lost link left open (no FIN) as a dead zone leaves it
    assert lever["reconnect_breakdown"]["tls_version"] == "1.2"
    in_service = lever["reconnects"] - lever["connections_not_in_service"]
    assert lever["reconnects_resumed"] == in_service >= 1, lever
    assert base["reconnects_resumed"] == 0


def test_the_shipped_phase_takes_the_handshake_lines_of_the_tls_block_not_its_files() -> None:
    assert shipped_tls() == 'max_version = "1.2"\nciphers = "ECDHE+CHACHA20"\ntickets = false'
    text = '# [broker.tls]\n# ca_file = "/x"\n# resume = false\n# Other knobs: a = 1\n# tickets = false\n'
    assert shipped_tls(text) == "resume = false"  # the block ends at its first prose line
    assert shipped_tls("[broker]\nhost = 'x'\n") == ""


def test_the_service_bus_thins_the_profile_keeps_transport_and_dm1_and_ends_in_a_layover(
    tmp_path: Path,
) -> None:
    lines = service_can_log(tmp_path / "can.log", drive_s=120, layover_s=300).read_text()
    frames = [(float(ln[1 : ln.index(")")]), ln.split()[2]) for ln in lines.splitlines()]
    full = list(FmsBus().frames(120))

    def transport(ids: list[int]) -> list[int]:
        return [i for i in ids if (i >> 16) & 0xFF in (0xEC, 0xEB) or (i >> 8) & 0x3FFFF == DM1]

    kept_ids = [int(f.split("#")[0], 16) for _, f in frames[:-1]]
    assert transport(kept_ids) == transport([i for _, i, _ in full]) and transport(kept_ids)
    assert len(frames) < len(full) / 4
    (before, _), (woke, last) = frames[-2], frames[-1]
    assert woke - before == pytest.approx(300)  # the engine off, the bus silent
    assert (int(last.split("#")[0], 16) >> 8) & 0x3FFFF != EEC1  # not the engine waking


@pytest.mark.parametrize(("hours", "trips"), [(0.25, 0), (0.5, 0), (1.0, 1), (10.0, 19)])
def test_the_trips_a_run_must_close_are_the_layovers_begun_in_time(
    hours: float, trips: int
) -> None:
    assert trips_expected(hours) == trips


def test_an_absent_stream_is_named_and_fails_the_phase() -> None:
    seen = Seen()
    for topic in MUST_APPEAR:
        seen.per_topic[topic] += 3
    assert streams(seen, 1.0, parked=False)["ok"]
    del seen.per_topic["trip"]
    out = streams(seen, 1.0, parked=False)
    assert not out["ok"] and out["missing"] == ["trip"] and out["trips_expected_min"] == 1
    assert streams(seen, 0.25, parked=False)["ok"]  # no layover ended in a quarter hour
    del seen.per_topic["events/door"]
    assert streams(seen, 1.0, parked=True)["ok"]  # parked: no bus, no doors, no trip
    assert not streams(seen, 1.0, parked=False)["ok"]


def test_setups_stop_at_the_birth_of_each_connection() -> None:
    first = Connection(0.0, chunks=[(0.1, True, 500), (0.2, False, 900)], closed=5.0)
    second = Connection(10.0, chunks=[(10.1, True, 300), (10.2, False, 200), (10.9, True, 80)])
    failed = Connection(6.0, chunks=[(6.1, True, 300)], closed=6.2)
    got = setups([first, failed, second], births=[0.3, 10.5], keys={})
    assert [(s.conn, s.bytes, s.birth) for s in got] == [(first, 1400, True), (second, 500, True)]


def test_a_reconnect_without_a_birth_is_counted_until_its_connack(tmp_path: Path) -> None:
    """A node that kept its birth (will delay) shows no birth at dispatch: its setup ends
    at the CONNACK, found in the decrypted bytes."""
    cap = capture(fleet_ca(tmp_path / "fleet"), tmp_path / "keys")
    records_down, _ = records(cap.down, False)
    connack_at = records_down[-1].at  # the last record down carries the CONNACK
    conn = Connection(10.0, chunks=[(10.1, True, len(cap.up)), (10.2, False, connack_at)])
    conn.chunks += [(10.3, False, len(cap.down) - connack_at), (11.0, True, 5000)]
    conn.head = {True: bytearray(cap.up), False: bytearray(cap.down)}
    conn.up, conn.down = len(cap.up) + 5000, len(cap.down)
    keys = read_keylog(cap.keylog.read_text())
    got = setups([conn], births=[], keys=keys)
    assert [(s.end, s.bytes, s.birth) for s in got] == [(10.3, len(cap.up) + len(cap.down), False)]
    assert setups([conn], births=[], keys={}) == []  # not decrypted: not counted, not guessed
    lost = Connection(10.0, len(cap.up), len(cap.down), chunks=conn.chunks[:3], head=conn.head)
    assert setups([lost], births=[], keys=keys) == []  # gone after its CONNACK
