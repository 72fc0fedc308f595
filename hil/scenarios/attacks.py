"""The security review's attacks (#12), played against a running venue node on the shipped
TLS broker; each is reported as held or NOT HELD from what the lock pin, the broker and
dispatch show, never from what the code is meant to do.

Doors: a guest back after the booking ended taps "out" at the `both` reader; a card
withdrawn while inside does the same; a repeat tap hands the door to a second person; after
a power cycle with no trusted clock, an expired pass, an expired staff card and a pass no
clock can check. Broker: another node's certificate takes the node's client id; the node's
own key plants retained commands; a reply aimed at another node's `cmd/` or at the node's
own alarm; a command sent while the node is away; a retained command at reconnect. Kiosk: a
flood of held streams, half-sent requests and idle connections while the broker restarts.
And the broker itself, started as the README says (root, then its own user).
"""

import asyncio
import json
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from edged.access.lists import sign_lists
from hil.fleetbroker import FleetBroker, FleetClient, drops_root
from hil.kioskflood import flood, unit_nofile
from hil.rig.report import Report
from hil.rig.rig import FLEET, PIN_LOCK, Cards, Rig, RigError, RigSetup
from hil.scenarios import Scenario
from hil.scenarios.checks import event_streams_have_no_gaps, no_uid_reached_the_broker
from hil.unsynced import UnsyncedUnavailable, check_supported

NODE_SIDE = ""
"""Where the node-side halves of #12.4-6 are still open (a branch name), shown as open and
not failed; "" now that they are merged: a node that does not hold them fails the run."""
NOT_AUTHORIZED = 135
VISITORS = [f"127.0.0.{i}" for i in range(2, 18)]
NODE = "venue-1"


def setup(quick: bool) -> RigSetup:
    return RigSetup(
        profile="venue",
        capacity=10,
        count_from=("beams",),
        secure=True,
        kiosk=True,
        nofile=unit_nofile(),
        access="pulse_s = 1.0",
    )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


class Attacker:
    """Dispatch's and an attacker's hands on the secure broker (blocking paho, in threads)."""

    def __init__(self, rig: Rig) -> None:
        assert rig.fleet is not None
        self.rig = rig
        self.fleet: FleetBroker = rig.fleet

    async def client(self, name: str, *, port: int | None = None, **kw: Any) -> FleetClient:
        return await asyncio.to_thread(
            FleetClient, port or self.fleet.node_port, self.fleet, name, **kw
        )

    async def dispatch(self) -> FleetClient:
        return await self.client("dispatch", port=self.fleet.ops_port)


async def lock_opened_by(rig: Rig, card: bytes) -> tuple[dict[str, Any], bool]:
    """Wait for the strike to be shut, tap `card`: (the tap event, whether the lock opened)."""
    deadline = time.monotonic() + 5
    while await rig.get_pin(PIN_LOCK) != 0:
        if time.monotonic() > deadline:
            raise RigError("the lock never shut")
        await asyncio.sleep(0.1)
    t = await rig.tap(card)
    return t.payload, await rig.get_pin(PIN_LOCK) == 1


async def delta(rig: Rig, **maps: Any) -> None:
    document = {
        "kind": "delta",
        "fleet": FLEET,
        "version": rig.lists_version + 1,
        "base_version": rig.lists_version,
        **maps,
    }
    reply = await rig.command(
        "access.update", {"lists": document, "sig": sign_lists(rig.list_key, document)}
    )
    if not reply.get("ok"):
        raise RigError(f"access.update refused: {reply}")
    rig.lists_version += 1


def said(event: dict[str, Any]) -> str:
    keys = ("decision", "reason", "action", "unlocked", "validity")
    return json.dumps({k: event.get(k) for k in keys if k in event})


# -- doors and fares ---------------------------------------------------------------------


async def doors(rig: Rig, report: Report) -> None:
    now = time.time()
    ended = [{"room": "salle-1", "start": _iso(now - 3 * 3600), "end": _iso(now - 3600)}]
    current = [{"room": "salle-1", "start": _iso(now - 600), "end": _iso(now + 3600)}]

    async def back_at_night() -> None:
        event, opened = await lock_opened_by(rig, Cards.JOBSEEKER)
        assert event["reason"] == "booking" and opened, f"the guest did not get in: {event}"
        await delta(rig, bookings={rig.ref(Cards.JOBSEEKER): ended})  # hours later
        event, opened = await lock_opened_by(rig, Cards.JOBSEEKER)
        report.held(
            "#12.1 a guest back after the booking ended taps 'out' at the both reader",
            not opened and event.get("action") == "exit",
            said(event),
        )

    await report.step("a guest enters on a booking", back_at_night())

    async def withdrawn() -> None:
        await delta(rig, bookings={rig.ref(Cards.RESIDENT): current})
        event, opened = await lock_opened_by(rig, Cards.RESIDENT)
        assert event["reason"] == "booking" and opened, f"the guest did not get in: {event}"
        await delta(rig, cards={rig.ref(Cards.RESIDENT): None})
        event, opened = await lock_opened_by(rig, Cards.RESIDENT)
        report.held(
            "#12.1 a card withdrawn while inside taps 'out'",
            not opened and event.get("action") == "exit",
            said(event),
        )

    await report.step("a guest enters, then dispatch withdraws the card", withdrawn())

    async def pass_back() -> None:
        event, opened = await lock_opened_by(rig, Cards.STAFF)
        assert opened, f"staff did not get in: {event}"
        event, opened = await lock_opened_by(rig, Cards.STAFF)  # handed back, within 10 s
        report.held(
            "#12.3 the same card again within the repeat window (pass-back)",
            not opened and event.get("reason") == "repeat",
            said(event),
        )

    await report.step("staff taps in", pass_back())


async def unsynced_clock(rig: Rig, report: Report) -> None:
    try:
        check_supported()
    except UnsyncedUnavailable as exc:
        report.skip("#12.2 passes on an unsynced clock", str(exc))
        return
    today = date.today()
    yesterday, later = str(today - timedelta(days=1)), str(today + timedelta(days=30))
    r = rig.ref
    cards = {
        r(Cards.RESIDENT): {"profile": "resident", "valid_until": yesterday},
        r(Cards.LOST): {"profile": "staff", "valid_until": yesterday},  # found, expired
        r(Cards.SENIOR): {"profile": "senior", "valid_until": later},
        r(Cards.PROVIDER): {"profile": "staff", "valid_until": later},
        r(Cards.JOBSEEKER): {"profile": "jobseeker"},
    }

    async def power_cycle() -> bool:
        await rig.load_lists(cards=cards, deny={})
        event, _ = await lock_opened_by(rig, Cards.SENIOR)  # synced: reads the trusted time
        assert event.get("validity") == "clock", f"the node's clock is not trusted: {event}"
        await asyncio.sleep(1.0)  # the outbox writer commits the node's state
        rig.daemon.kill9()
        rig.setup.trust_system_clock = False
        rig.config.write_text(rig.render_config())
        rig.daemon.unsynced = True  # a Pi without RTC, cold, no NTP
        await rig.start_daemon()
        return True

    if not await report.step("a power cycle: no trusted clock after it", power_cycle()):
        return

    async def taps() -> None:
        expired, opened = await lock_opened_by(rig, Cards.RESIDENT)
        if expired.get("clock") != "unsynced":
            report.skip("#12.2 passes on an unsynced clock", f"the clock is {expired.get('clock')}")
            return
        report.held("#12.2 an expired pass on an unsynced clock", not opened, said(expired))
        event, opened = await lock_opened_by(rig, Cards.LOST)
        report.held("#12.2 an expired staff card on an unsynced clock", not opened, said(event))
        event, opened = await lock_opened_by(rig, Cards.SENIOR)
        report.held(
            "#12.2 a dated pass no clock can check (policy: refuse)", not opened, said(event)
        )
        event, opened = await lock_opened_by(rig, Cards.PROVIDER)
        report.check(
            "staff with a pass no clock can check are still let in",
            opened and event.get("validity") == "undecided",
            said(event),
        )

    await report.step("taps on the unsynced clock", taps())


# -- the broker ----------------------------------------------------------------------------


async def broker(rig: Rig, report: Report, quick: bool) -> None:
    hands = Attacker(rig)
    base = rig.base

    fleet = hands.fleet
    report.check(
        "#12.8 the broker started as documented runs as its own user",
        fleet.proc is not None
        and fleet.proc.poll() is None
        and (fleet.user == "mosquitto" or not drops_root()),
        f"running as {fleet.user}" + ("" if drops_root() else " (not root here: no drop)"),
    )

    async def takeover() -> None:
        states = len(rig.on("state"))
        answered = lost = 0
        rounds = 6 if quick else 10
        for _ in range(rounds):
            rogue = await hands.client("rig.other-1", client_id=f"edged-{FLEET}-{NODE}")
            try:
                await rig.command("ping", timeout=5)
                answered += 1
            except RigError:
                lost += 1
            await asyncio.to_thread(rogue.close)
        offline = [m for m in rig.on("state")[states:] if m.payload.get("state") == "offline"]
        report.held(
            "#12.4 another node's certificate takes the node's client id",
            not offline and lost == 0,
            f"{rounds} takeovers: {len(offline)} offline, {answered} commands answered, "
            f"{lost} lost",
        )

    await report.step("a rogue connects with the node's client id, again and again", takeover())

    async def plant() -> None:
        d = await hands.dispatch()
        await asyncio.to_thread(d.subscribe, f"{base}/cmd/#")
        stolen = await hands.client(f"{FLEET}.{NODE}", client_id="from-the-sd-card")
        codes = {}
        try:
            for name in ("mode.set", "alarm.ack", "kiosk.message", "occupancy.reset"):
                body = json.dumps({"id": f"plant-{name}", "args": {}}).encode()
                codes[name] = await asyncio.to_thread(
                    stolen.publish, f"{base}/cmd/{name}", retain=True, payload=body
                )
        finally:
            await asyncio.to_thread(stolen.close)
        late = await hands.dispatch()  # a new subscriber gets whatever is retained
        await asyncio.to_thread(late.subscribe, f"{base}/cmd/#")
        await asyncio.sleep(0.5)
        retained = [t for t, _, r in late.messages if r]
        await asyncio.to_thread(d.close)
        await asyncio.to_thread(late.close)
        report.held(
            "#12.5 the node's own key plants retained commands for it",
            all(c == NOT_AUTHORIZED for c in codes.values()) and not retained and not d.messages,
            f"PUBACK reason codes {codes}, retained now: {retained}",
        )

    await report.step("a key taken from the node's SD card writes its cmd/ topics", plant())

    async def reply_topics() -> None:
        d = await hands.dispatch()
        await asyncio.to_thread(d.subscribe, f"rnst/v1/{FLEET}/other-1/cmd/#")
        await asyncio.to_thread(d.subscribe, f"{base}/alarm/#")
        await asyncio.sleep(0.3)
        before = len(d.messages)
        for target in (f"rnst/v1/{FLEET}/other-1/cmd/door.unlock", f"{base}/alarm/panic"):
            body = json.dumps({"id": uuid.uuid4().hex[:12], "args": {}}).encode()
            await asyncio.to_thread(
                d.publish, f"{base}/cmd/ping", payload=body, response_topic=target
            )
        await asyncio.sleep(2.0)
        landed = [t for t, _, r in d.messages[before:] if not r]
        await asyncio.to_thread(d.close)
        other = [t for t in landed if "/other-1/" in t]
        own = [t for t in landed if t.endswith("/alarm/panic")]
        report.held(
            "#12.6 a reply aimed at another node's cmd/ topic", not other, f"arrived: {other}"
        )
        report.held(
            "#12.6 a reply aimed at the node's own alarm topic",
            not own,
            f"arrived: {own}",
            open_in=NODE_SIDE,
        )

    await report.step("commands name response topics on node topics", reply_topics())

    async def away_and_retained() -> None:
        d = await hands.dispatch()
        retained_id = f"retained-{uuid.uuid4().hex[:8]}"
        body = json.dumps({"id": retained_id, "args": {}}).encode()
        replies = len(rig.on("reply/ping"))
        await asyncio.to_thread(d.publish, f"{base}/cmd/ping", payload=body, retain=True)
        await asyncio.sleep(2.0)
        live = [m.payload.get("id") for m in rig.on("reply/ping")[replies:]]
        report.held(
            "#12.5 a retained command is not run when it is planted",
            retained_id not in live,
            f"replies while it was planted: {live}",
            open_in=NODE_SIDE,
        )
        rig.daemon.kill9()  # the node is away
        away_id = f"away-{uuid.uuid4().hex[:8]}"
        body = json.dumps({"id": away_id, "args": {}}).encode()
        await asyncio.to_thread(d.publish, f"{base}/cmd/ping", payload=body)
        replies = len(rig.on("reply/ping"))
        await rig.start_daemon()
        await asyncio.sleep(3.0)
        after = [m.payload.get("id") for m in rig.on("reply/ping")[replies:]]
        await asyncio.to_thread(d.publish, f"{base}/cmd/ping", payload=b"", retain=True)
        await asyncio.to_thread(d.close)
        report.held(
            "#12.4 a command sent while the node was away reaches it",
            away_id in after,
            f"replies after the restart: {after}",
            open_in=NODE_SIDE,
        )
        report.held(
            "#12.5 a retained command is not run again at reconnect",
            retained_id not in after,
            f"replies after the restart: {after}",
            open_in=NODE_SIDE,
        )

    await report.step("the node is away, then back", away_and_retained())


# -- the kiosk -----------------------------------------------------------------------------


async def kiosk(rig: Rig, report: Report, quick: bool) -> None:
    limit = rig.setup.nofile or unit_nofile()
    hold = 14.0 if quick else 25.0  # past the kiosk's header_timeout_s (10 s)

    async def flooded() -> None:
        attack = asyncio.create_task(
            flood(
                rig.kiosk_url,
                streams=8,
                half=100 if quick else 300,
                idle=limit + 100,
                hold_s=hold,
                sources=VISITORS,
            )
        )
        peak = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < hold / 3:
            peak = max(peak, rig.daemon.fds())
            await asyncio.sleep(0.1)
        states = len(rig.on("state"))
        rig.broker_down()
        rig.broker_up()
        back: float | None = None
        while not attack.done():
            peak = max(peak, rig.daemon.fds())
            online = [m for m in rig.on("state")[states:] if m.payload.get("state") == "online"]
            if back is None and online:
                back = time.monotonic() - t0 - hold / 3
            await asyncio.sleep(0.1)
        result = (await attack).as_dict()
        report.measured["kiosk_flood"] = {
            "LimitNOFILE": limit,
            "daemon_fds_peak": peak,
            "reconnect_s": None if back is None else round(back, 2),
            **result,
        }
        report.held(
            "#12.7 the node reconnects to its broker while its kiosk is flooded",
            back is not None and peak < limit - 200,
            f"back online after {back and round(back, 2)} s; descriptors peaked at {peak} "
            f"of {limit}",
        )
        page_ok = result["page_ok"] > 0 and result["page_failed"] == 0
        report.held(
            "#12.7 the screen keeps its page and its live stream through the flood",
            page_ok and str(result["screen_stream"]).startswith("HTTP/1.1 200"),
            f"state {result['page_ok']} ok / {result['page_failed']} failed, live page: "
            f"{result['screen_stream']}",
        )
        half = result["half"]
        report.held(
            "#12.7 half-sent requests are closed",
            isinstance(half, dict) and half["closed"] == half["opened"],
            json.dumps(half),
        )

    await report.step("a visitor floods the kiosk; the broker restarts meanwhile", flooded())


async def run(rig: Rig, report: Report, quick: bool) -> None:
    await doors(rig, report)
    await broker(rig, report, quick)
    await kiosk(rig, report, quick)
    await unsynced_clock(rig, report)  # last: it leaves the node without a trusted clock
    event_streams_have_no_gaps(rig, report, "events/tap")
    no_uid_reached_the_broker(rig, report)


SCENARIO = Scenario("attacks", __doc__ or "", setup, run)
