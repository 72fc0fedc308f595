"""A cancel that comes with an answer is not lost, by any client of the node, its tools or
its test rigs (a lost one hung a node at SIGTERM and a CI run for 180 s at a teardown); a
connection attempt that fails leaves no socket open, and a session the broker closed no
error unread."""

import ast
import asyncio
import gc
import json
import os
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from core.threads import DaemonThreadExecutor
from edged.ops.client import ToolClient
from edged.uplink.cancellable import CancellableClient
from edged.uplink.mqtt import MqttClient
from edged.uplink.tls import ResumingContext
from tests.helpers.broker import Mosquitto
from tests.helpers.drivers import wait_until
from tests.helpers.netns import ipv6_off, python_in
from tests.helpers.nodes import ROOT
from tests.helpers.pki import Pki
from tests.helpers.silent import silent_server, unanswered_port

FAULT_HERE = sys.version_info < (3, 12)  # CPython gh-86296: aiomqtt's own client loses it


def _client(kind: type[aiomqtt.Client], port: int, name: str) -> aiomqtt.Client:
    if kind is ToolClient:
        return ToolClient("127.0.0.1", port, identifier=name, version="5")
    return kind("127.0.0.1", port, identifier=name)


CLIENTS = [CancellableClient, MqttClient, ToolClient]


async def _cancelled_with_the_answer(client: aiomqtt.Client) -> bool:
    """Whether a wait of `client`'s, cancelled in the same turn of the loop as its answer
    came, ends cancelled."""
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(client._wait_for(answer, 5.0))
    await asyncio.sleep(0)  # it waits
    answer.set_result("PUBACK")
    waiting.cancel()
    try:
        await waiting
    except asyncio.CancelledError:
        return True
    return False


async def _publish_cancelled_at_its_puback(client: aiomqtt.Client) -> bool:
    """Publish at QoS 1 and cancel the publish when its PUBACK is read, in that same turn
    of the loop (as a SIGTERM read with it is); whether the publish ends cancelled."""
    publishing: asyncio.Task[None] | None = None
    on_publish = client._client.on_publish

    def acknowledged(*args: Any) -> None:
        on_publish(*args)
        assert publishing is not None
        publishing.cancel()

    client._client.on_publish = acknowledged
    publishing = asyncio.create_task(client.publish("edged/test/cancel", b"1", qos=1))
    try:
        await asyncio.wait_for(asyncio.shield(publishing), 10)
    except asyncio.CancelledError:
        return True
    return False


@pytest.mark.skipif(not FAULT_HERE, reason="Python 3.12's wait_for keeps the cancel")
async def test_aiomqtts_own_client_loses_such_a_cancel_on_this_python(broker: Mosquitto) -> None:
    """The fault the class mends is real here (else the tests below prove nothing)."""
    assert not await _cancelled_with_the_answer(aiomqtt.Client("127.0.0.1", 1))
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="plain") as plain:
        assert not await _publish_cancelled_at_its_puback(plain)


@pytest.mark.parametrize("kind", CLIENTS, ids=lambda k: k.__name__)
async def test_a_wait_cancelled_as_its_answer_comes_ends_cancelled(
    kind: type[aiomqtt.Client],
) -> None:
    assert await _cancelled_with_the_answer(_client(kind, 1, "w"))


@pytest.mark.parametrize("kind", CLIENTS, ids=lambda k: k.__name__)
async def test_a_publish_cancelled_as_its_puback_comes_ends_cancelled(
    kind: type[aiomqtt.Client], broker: Mosquitto
) -> None:
    async with _client(kind, broker.port, "n1") as client:
        assert await _publish_cancelled_at_its_puback(client)


V311 = aiomqtt.ProtocolVersion.V311


@pytest.mark.parametrize("protocol", [V311, aiomqtt.ProtocolVersion.V5], ids=["3.1.1", "5"])
async def test_a_session_the_broker_closed_while_nobody_read_leaves_no_error_unretrieved(
    broker: Mosquitto, protocol: aiomqtt.ProtocolVersion
) -> None:
    """The broker closes the session (another client takes the node's id over) while
    nothing reads the client's messages, as when the uplink's reader was cancelled first:
    its end, an error, was never read, and collected said "Future exception was never
    retrieved: MqttCodeError('Unexpected disconnection')" at the end of test processes."""
    said: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: said.append(context["message"]))
    try:
        async with (
            MqttClient("127.0.0.1", broker.port, identifier="n1", protocol=protocol) as c,
            MqttClient("127.0.0.1", broker.port, identifier="n1", protocol=protocol),  # takes over
        ):
            await wait_until(c._disconnected.done, 5, "the first session closed")
        del c
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert said == []


async def test_a_connection_attempt_cancelled_before_its_connack_closes_its_socket() -> None:
    """The node stopping while a broker that took the TCP connection says nothing: the
    socket stayed open (paho kept it alive) until `keepalive_s` or the process's end."""
    async with silent_server() as server:
        client = MqttClient("127.0.0.1", server.port, identifier="n1", protocol=V311)
        attempt = asyncio.create_task(client.__aenter__())
        await wait_until(lambda: server.accepted == 1, 5, "the connection taken")
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await wait_until(lambda: server.open == 0, 1, "the connection closed")


async def test_a_connection_attempt_without_a_connack_in_time_closes_its_socket() -> None:
    """Each attempt at a mute front left one more socket open for `keepalive_s`."""
    async with silent_server() as server:
        client = MqttClient("127.0.0.1", server.port, identifier="n1", protocol=V311, timeout=0.2)
        with pytest.raises(aiomqtt.MqttError, match="timed out"):
            await client.__aenter__()
        await wait_until(lambda: server.open == 0, 1, "the connection closed")
        assert server.accepted == 1


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_tls_handshake_that_fails_closes_its_socket_at_once(tmp_path: Path) -> None:
    """A broker whose certificate the node does not trust: paho left the failed handshake's
    socket to the collector (a cycle through the error's traceback), and the uplink's TLS
    context kept it until the next attempt, after the backoff."""
    theirs, ours = Pki(tmp_path / "theirs"), Pki(tmp_path / "ours")
    crt, key = theirs.issue("broker", "localhost")
    broker = Mosquitto(tmp_path, extra=f"cafile {theirs.ca}\ncertfile {crt}\nkeyfile {key}\n")
    broker.start()
    try:
        context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(str(ours.ca))
        client = MqttClient("127.0.0.1", broker.port, identifier="n1", tls_context=context)
        before = _open_descriptors()
        with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.__aenter__()
        assert context.last is not None and context.last.fileno() == -1
        assert _open_descriptors() == before
    finally:
        broker.stop()


def _open_sockets() -> int:
    return sum(
        os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        for fd in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{fd}")
    )


async def test_an_attempt_cancelled_while_its_syn_goes_unanswered_leaves_no_socket_or_thread() -> None:
    """A dead cellular link, a firewall that drops: the TCP connect ran in aiomqtt's
    thread, which a cancel does not reach, and the stopped node kept that thread and its
    half-open socket for paho's 5 s `connect_timeout` (measured: 4.7 s after the cancel),
    per address of the broker's name. It is made on the loop now, and ends with the cancel."""
    executor = DaemonThreadExecutor()  # the node's: says which calls still run
    asyncio.get_running_loop().set_default_executor(executor)
    with unanswered_port() as port:
        before = _open_sockets()
        client = MqttClient("127.0.0.1", port, identifier="n1", protocol=V311)
        attempt = asyncio.create_task(client.__aenter__())
        await asyncio.sleep(0.3)  # the SYN sent, unanswered
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        assert executor.running() == []
        assert _open_sockets() == before


async def test_a_connect_whose_syn_goes_unanswered_fails_timed_out_its_socket_closed() -> None:
    """paho's `connect_timeout` still bounds a connect, and says so as before."""
    with unanswered_port() as port:
        before = _open_sockets()
        client = MqttClient("127.0.0.1", port, identifier="n1", protocol=V311)
        client._client.connect_timeout = 0.2
        with pytest.raises(aiomqtt.MqttError, match="timed out"):
            await client.__aenter__()
        assert _open_sockets() == before


NEXT_ADDRESS = """
import asyncio, json, socket, time
import aiomqtt
from edged.uplink.mqtt import MqttClient

async def main() -> None:
    first, second = [i[4][0] for i in socket.getaddrinfo("broker", 0, type=socket.SOCK_STREAM)][:2]
    accepted = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), second, 0)
    port = server.sockets[0].getsockname()[1]
    dead = socket.socket()  # the same port on the name's first address: SYNs dropped
    dead.bind((first, port))
    dead.listen(0)
    fillers = [socket.socket() for _ in range(3)]
    for f in fillers:
        f.setblocking(False)
        try:
            f.connect((first, port))
        except BlockingIOError:
            pass
    client = MqttClient("broker", port, identifier="n1", timeout=0.1)
    client._client.connect_timeout = 0.2
    started = time.monotonic()
    try:
        await client.__aenter__()
    except aiomqtt.MqttError:
        pass
    print(json.dumps({"first": first, "accepted": len(accepted), "s": time.monotonic() - started}))

asyncio.run(main())
"""


def test_a_broker_name_whose_first_address_does_not_answer_is_reached_at_the_next() -> None:
    """The connect made on the loop (`_open_tcp`) tries each address of the name in turn,
    `connect_timeout` each, as paho's `socket.create_connection` did: a name whose first
    address is dead (SYNs dropped) reaches the broker at the second."""
    hosts = "127.0.0.1 localhost\n127.0.0.9 broker\n127.0.0.2 broker\n"
    with ipv6_off(hosts) as ns:
        result = json.loads(python_in(ns, NEXT_ADDRESS).stdout)
    assert result["first"] == "127.0.0.9"  # the dead one, tried first
    assert result["accepted"] == 1


async def test_a_refused_connect_says_connection_refused_as_paho_did() -> None:
    """The connect made on the loop failed with asyncio's words, "[Errno 111] Connect call
    failed ('127.0.0.1', 1883)": the health line and edgectl no longer told a broker down
    (refused) from a link down (no route to host); paho's connect said the system's."""
    with socket.socket() as taken:  # a port nobody listens on: bound, never listening
        taken.bind(("127.0.0.1", 0))
        client = MqttClient("127.0.0.1", taken.getsockname()[1], identifier="n1")
        with pytest.raises(aiomqtt.MqttError) as caught:
            await client.__aenter__()
    assert str(caught.value) == "[Errno 111] Connection refused"


class _SlowToConnect(MqttClient):
    """A connect whose thread takes its time before it opens the socket (a slow name
    lookup; over TLS, the handshake is in that thread too)."""

    def _client_connect(self) -> None:
        time.sleep(0.3)
        super()._client_connect()


async def test_an_attempt_cancelled_while_its_socket_opens_closes_it_once_open() -> None:
    """Cancelled while aiomqtt's thread still connects: the socket it opens after is
    closed as soon as it is."""
    async with silent_server() as server:
        client = _SlowToConnect("127.0.0.1", server.port, identifier="n1", protocol=V311)
        attempt = asyncio.create_task(client.__aenter__())
        await asyncio.sleep(0.05)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await wait_until(lambda: server.accepted == 1, 5, "the connection taken")
        await wait_until(lambda: server.open == 0, 1, "the connection closed")


class _ClosesSeen(MqttClient):
    """Says on which thread each of its sockets was closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed_on: list[threading.Thread] = []

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        self.closed_on.append(threading.current_thread())
        super()._on_socket_close(client, userdata, sock)


async def test_a_client_used_again_at_once_after_a_failed_attempt_closes_its_socket_on_the_loop() -> None:
    """aiomqtt's client is reusable: the next attempt's connect thread, started before the
    loop's turn closed the last one's socket, closed it in paho's reconnect (4 times in 10),
    changing the loop's selector from that thread, and the two closes raced."""
    async with silent_server() as server:
        client = _ClosesSeen("127.0.0.1", server.port, identifier="n1", protocol=V311, timeout=0.01)
        for _ in range(20):
            with pytest.raises(aiomqtt.MqttError, match="timed out"):
                await client.__aenter__()
        await wait_until(lambda: server.open == 0, 1, "the connections closed")
    assert client.closed_on == [threading.current_thread()] * 20


async def test_an_attempt_cancelled_as_the_broker_closes_it_raises_nothing_in_a_callback() -> None:
    """A stop while the CONNACK is pending, as the broker closes the connection (both going
    down at once): `asyncio.wait_for` cancels the CONNACK's future before the attempt ends,
    the close read meanwhile found it cancelled, and aiomqtt's `_connected.exception()`
    raised the CancelledError out of paho's callback: "Exception in callback" at the stop."""
    said: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: said.append(context["message"]))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = MqttClient("127.0.0.1", listener.getsockname()[1], identifier="n1", protocol=V311)
        attempt = asyncio.create_task(client.__aenter__())
        try:
            conn, _ = await loop.run_in_executor(None, listener.accept)
            conn.settimeout(5)
            assert await loop.run_in_executor(None, conn.recv, 1024)  # the CONNECT
            await asyncio.sleep(0.05)  # the attempt waits for its CONNACK
            attempt.cancel()
            conn.close()  # in the same turn: read before the attempt ends
            with pytest.raises(asyncio.CancelledError):
                await attempt
            await asyncio.sleep(0.05)
        finally:
            loop.set_exception_handler(None)
    assert said == []


async def test_a_connection_the_broker_ends_with_its_connack_fails_the_attempt() -> None:
    """A DISCONNECT read with the CONNACK (a broker refusing the node after taking it: a
    policy, another client with its id): aiomqtt returned connected, with no socket, the
    end dropped unread ("Future exception was never retrieved"); the uplink said online
    and its reader waited for an end that never came."""
    said: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: said.append(context["message"]))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = MqttClient("127.0.0.1", port, identifier="n1", protocol=aiomqtt.ProtocolVersion.V5)
        attempt = asyncio.create_task(client.__aenter__())
        try:
            conn, _ = await loop.run_in_executor(None, listener.accept)
            with conn:
                conn.settimeout(5)
                assert await loop.run_in_executor(None, conn.recv, 1024)  # the CONNECT
                conn.sendall(b"\x20\x03\x00\x00\x00" + b"\xe0\x02\x8e\x00")  # taken over
                with pytest.raises(aiomqtt.MqttError):
                    await attempt
            assert client.ended is not None and client.ended.code == 0x8E
            del attempt, client
            gc.collect()
            await asyncio.sleep(0)
        finally:
            loop.set_exception_handler(None)
    assert said == []


BARE_CLIENT_ON_PURPOSE = {
    "bench/outbox.py",  # the bare client is the baseline the outbox is measured against
    "tests/edged/uplink/test_cancellable.py",  # shows the fault
    "edged/uplink/cancellable.py",  # the mend
}


def _builds_aiomqtts_own_client(tree: ast.AST) -> list[int]:
    """Lines that call `aiomqtt.Client(...)` or subclass it."""

    def bare(node: ast.expr) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "Client"
                and isinstance(node.value, ast.Name) and node.value.id == "aiomqtt")

    calls = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and bare(n.func)]
    classes = [n.lineno for n in ast.walk(tree)
               if isinstance(n, ast.ClassDef) and any(bare(b) for b in n.bases)]
    return calls + classes


def test_no_node_tool_rig_or_test_builds_aiomqtts_own_client() -> None:
    """A simulator built on it, cancelled at a test's teardown as a PUBACK came in, went on
    publishing: the teardown waited until pytest's 180 s timeout and CI failed."""
    found = []
    for top in ("edged", "hil", "bench", "tests", "core"):
        for path in sorted((ROOT / top).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            text = path.read_text()
            if name in BARE_CLIENT_ON_PURPOSE or "aiomqtt" not in text:
                continue
            found += [f"{name}:{line}" for line in _builds_aiomqtts_own_client(
                ast.parse(text, name))]
    assert found == [], "use edged.uplink.cancellable.CancellableClient"


class _Socks:
    """PySocks' face as paho reads it (the node does not install PySocks, so a proxy
    cannot be made real here): proxy types and a default proxy, none set."""

    SOCKS4, SOCKS5, HTTP = 1, 2, 3  # PySocks' PROXY_TYPE_* values

    @staticmethod
    def get_default_proxy() -> None:
        return None


@pytest.mark.parametrize(
    ("no_proxy", "on_loop"), [("", False), ("broker.example", True)], ids=["proxied", "bypassed"]
)
async def test_the_connect_goes_through_a_proxy_exactly_when_paho_would_take_one(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, on_loop: bool
) -> None:
    """The connect on the loop is for a direct connection only: with an `mqtt_proxy` set
    it is paho's way (through the proxy), unless `no_proxy` names the broker, where paho
    connects directly: the decision is paho's own, not a copy of it that ignored
    `no_proxy` and PySocks' default proxy."""
    import paho.mqtt.client as paho

    monkeypatch.setattr(paho, "socks", _Socks, raising=False)
    monkeypatch.setenv("mqtt_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", no_proxy)
    client = CancellableClient("broker.example", 1883, identifier="proxy-test")
    client._client._host = "broker.example"  # as paho's connect sets it before the socket
    assert client._connects_on_loop() is on_loop
