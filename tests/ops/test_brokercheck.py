"""`edgectl broker-check` against a real Mosquitto, the embedded amqtt broker, and Mosquitto
behind a proxy that reproduces each quirk met in the field (tests/helpers/quirks.py)."""

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.cli.ctl import main
from edged.demo.broker import EmbeddedBroker
from edged.ops.brokercheck import run_checks
from edged.ops.brokercheck.probes import RESUMPTIONS, Run, tls_resumption
from edged.ops.brokercheck.result import Finding, Verdict
from edged.ops.login import Login
from edged.ops.urls import parse_broker_url
from hil.fleetbroker import FleetBroker
from tests.helpers.amqtt import ThreadedAmqtt
from tests.helpers.broker import Mosquitto
from tests.helpers.quirks import QuirkProxy, Quirks

NEEDED = {
    "protocols",
    "will",
    "retained_wildcard",
    "qos1_redelivery",
    "session_expiry",
    "topic_dots",
    "max_packet_size",
    "receive_maximum",
}


def _check(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    code = main(["broker-check", url, "--json", "--wait", "1.5", *extra])
    return code, json.loads(capsys.readouterr().out)


def _by_key(report: dict) -> dict[str, dict]:
    return {f["key"]: f for f in report["findings"]}


@pytest.fixture
def proxy(broker: Mosquitto, request: pytest.FixtureRequest) -> Iterator[QuirkProxy]:
    p = QuirkProxy(broker.port, request.param).start()
    yield p
    p.stop()


def test_mosquitto_has_everything_edged_needs(
    broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _check(broker.url, capsys)
    found = _by_key(report)
    assert code == 0, report
    assert report["ok"] is True and report["protocol"] == "5"
    assert NEEDED | {"response_topic", "shared_subscriptions"} <= set(found)
    for key in NEEDED | {"response_topic", "shared_subscriptions"}:
        assert found[key]["verdict"] == "ok", found[key]
    assert "after a TCP drop" in found["will"]["measured"]


def test_a_receive_maximum_below_the_window_is_limited_with_the_window_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = Mosquitto(tmp_path, extra="max_inflight_messages 8").start()
    try:
        code, report = _check(m.url, capsys, "--window", "32")
    finally:
        m.stop()
    found = _by_key(report)["receive_maximum"]
    assert code == 0
    assert found["verdict"] == "limited"
    assert "receive maximum 8" in found["measured"]
    assert "window = 6" in found["edged"]  # two left for publishes outside the outbox


def test_a_small_receive_maximum_gives_the_window_the_node_keeps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under 5 the node keeps three, or all the broker allows (docs/brokers.md's table:
    3 in flight at `max_inflight_messages 3`), not the broker's less two."""
    m = Mosquitto(tmp_path, extra="max_inflight_messages 3").start()
    try:
        code, report = _check(m.url, capsys, "--window", "32")
    finally:
        m.stop()
    found = _by_key(report)["receive_maximum"]
    assert code == 0 and found["verdict"] == "limited", found
    assert "window = 3" in found["edged"] and "at most 3" in found["edged"], found


def test_a_broker_without_retained_messages_is_limited_as_the_nodes_cope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mosquitto with `retain_available false` refuses a retained will and ends the session
    of a retained publish: the nodes then send everything without the flag (their alarms
    arrive), so the will and retained items are limited, not missing, and say what is lost."""
    m = Mosquitto(tmp_path, extra="retain_available false").start()
    try:
        code, report = _check(m.url, capsys)
    finally:
        m.stop()
    found = _by_key(report)
    assert code == 0, report
    assert found["will"]["verdict"] == "limited", found["will"]
    assert "without retain was delivered" in found["will"]["measured"]
    assert found["retained_wildcard"]["verdict"] == "limited", found["retained_wildcard"]
    assert "no last state" in found["retained_wildcard"]["edged"]
    for key in NEEDED - {"will", "retained_wildcard"}:
        assert found[key]["verdict"] == "ok", found[key]


async def test_amqtt_speaks_311_only_and_loses_offline_messages() -> None:
    async with EmbeddedBroker() as b:
        findings, version = await run_checks(Login(b.address), "rnst/v1", wait_s=1.5)
    found: dict[str, Finding] = {f.key: f for f in findings}
    assert version == "3.1.1"
    assert found["protocols"].verdict is Verdict.LIMITED
    assert "unsupported protocol version" in found["protocols"].measured
    assert found["will"].verdict is Verdict.OK
    assert found["retained_wildcard"].verdict is Verdict.OK
    assert found["response_topic"].verdict is Verdict.MISSING
    assert found["qos1_redelivery"].verdict is Verdict.MISSING  # amqtt 0.12.1, as measured


@pytest.mark.parametrize("proxy", [Quirks(dots_to_slashes=True)], indirect=True)
def test_a_broker_that_rewrites_dots_is_limited_and_says_what_edgectl_sends(
    proxy: QuirkProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _check(proxy.url, capsys)
    dots = _by_key(report)["topic_dots"]
    assert code == 0
    assert dots["verdict"] == "limited"
    assert "dots became slashes" in dots["measured"]
    assert "cmd/a/b" in dots["edged"]


@pytest.mark.parametrize(
    "proxy", [Quirks(refuse_v5="connack"), Quirks(refuse_v5="close")], indirect=True
)
def test_a_broker_refusing_mqtt_5_is_probed_with_311(
    proxy: QuirkProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _check(proxy.url, capsys)
    found = _by_key(report)
    assert code == 0
    assert report["protocol"] == "3.1.1"
    assert found["protocols"]["verdict"] == "limited"
    assert "MQTT 3.1.1: accepted" in found["protocols"]["measured"]
    assert found["response_topic"]["verdict"] == "missing"
    assert set(proxy.connects) == {4, 5}


@pytest.mark.parametrize("proxy", [Quirks(retained_exact_only=True)], indirect=True)
def test_retained_only_to_exact_subscribers_is_limited(
    proxy: QuirkProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _check(proxy.url, capsys)
    retained = _by_key(report)["retained_wildcard"]
    assert code == 0
    assert retained["verdict"] == "limited"
    assert "exact topic" in retained["measured"]


@pytest.mark.parametrize("proxy", [Quirks(connack_refusal=135)], indirect=True)
def test_a_refused_login_exits_4_and_says_not_authorised(
    proxy: QuirkProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["broker-check", proxy.url])
    err = capsys.readouterr().err
    assert code == 4
    assert "not authorised" in err
    assert "--username" in err


def test_an_unreachable_broker_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker-check", "mqtt://127.0.0.1:1"]) == 4
    assert "cannot reach" in capsys.readouterr().err


def test_a_needed_item_missing_exits_1_and_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    amqtt = ThreadedAmqtt().start()
    try:
        code = main(["broker-check", amqtt.url, "--wait", "1.5"])
    finally:
        amqtt.stop()
    out = capsys.readouterr().out
    assert code == 1
    assert "lacks what edged needs: QoS 1 redelivery across a reconnect" in out


async def test_the_tls_resumption_probe_finds_mosquittos_session_cache_for_the_vehicle_block() -> (
    None
):
    fleet = FleetBroker([], ["dispatch"]).start()
    try:
        crt, key = fleet.cert("dispatch")
        login = Login(
            parse_broker_url(f"mqtts://localhost:{fleet.ops_port}"),
            cafile=fleet.ca,
            cert=crt,
            key=key,
        )
        found = await tls_resumption(Run(login, "rnst/v1", 1.0, 32))
    finally:
        fleet.stop()
    assert found.verdict is Verdict.OK and not found.needed, found
    assert found.measured == (
        "TLS 1.3 ticket: resumed; TLS 1.2 ticket: resumed; TLS 1.2 session id: resumed"
    )


async def test_the_tls_resumption_probe_on_plain_mqtt_has_nothing_to_resume(
    broker: Mosquitto,
) -> None:
    found = await tls_resumption(Run(Login(parse_broker_url(broker.url)), "rnst/v1", 1.0, 32))
    assert found.verdict is Verdict.OK and "no TLS" in found.measured


async def test_a_broker_that_resumes_nothing_is_limited_and_says_each_reconnect_is_full(
    tmp_path: Path,
) -> None:
    """Brokers behind a balancer sharing no TLS state: each connection a new context."""
    fleet = FleetBroker([], ["dispatch"], workdir=tmp_path)  # the material only
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(len(RESUMPTIONS) * 2):
            conn, _ = listener.accept()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(fleet.dir / "broker.crt", fleet.dir / "broker.key")
            with conn, contextlib.suppress(OSError, ssl.SSLError):
                tls = context.wrap_socket(conn, server_side=True)
                tls.recv(1)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    crt, key = fleet.cert("dispatch")
    login = Login(
        parse_broker_url(f"mqtts://localhost:{port}"), cafile=fleet.ca, cert=crt, key=key
    )
    found = await tls_resumption(Run(login, "rnst/v1", 1.0, 32))
    server.join(10)
    listener.close()
    assert found.verdict is Verdict.LIMITED, found
    assert found.measured.count("not resumed") == 3, found.measured
    assert "every reconnect is a full handshake" in found.edged
