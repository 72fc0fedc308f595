"""The probes of `edgectl broker-check`: each one makes the broker do what a fleet will make
it do, with real clients and real reconnects, and reports what came out.

Every probe works under `{prefix}/_check/{run}/cmd/…`: a dispatch login may write there (the
fleet ACL lets dispatch write `{prefix}/+/+/cmd/#` and read `{prefix}/#`), no node listens
there (`_check` is not a fleet id), and the run id keeps two checks apart. Retained messages
and the persistent session a probe leaves are cleared at the end.
"""

import asyncio
import contextlib
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.ops.brokercheck.result import Finding, Verdict
from edged.ops.client import (
    BrokerUnreachableError,
    Say,
    ToolClient,
    abrupt_close,
    client_for,
    protocol_refusal,
    refusal,
    refused,
)
from edged.ops.login import Login, Protocol
from edged.uplink.sender import RESERVED, drain_share
from edged.uplink.tls import TlsSessions

SESSION_EXPIRY_S = 300
"""What a node asks for its persistent session (commands queued while it is away)."""
COMMAND_MAX = 64 * 1024
"""A command's payload limit on the node: the broker must carry at least this."""
LISTS_MAX = 4 * 1024 * 1024 + 16 * 1024
"""`access.update` with a full list (up to 4 MB of arguments) and its envelope."""
SHARED_COUNT = 10


@dataclass
class Run:
    """One broker-check run: the login, the protocol the probes speak, where they publish."""

    login: Login
    prefix: str
    wait_s: float
    window: int
    say: Say | None = None
    version: Protocol = "5"
    connack: Any = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    counter: int = 0

    @property
    def base(self) -> str:
        return f"{self.prefix}/_check/{self.run_id}/cmd"

    def topic(self, *levels: str) -> str:
        return "/".join((self.base, *levels))

    def client_id(self, role: str) -> str:
        return f"edgectl-check-{self.run_id}-{role}"

    def note(self, message: str) -> None:
        if self.say is not None:
            self.say(message)

    @contextlib.asynccontextmanager
    async def client(self, role: str, **options: Any) -> AsyncIterator[ToolClient]:
        """A connected client speaking the run's protocol; its errors end the run."""
        options.setdefault("timeout", max(self.wait_s, 5.0))
        c = client_for(self.login, self.version, self.client_id(role), **options)
        try:
            await c.__aenter__()
        except aiomqtt.MqttError as exc:
            raise refusal(self.login, self.version, exc) from None
        try:
            yield c
        finally:
            with contextlib.suppress(aiomqtt.MqttError):
                await c.__aexit__(None, None, None)


async def first(
    client: aiomqtt.Client, match: Callable[[aiomqtt.Message], bool], wait_s: float
) -> aiomqtt.Message | None:
    """The first message that matches within `wait_s`, else None."""
    try:
        async with asyncio.timeout(wait_s):
            async for message in client.messages:
                if match(message):
                    return message
    except (TimeoutError, aiomqtt.MqttError):
        return None
    return None


async def collect(client: aiomqtt.Client, count: int, wait_s: float) -> list[aiomqtt.Message]:
    """Up to `count` messages, waiting at most `wait_s` for them."""
    got: list[aiomqtt.Message] = []
    with contextlib.suppress(TimeoutError, aiomqtt.MqttError):
        async with asyncio.timeout(wait_s):
            async for message in client.messages:
                got.append(message)
                if len(got) >= count:
                    break
    return got


def _payload(message: aiomqtt.Message) -> bytes:
    p = message.payload
    return bytes(p) if isinstance(p, bytes | bytearray) else str(p).encode()


def _subscribed(granted: Any) -> bool:
    return not refused(granted)


# -- 1. protocol versions ---------------------------------------------------------------------


async def protocols(run: Run) -> Finding:
    """Connect with MQTT 5, then 3.1.1; keep the MQTT 5 CONNACK (the broker's limits)."""
    spoken: dict[str, str] = {}
    for version in ("5", "3.1.1"):
        c = client_for(run.login, version, run.client_id(f"v{version}"), timeout=run.wait_s + 2)
        try:
            await c.__aenter__()
        except aiomqtt.MqttError as exc:
            why = protocol_refusal(exc, c.timeout)
            if why is None:
                raise refusal(run.login, version, exc) from None
            spoken[version] = why
            continue
        spoken[version] = "accepted"
        if version == "5":
            run.connack = c.connack
        with contextlib.suppress(aiomqtt.MqttError):
            await c.__aexit__(None, None, None)
    v5, v311 = spoken["5"] == "accepted", spoken["3.1.1"] == "accepted"
    measured = f"MQTT 5: {spoken['5']}; MQTT 3.1.1: {spoken['3.1.1']}"
    if not (v5 or v311):
        raise BrokerUnreachableError(
            f"the broker at {run.login.address} accepted neither MQTT 5 nor 3.1.1 ({measured})"
        )
    run.version = "5" if v5 else "3.1.1"
    if run.login.protocol != "auto" and spoken[run.login.protocol] == "accepted":
        run.version = run.login.protocol  # probe as nodes configured with this version would
    if run.version != "5":
        run.connack = None  # its limits belong to MQTT 5 sessions
    if v5 and v311:
        return Finding(
            "protocols",
            "protocol versions",
            Verdict.OK,
            measured,
            "nodes and edgectl speak MQTT 5",
            True,
        )
    if v311:
        return Finding(
            "protocols",
            "protocol versions",
            Verdict.LIMITED,
            measured,
            "nodes and edgectl fall back to MQTT 3.1.1 by themselves (or set [broker] "
            'protocol = "3.1.1"): no response topics, no session expiry',
            True,
        )
    return Finding(
        "protocols",
        "protocol versions",
        Verdict.LIMITED,
        measured,
        "MQTT 5 only: nodes must keep [broker] protocol = 5 (the default)",
        True,
    )


# -- 2. will ----------------------------------------------------------------------------------


async def will(run: Run) -> Finding:
    """A client with a will loses its connection without DISCONNECT: the will must arrive."""
    topic = run.topic("will")
    token = f"offline-{run.run_id}".encode()
    title, edged = "will on abrupt disconnect", "the node's `state` goes offline by its will"
    async with run.client("will-watch") as watcher:
        if not _subscribed(await watcher.subscribe(topic, qos=1)):
            return Finding(
                "will", title, Verdict.MISSING, f"subscribe {topic} refused", edged, True
            )
        retained_will = True
        try:
            started, got = await _will_after_a_drop(run, watcher, topic, token, retain=True)
        except BrokerUnreachableError:  # a broker without retained messages refuses it
            started, got = await _will_after_a_drop(run, watcher, topic, token, retain=False)
            retained_will = False
    if retained_will:  # a broker that keeps none has nothing to clear (and refuses it)
        await _clear_retained(run, topic)
    if got is None:
        return Finding(
            "will",
            title,
            Verdict.MISSING,
            f"no will on {topic} within {run.wait_s + 2:g} s of a TCP drop",
            "dispatch cannot see a node go offline (`state` stays online): use another broker",
            True,
        )
    ms = (time.monotonic() - started) * 1000
    if not retained_will:
        return Finding(
            "will",
            title,
            Verdict.LIMITED,
            f"the broker refused a retained will; one without retain was delivered {ms:.0f} "
            "ms after a TCP drop",
            "nodes send their will (and everything else) without the retain flag: a "
            "subscriber that comes later does not see an offline node (docs/brokers.md)",
            True,
        )
    return Finding(
        "will", title, Verdict.OK, f"will delivered {ms:.0f} ms after a TCP drop", edged, True
    )


async def _will_after_a_drop(
    run: Run, watcher: aiomqtt.Client, topic: str, token: bytes, *, retain: bool
) -> tuple[float, aiomqtt.Message | None]:
    """(when the connection was dropped, the will `watcher` got within the wait or None)."""
    will_msg = aiomqtt.Will(topic, token, qos=1, retain=retain)
    async with run.client("will", will=will_msg, keepalive=5) as dying:
        started = time.monotonic()
        abrupt_close(dying)
        return started, await first(watcher, lambda m: _payload(m) == token, run.wait_s + 2)


async def _clear_retained(run: Run, *topics: str) -> None:
    async with run.client("clear") as c:
        for topic in topics:
            await c.publish(topic, b"", qos=1, retain=True)


# -- 3. retained messages to wildcard subscribers ---------------------------------------------


async def retained(run: Run) -> Finding:
    topic = run.topic("retained", "state")
    token = f"retained-{run.run_id}".encode()
    title = "retained to wildcard subscribers"
    try:
        async with run.client("retain-pub") as pub:
            await pub.publish(topic, token, qos=1, retain=True)
    except aiomqtt.MqttError as exc:  # a broker without retained messages ends the session
        return Finding(
            "retained_wildcard",
            title,
            Verdict.LIMITED,
            f"a retained publish ended its session ({exc}): the broker keeps no retained "
            "messages (its log says why)",
            "nodes publish without the retain flag (their alarms and events still arrive); "
            "a subscriber hears a node only from its next message: no last state, health "
            "or occupancy when it starts (docs/brokers.md)",
            True,
        )
    try:
        async with run.client("retain-wild") as wild:
            await wild.subscribe(run.topic("retained", "#"), qos=1)
            by_wildcard = await first(wild, lambda m: _payload(m) == token, run.wait_s)
        async with run.client("retain-exact") as exact:
            await exact.subscribe(topic, qos=1)
            by_name = await first(exact, lambda m: _payload(m) == token, run.wait_s)
    finally:
        await _clear_retained(run, topic)
    if by_wildcard is not None:
        return Finding(
            "retained_wildcard",
            title,
            Verdict.OK,
            f"{run.topic('retained', '#')} got the retained message",
            "dispatch rebuilds the fleet from one {prefix}/# subscription",
            True,
        )
    if by_name is not None:
        return Finding(
            "retained_wildcard",
            title,
            Verdict.LIMITED,
            "only a subscription naming the exact topic got the retained message; "
            f"{run.topic('retained', '#')} did not",
            "edgectl watch and the fleet feed subscribe each node's retained topics by name "
            "(state, health, occupancy, vehicle/faults, alarm/*); name silent nodes with "
            "--node; dispatch software must do the same",
            True,
        )
    return Finding(
        "retained_wildcard",
        title,
        Verdict.MISSING,
        f"no retained message on {topic}, neither by wildcard nor by name",
        "`state`, `occupancy`, `health` and alarms are retained: dispatch would start blind",
        True,
    )


# -- 4. topic names kept as sent ----------------------------------------------------------------


async def dots(run: Run) -> Finding:
    sent = run.topic("dots", "config.get")
    rewritten = run.topic("dots", "config/get")
    title = "topic names kept as sent (dots)"
    async with run.client("dots-sub") as sub:
        await sub.subscribe(run.topic("dots", "#"), qos=1)
        async with run.client("dots-pub") as pub:
            await pub.publish(sent, b"dots", qos=1)
        got = await first(sub, lambda m: _payload(m) == b"dots", run.wait_s)
    if got is not None and str(got.topic) == sent:
        return Finding(
            "topic_dots",
            title,
            Verdict.OK,
            f"{sent} arrived as sent",
            "edgectl sends cmd/a/b anyway, the spelling every broker keeps",
            True,
        )
    if got is not None:
        return Finding(
            "topic_dots",
            title,
            Verdict.LIMITED,
            f"{sent} arrived as {got.topic}"
            + (" (dots became slashes)" if str(got.topic) == rewritten else ""),
            "edgectl sends cmd/a/b and reads reply/#; nodes take cmd/a.b and cmd/a/b alike and "
            "reply on reply/a/b; signatures cover the dotted name, so they still verify",
            True,
        )
    return Finding(
        "topic_dots",
        title,
        Verdict.MISSING,
        f"nothing arrived on {run.topic('dots', '#')} after a publish on {sent}",
        "dotted topic names are lost: only slash-spelled commands (what edgectl sends) work",
        True,
    )


# -- 5 and 6. QoS 1 redelivery and the persistent session -------------------------------------


async def session(run: Run) -> list[Finding]:
    """A persistent subscriber receives M1 without acknowledging it and loses its connection;
    M2 is published while it is away; it comes back with the same client id."""
    topic = run.topic("session")
    m1, m2 = f"m1-{run.run_id}".encode(), f"m2-{run.run_id}".encode()
    persistent = {"clean": False, "session_expiry_s": SESSION_EXPIRY_S}
    granted_expiry: Any = None
    async with run.client("session", **persistent) as sub:
        sub.paho.manual_ack_set(True)
        if not _subscribed(await sub.subscribe(topic, qos=1)):
            raise BrokerUnreachableError(f"the broker refused a subscription to {topic} (ACL?)")
        granted_expiry = sub.connack_property("SessionExpiryInterval")
        async with run.client("session-pub") as pub:
            await pub.publish(topic, m1, qos=1)
            got_m1 = await first(sub, lambda m: _payload(m) == m1, run.wait_s)
            abrupt_close(sub)
            await asyncio.sleep(0.3)
            await pub.publish(topic, m2, qos=1)
    await asyncio.sleep(0.3)
    async with run.client("session", **persistent) as back:
        present = back.session_present
        again = await collect(back, 2, run.wait_s)
    async with run.client("session", clean=True):  # ends the session: nothing left behind
        pass
    payloads = [_payload(m) for m in again]
    redelivered = m1 in payloads
    queued = m2 in payloads
    expiry = (
        f"; CONNACK session expiry {granted_expiry} s (asked {SESSION_EXPIRY_S})"
        if granted_expiry is not None
        else ""
    )
    findings = []
    title = "QoS 1 redelivery across a reconnect"
    if got_m1 is None:
        findings.append(
            Finding(
                "qos1_redelivery",
                title,
                Verdict.MISSING,
                f"a QoS 1 message on {topic} never reached its subscriber",
                "commands would be lost",
                True,
            )
        )
    else:
        findings.append(
            Finding(
                "qos1_redelivery",
                title,
                Verdict.OK if redelivered else Verdict.MISSING,
                "a QoS 1 message received but not acknowledged came again after the reconnect"
                if redelivered
                else "a QoS 1 message received but not acknowledged did not come again after "
                "the reconnect",
                "a command cut off by a lost link reaches the node when it is back"
                if redelivered
                else "a command in flight when the link drops is lost: dispatch must resend "
                "on a missing reply",
                True,
            )
        )
    title = "session expiry honoured"
    short = granted_expiry is not None and int(granted_expiry) < SESSION_EXPIRY_S
    if queued and present and not short:
        verdict, edged = Verdict.OK, "commands sent while a node is offline wait for it"
    elif queued or present:
        verdict, edged = (
            Verdict.LIMITED,
            "the session is kept for less than asked: commands sent during a longer outage "
            "are lost; dispatch resends on a missing reply",
        )
    else:
        verdict, edged = (
            Verdict.MISSING,
            "commands sent while a node is offline are lost: dispatch must resend on a "
            "missing reply (or use a broker that keeps sessions)",
        )
    findings.append(
        Finding(
            "session_expiry",
            title,
            verdict,
            f"session present on return: {'yes' if present else 'no'}; a message published "
            f"while away {'delivered' if queued else 'not delivered'}{expiry}",
            edged,
            True,
        )
    )
    return findings


# -- 7. MQTT 5 response topic -------------------------------------------------------------------


async def response_topic(run: Run) -> Finding:
    title = "MQTT 5 response topic"
    fallback = "edgectl waits on reply/{name} (every node replies there too)"
    if run.version != "5":
        return Finding("response_topic", title, Verdict.MISSING, "no MQTT 5", fallback, False)
    topic, answer, corr = run.topic("resp", "req"), run.topic("resp", "answer"), b"corr-42"
    async with run.client("resp-sub") as sub:
        await sub.subscribe(topic, qos=1)
        async with run.client("resp-pub") as pub:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = answer
            props.CorrelationData = corr
            await pub.publish(topic, b"req", qos=1, properties=props)
        got = await first(sub, lambda m: _payload(m) == b"req", run.wait_s)
    if got is None:
        return Finding(
            "response_topic", title, Verdict.MISSING, "the request never arrived", fallback, False
        )
    seen_topic = getattr(got.properties, "ResponseTopic", None)
    seen_corr = getattr(got.properties, "CorrelationData", None)
    if seen_topic == answer and seen_corr is not None and bytes(seen_corr) == corr:
        return Finding(
            "response_topic",
            title,
            Verdict.OK,
            "response topic and correlation data passed through",
            "edgectl gets the reply on its own response topic, matched by correlation data",
            False,
        )
    return Finding(
        "response_topic",
        title,
        Verdict.MISSING,
        f"the subscriber saw response topic {seen_topic!r}, correlation {seen_corr!r}",
        fallback,
        False,
    )


# -- 8. shared subscriptions --------------------------------------------------------------------


async def shared(run: Run) -> Finding:
    title = "shared subscriptions"
    edged = (
        "not needed: each fleet-feed replica subscribes to everything and rebuilds from retained"
    )
    announced = (
        run.connack.SharedSubscriptionAvailable
        if _has(run.connack, "SharedSubscriptionAvailable")
        else None
    )
    topic = run.topic("shared")
    group = f"$share/edgectl-{run.run_id}/{topic}"
    async with run.client("share-a") as a, run.client("share-b") as b:
        ga, gb = await a.subscribe(group, qos=1), await b.subscribe(group, qos=1)
        if refused(ga) or refused(gb):
            return Finding(
                "shared_subscriptions",
                title,
                Verdict.MISSING,
                "SUBACK refused $share/…",
                edged,
                False,
            )
        async with run.client("share-pub") as pub:
            for i in range(SHARED_COUNT):
                await pub.publish(topic, f"s{i}".encode(), qos=1)
        got_a, got_b = await asyncio.gather(
            collect(a, SHARED_COUNT, run.wait_s), collect(b, SHARED_COUNT, run.wait_s)
        )
    pa, pb = {_payload(m) for m in got_a}, {_payload(m) for m in got_b}
    both = len(pa & pb)
    total = len(pa | pb)
    measured = f"{SHARED_COUNT} messages: member A got {len(pa)}, B got {len(pb)}, {both} to both"
    if announced is not None:
        measured += f"; CONNACK shared subscriptions available: {announced}"
    if total == SHARED_COUNT and both == 0:
        return Finding("shared_subscriptions", title, Verdict.OK, measured, edged, False)
    verdict = Verdict.LIMITED if total else Verdict.MISSING
    return Finding("shared_subscriptions", title, verdict, measured, edged, False)


def _sized(size: int) -> Callable[[aiomqtt.Message], bool]:
    return lambda message: len(_payload(message)) == size


def _has(props: Any, name: str) -> bool:
    return props is not None and hasattr(props, name)


# -- 9. maximum packet size ---------------------------------------------------------------------


async def packet_size(run: Run) -> Finding:
    title = "max packet size"
    announced = run.connack.MaximumPacketSize if _has(run.connack, "MaximumPacketSize") else None
    topic = run.topic("big")
    carried: list[int] = []
    refused_at: str | None = None
    async with run.client("big-sub") as sub:
        await sub.subscribe(topic, qos=1)
        for size in (COMMAND_MAX, LISTS_MAX):
            body = bytes(size)
            try:
                async with run.client(f"big-pub-{size}") as pub:
                    await pub.publish(topic, body, qos=1, timeout=run.wait_s + 5)
            except (aiomqtt.MqttError, BrokerUnreachableError, ValueError) as exc:
                refused_at = f"{size} bytes not sent ({exc})"
                break
            got = await first(sub, _sized(size), run.wait_s + 2)
            if got is None:
                refused_at = f"{size} bytes did not arrive"
                break
            carried.append(size)
    limit = f"; CONNACK maximum packet size {announced}" if announced is not None else ""
    largest = f"largest carried {max(carried)} bytes" if carried else "nothing carried"
    measured = f"{largest}{'; ' + refused_at if refused_at else ''}{limit}"
    if LISTS_MAX in carried:
        return Finding(
            "max_packet_size",
            title,
            Verdict.OK,
            measured,
            "commands (64 KiB) and full access lists (4 MB) pass",
            True,
        )
    if COMMAND_MAX in carried:
        return Finding(
            "max_packet_size",
            title,
            Verdict.LIMITED,
            measured,
            "commands pass, a full access list does not: send lists as deltas "
            "(`edgectl lists`), or raise the broker's limit",
            True,
        )
    return Finding(
        "max_packet_size",
        title,
        Verdict.MISSING,
        measured,
        "commands up to 64 KiB may be dropped: raise the broker's message size limit",
        True,
    )


# -- 10. receive maximum vs the node's window ---------------------------------------------------


async def receive_maximum(run: Run) -> Finding:
    title = "receive maximum vs the node's window"
    announced = run.connack.ReceiveMaximum if _has(run.connack, "ReceiveMaximum") else None
    topic = run.topic("window")
    started = time.monotonic()
    async with run.client("window-pub", timeout=run.wait_s + 5) as pub:
        pub.pending_calls_threshold = run.window + 16
        results = await asyncio.gather(
            *(pub.publish(topic, b"w", qos=1) for _ in range(run.window)), return_exceptions=True
        )
    acked = sum(1 for r in results if not isinstance(r, BaseException))
    ms = (time.monotonic() - started) * 1000
    measured = f"{acked} of {run.window} concurrent QoS 1 publishes acknowledged in {ms:.0f} ms"
    if announced is not None:
        measured += f"; CONNACK receive maximum {announced}"
    elif run.version == "5":
        measured += "; receive maximum not announced (65535)"
    if acked < run.window:
        return Finding(
            "receive_maximum",
            title,
            Verdict.MISSING,
            measured,
            "the node's outbox window is not acknowledged: lower [broker] window",
            True,
        )
    allowed = int(announced) if announced is not None else None
    drain = run.window if allowed is None else drain_share(allowed)  # what the node keeps
    if allowed is not None and drain < run.window:
        why = (
            f"the broker's {allowed}, less {RESERVED} left for publishes outside the outbox"
            if drain < allowed
            else f"all the broker's {allowed}: a publish outside the outbox waits for room"
        )
        return Finding(
            "receive_maximum",
            title,
            Verdict.LIMITED,
            measured,
            f"the node keeps at most {drain} outbox publishes in flight instead of "
            f"{run.window} ({why}): set [broker] window = {drain} to match",
            True,
        )
    return Finding(
        "receive_maximum",
        title,
        Verdict.OK,
        measured,
        f"the node keeps {run.window} publishes in flight",
        True,
    )


RESUMPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("TLS 1.3 ticket", {}),
    ("TLS 1.2 ticket", {"max_version": "1.2"}),
    ("TLS 1.2 session id", {"max_version": "1.2", "tickets": False}),
)
"""How a node may resume, as `[broker.tls]` says it (`max_version`, `tickets`)."""


def _resumes(sessions: TlsSessions, host: str, port: int, timeout: float) -> bool | None:
    """Two TLS connections as the uplink makes them (its context, its goodbye): whether the
    second resumed the first's session."""
    resumed: bool | None = None
    for _ in range(2):
        with socket.create_connection((host, port), timeout=timeout) as raw:
            tls = sessions.context().wrap_socket(raw, server_hostname=host)
            tls.settimeout(0.5)
            with contextlib.suppress(TimeoutError, ssl.SSLError, OSError):
                tls.recv(1)  # a TLS 1.3 ticket comes after the handshake: take it in
            resumed = sessions.connected()
            tls.close()
    return resumed


async def tls_resumption(run: Run) -> Finding:
    """After a dead zone a node resumes its TLS session instead of sending its certificate
    again; which ways this broker resumes decides the vehicle's `[broker.tls]` choice."""
    key, title = "tls_resumption", "TLS session resumption"
    cfg = run.login.broker_config("5")
    if cfg.tls is None:
        return Finding(
            key,
            title,
            Verdict.OK,
            "plain MQTT: no TLS handshake to resume",
            "a reconnect is a TCP handshake and a CONNECT",
            False,
        )
    seen: dict[str, bool | None] = {}
    for name, update in RESUMPTIONS:
        tls = cfg.tls.model_copy(update=update)
        sessions = TlsSessions(cfg.model_copy(update={"tls": tls}))
        try:
            seen[name] = await asyncio.to_thread(
                _resumes, sessions, cfg.host, cfg.port, max(run.wait_s, 5.0)
            )
        except (OSError, ssl.SSLError) as exc:
            run.note(f"{name}: {exc}")
            seen[name] = None
    measured = "; ".join(
        f"{name}: {'resumed' if ok else 'not resumed' if ok is False else 'failed'}"
        for name, ok in seen.items()
    )
    if seen["TLS 1.2 session id"]:
        return Finding(
            key,
            title,
            Verdict.OK,
            measured,
            "the vehicle configs' [broker.tls] block (TLS 1.2, tickets = false) resumes a "
            "reconnect without certificates or tickets (~0.4 KB of TLS; docs/budget.md)",
            False,
        )
    if any(seen.values()):
        return Finding(
            key,
            title,
            Verdict.LIMITED,
            measured,
            "no session cache: leave out the vehicle block's `tickets = false` (and keep "
            '`max_version = "1.2"` where a TLS 1.2 ticket resumed): with it every reconnect '
            "would be a full handshake (~2.3 KB)",
            False,
        )
    return Finding(
        key,
        title,
        Verdict.LIMITED,
        measured,
        "every reconnect is a full handshake with certificates (~4 KB on a cellular SIM "
        "after each dead zone): ask for session tickets or a session cache on the broker",
        False,
    )
