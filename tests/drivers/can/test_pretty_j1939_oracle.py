"""J1939 bus logs decoded by pretty_j1939, edged's CAN driver held to what that tool says.

corpus/pretty_j1939/NAME.log is a `candump -L` log: pretty_j1939's own sample captures and
test frames (a real BAM from an engine, a real truck's single frames, RTS/CTS sessions),
and edits of them for the J1939-21 cases a real bus shows now and then (a sender pausing
past T1, a lost or repeated packet, a restarted BAM, a retransmission asked by CTS, an
abort). NAME.chk is pretty_j1939 0.0.6's output for the log, written once by the tool
(corpus/pretty_j1939/README.md gives the command); NAME.toml says where the log comes from,
the transport counters edged must show for it, and every deliberate difference between
edged and the tool (`[[differ]]`: what, and why the standard sides with edged).

Each log goes through edged's real path: `drivers.can.candump.read_log`, python-can
messages, `Pipeline.process` with the log's own times (the transport timeouts are judged
on them), and again through `can.replay` on python-can's virtual bus. The assertions:

- every multi-packet message pretty_j1939 reassembles (BAM or RTS/CTS, PGN, source, the
  bytes) edged reassembles too, and no other: none lost, none invented;
- the transport counters are the ones the .toml names, nothing else counted;
- every DM1 the tool decodes: the same source, the same four lamp states and the same
  codes (SPN, FMI, occurrence count, conversion method), in order;
- every FMS signal both decode (engine speed, actual torque, wheel-based speed): the same
  number, and None where the tool says not available, error, reserved or parameter
  specific (J1939-71's ranges);
- frames edged does not decode (other PGNs, ISO-TP) give nothing and raise nothing.
"""

import asyncio
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
import pytest

from core.events import ActiveFaults, J1939Signals, TroubleCode
from drivers.can.candump import LogFrame, read_log
from drivers.can.decoder import SHIPPED_DBC, Decoders
from drivers.can.j1939 import PGN_DM1, PGN_TP_CM, PGN_TP_DT, pgn_of
from drivers.can.pipeline import Pipeline
from tests.drivers.can.test_replay import replaying
from tests.helpers.drivers import Recorder

CORPUS = Path(__file__).resolve().parent / "corpus" / "pretty_j1939"
LOGS = sorted(p.stem for p in CORPUS.glob("*.log"))
LAMPS = {  # pretty_j1939's lamp names and states, edged's names and 2-bit values
    "Malfunction Indicator Lamp Status": "malfunction",
    "Red Stop Lamp Status": "red_stop",
    "Amber Warning Lamp Status": "amber_warning",
    "Protect Lamp Status": "protect",
}
LAMP_STATES = {"Off": 0, "On": 1, "Error": 2, "Not Available": 3}
SIGNALS = {  # pretty_j1939's SPN names in its bundled database -> edged's DBC signal
    "Engine Speed": ("EEC1", "EngineSpeed"),
    "Actual Engine - Percent Torque": ("EEC1", "ActualEnginePercentTorque"),
    "Wheel-Based Vehicle Speed": ("CCVS1", "WheelBasedVehicleSpeed"),
}
NO_READING = {"N/A", "Error", "Reserved", "Parameter specific"}
DTC = re.compile(r"SPN (\d+) \(.*\), FMI (\d+), OC (\d+)( \(CM=1, J1587\))?$")
TRANSPORT_COUNTERS = re.compile(r"(bam|rts)_\w+|faults|dm1_malformed|short_frame|decode_error")


def number_in(label: str) -> int:
    """'DM1(65226)' -> 65226, '???(65251/0x0FEE3)' -> 65251, 'Engine #1((  0))' -> 0."""
    found = re.search(r"\(\(?\s*(\d+)[/)]", label)
    assert found, label
    return int(found.group(1))


@dataclass
class Decoded:
    """What one decoder made of one log."""

    transport: list[tuple[int, int, str]] = field(default_factory=list)  # PGN, source, hex
    faults: list[tuple[int, dict[str, int], tuple[TroubleCode, ...]]] = field(default_factory=list)
    signals: list[tuple[float, str, int, float | None]] = field(default_factory=list)


def reference(name: str) -> Decoded:
    """pretty_j1939's word on the log, read from its output."""
    out = Decoded()
    for line in (CORPUS / f"{name}.chk").read_text().splitlines():
        frame, _, described = line.rpartition(" ; ")
        if not described.startswith("{"):
            continue
        d = json.loads(described)
        if "PGN" not in d or "SA" not in d:
            continue
        pgn, source = number_in(d["PGN"]), number_in(d["SA"])
        ts, frame_pgn = 0.0, None
        if frame:  # "(ts) channel ID#DATA"
            stamp, _, ident = frame.split()[:3]
            ts = float(stamp.strip("()"))
            frame_pgn = pgn_of(int(ident.partition("#")[0], 16))
        if "Bytes" in d and frame_pgn in (None, PGN_TP_DT, PGN_TP_CM):
            out.transport.append((pgn, source, d["Bytes"].upper()))
        if pgn == PGN_DM1:
            lamps = {edged: LAMP_STATES[d[ref]] for ref, edged in LAMPS.items()}
            codes = []
            for key in sorted((k for k in d if k.startswith("DTC ")), key=lambda k: int(k[4:])):
                m = DTC.match(d[key])
                assert m, d[key]
                spn, fmi, oc = (int(g) for g in m.groups()[:3])
                codes.append(TroubleCode(spn=spn, fmi=fmi, occurrence=oc, cm=int(bool(m[4]))))
            out.faults.append((source, lamps, tuple(codes)))
        for spn_name, (_, signal) in SIGNALS.items():
            if spn_name in d:
                text = d[spn_name]
                value = None if text in NO_READING else float(text.split(" [")[0])
                out.signals.append((ts, signal, source, value))
    return out


def meta(name: str) -> dict[str, Any]:
    return tomllib.loads((CORPUS / f"{name}.toml").read_text())


def differs(name: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in meta(name).get("differ", []) if d["kind"] == kind]


def log_frames(name: str) -> list[LogFrame]:
    frames = []
    for lineno, item in read_log(CORPUS / f"{name}.log"):
        assert isinstance(item, LogFrame), f"{name}.log:{lineno}: {item}"
        frames.append(item)
    return frames


def edged(name: str) -> tuple[Decoded, dict[str, int]]:
    """The log through edged's pipeline, frame by frame at the log's times; the transport
    reassemblers keep every PGN (not only those the DBC decodes), so that every message
    they complete can be held to the tool's."""
    pipeline = Pipeline(Decoders(SHIPPED_DBC), min_interval_s=0)
    out = Decoded()
    for reassembler in (pipeline.bam, pipeline.rts):
        reassembler.wanted = lambda pgn: True
        inner = reassembler.on_dt

        def on_dt(source: int, *rest: Any, inner: Any = inner) -> Any:
            done = inner(source, *rest)
            if done is not None:
                out.transport.append((done[0], source, done[1].hex().upper()))
            return done

        reassembler.on_dt = on_dt  # type: ignore[method-assign]
    for f in log_frames(name):
        msg = can.Message(
            arbitration_id=f.can_id,
            is_extended_id=f.extended,
            is_remote_frame=f.remote,
            is_error_frame=f.error,
            data=f.data,
            check=False,
        )
        event = pipeline.process(msg, now=f.ts)
        record(out, event, f.ts)
    return out, pipeline.snapshot()


def record(out: Decoded, event: Any, ts: float) -> None:
    if isinstance(event, ActiveFaults):
        out.faults.append((event.source, dict(event.lamps), event.codes))
    elif isinstance(event, J1939Signals):
        for message, signal in SIGNALS.values():
            if event.name == message and signal in event.signals:
                value = event.signals[signal]
                out.signals.append((ts, signal, event.source, value))


@pytest.fixture(scope="module")
def decoded() -> dict[str, tuple[Decoded, Decoded, dict[str, int]]]:
    return {name: (reference(name), *edged(name)) for name in LOGS}


def test_the_corpus_is_all_there() -> None:
    assert len(LOGS) == 18
    for name in LOGS:
        assert (CORPUS / f"{name}.chk").is_file() and (CORPUS / f"{name}.toml").is_file()
        assert "source" in meta(name)


@pytest.mark.parametrize("name", LOGS)
def test_every_multipacket_message_is_the_tools_none_lost_none_invented(
    decoded: dict[str, tuple[Decoded, Decoded, dict[str, int]]], name: str
) -> None:
    ref, ours, _ = decoded[name]
    expected = sorted(ref.transport)
    for d in differs(name, "transport"):
        dropped = [m for m in expected if m[:2] == (d["pgn"], d["source"])]
        assert len(dropped) == 1, f"{name}: [[differ]] names no message of the tool: {d}"
        expected.remove(dropped[0])
    # pretty_j1939 gives an RTS/CTS message at the end of the log; order is not compared
    assert sorted(ours.transport) == expected


@pytest.mark.parametrize("name", LOGS)
def test_transport_and_decoding_counters_are_the_expected_ones(
    decoded: dict[str, tuple[Decoded, Decoded, dict[str, int]]], name: str
) -> None:
    _, _, counts = decoded[name]
    counted = {k: n for k, n in counts.items() if TRANSPORT_COUNTERS.fullmatch(k) and n}
    assert counted == meta(name)["counts"]


@pytest.mark.parametrize("name", LOGS)
def test_dm1_lamps_and_codes_are_the_tools(
    decoded: dict[str, tuple[Decoded, Decoded, dict[str, int]]], name: str
) -> None:
    ref, ours, _ = decoded[name]
    expected = []
    for source, lamps, codes in ref.faults:
        left_out = {
            (d["spn"], d["fmi"], d["oc"]) for d in differs(name, "dtc") if d["source"] == source
        }
        kept = tuple(c for c in codes if (c.spn, c.fmi, c.occurrence) not in left_out)
        expected.append((source, lamps, kept))
    assert ours.faults == expected


@pytest.mark.parametrize("name", LOGS)
def test_fms_signals_and_their_no_reading_codes_are_the_tools(
    decoded: dict[str, tuple[Decoded, Decoded, dict[str, int]]], name: str
) -> None:
    ref, ours, _ = decoded[name]
    declared = {(d["ts"], d["name"]) for d in differs(name, "signal")}
    expected = [
        (ts, signal, source, None if (ts, signal) in declared else value)
        for ts, signal, source, value in ref.signals
    ]
    assert [s[:3] for s in ours.signals] == [s[:3] for s in expected]
    for got, want in zip(ours.signals, expected, strict=True):
        if want[3] is None:
            assert got[3] is None, (got, want)
        else:
            assert got[3] == pytest.approx(want[3], abs=1e-9), (got, want)


def test_the_declared_differences_are_each_a_disagreement_of_the_tool(
    decoded: dict[str, tuple[Decoded, Decoded, dict[str, int]]],
) -> None:
    """A [[differ]] that the tool and edged no longer disagree on must go."""
    for name in LOGS:
        ref, ours, _ = decoded[name]
        for d in differs(name, "signal"):
            [value] = [v for ts, s, _, v in ref.signals if (ts, s) == (d["ts"], d["name"])]
            assert value is not None, (name, d)
        for d in differs(name, "dtc"):
            listed = [c for s, _, codes in ref.faults if s == d["source"] for c in codes]
            assert any(
                (c.spn, c.fmi, c.occurrence) == (d["spn"], d["fmi"], d["oc"]) for c in listed
            )
        for d in differs(name, "transport"):
            assert not [m for m in ours.transport if m[:2] == (d["pgn"], d["source"])]


def test_can_replay_on_the_virtual_bus_gives_the_same_events_and_verdicts(
    decoded: dict[str, tuple[Decoded, Decoded, dict[str, int]]],
) -> None:
    """The same logs through `can.replay` (candump reader, python-can's virtual bus, the
    receive thread) as fast as it goes: the same DM1s and FMS signals as frame by frame,
    and the same transport counters, T1 included (judged on the log's time)."""

    async def run(name: str) -> tuple[Decoded, dict[str, int]]:
        rec = Recorder("replay")
        total = len(log_frames(name))
        async with replaying(rec, log=CORPUS / f"{name}.log", speed=1_000_000, min_interval_s=0):
            await rec.wait_for(lambda: rec.counts.get("frames", 0) >= total, f"{name} read", 5)
        out = Decoded()
        for event in rec.events:
            record(out, event, 0.0)
        assert rec.counts.get("malformed_lines", 0) == 0
        return out, dict(rec.counts)

    async def all_logs() -> dict[str, tuple[Decoded, dict[str, int]]]:  # all at once
        return dict(zip(LOGS, await asyncio.gather(*map(run, LOGS)), strict=True))

    replayed = asyncio.run(all_logs())
    for name in LOGS:
        _, ours, _ = decoded[name]
        events, counts = replayed[name]
        assert events.faults == ours.faults, name
        assert [s[1:] for s in events.signals] == [s[1:] for s in ours.signals], name
        counted = {k: n for k, n in counts.items() if TRANSPORT_COUNTERS.fullmatch(k) and n}
        assert counted == meta(name)["counts"], name
