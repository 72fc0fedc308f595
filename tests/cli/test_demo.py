"""`edged demo`: a real process, a real broker, and a summary built from received messages."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import aiomqtt
import pytest

from edged.cli.main import main
from edged.config import load_config
from edged.demo.broker import EmbeddedBroker
from edged.demo.runner import default_config_path, demo_config
from edged.ops.urls import BrokerAddress
from edged.uplink.cancellable import CancellableClient
from tests.helpers.broker import Mosquitto
from tests.helpers.nodes import ROOT

NODE_LINE = re.compile(r"^node\s+creuse/shuttle-07 (\S+)", re.MULTILINE)
POSITION_LINE = re.compile(
    r"^position\s+(-?\d+\.\d+), (-?\d+\.\d+) .*\((\d+) received\)$", re.MULTILINE
)


def _demo(*args: str) -> "subprocess.Popen[str]":
    """`edged demo ARGS`; its kiosk on a free port unless ARGS say (8080 may be taken)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kiosk = [] if "--kiosk-port" in args else ["--kiosk-port", "0"]
    return subprocess.Popen(
        [sys.executable, "-m", "edged", "demo", *kiosk, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def _finish(proc: "subprocess.Popen[str]", timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def test_demo_with_its_embedded_broker_shows_the_node_online_with_a_position() -> None:
    started = time.monotonic()
    code, out, err = _finish(_demo("--duration", "6"), timeout=30)
    assert code == 0, err
    assert time.monotonic() - started < 20
    node = NODE_LINE.search(out)
    assert node is not None, out
    assert node.group(1) == "online", out
    position = POSITION_LINE.search(out)
    assert position is not None, out
    assert int(position.group(3)) >= 1
    assert 45 < float(position.group(1)) < 47  # Creuse, where the route runs
    assert "(embedded amqtt, MQTT 3.1.1)" in out
    assert "Traceback" not in err
    assert "DeprecationWarning" not in err


def test_demo_against_an_external_broker_shows_the_node_online(broker: Mosquitto) -> None:
    code, out, err = _finish(_demo("--broker", broker.url, "--duration", "3"), timeout=30)
    assert code == 0, err
    node = NODE_LINE.search(out)
    assert node is not None, out
    assert node.group(1) == "online", out
    assert f"{broker.url} (external, MQTT 5)" in out


def test_demo_stops_cleanly_on_sigterm_and_the_node_says_offline() -> None:
    proc = _demo()
    connected = threading.Event()
    lines: list[str] = []

    def read_stderr() -> None:  # the node logs its connection: then it is worth stopping
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "connected to" in line:
                connected.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert connected.wait(15), "".join(lines)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert proc.stdout is not None
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    assert proc.returncode == 0, "".join(lines)
    assert "shutdown  node said offline" in out


def test_demo_with_a_bad_broker_url_exits_2_and_says_what_to_type() -> None:
    code, _, err = _finish(
        _demo("--broker", "http://localhost:1883", "--duration", "1"), timeout=30
    )
    assert code == 2
    assert "mqtt://host:port" in err


def test_demo_config_points_the_node_at_the_demo_broker_and_a_temporary_outbox(
    tmp_path: Path,
) -> None:
    path = default_config_path()
    config = demo_config(
        load_config(path),
        address=BrokerAddress("127.0.0.1", 4242),
        protocol="3.1.1",
        outbox_dir=tmp_path,
        speed=50,
        base_dir=path.parent,
    )
    assert (config.broker.host, config.broker.port, config.broker.protocol) == (
        "127.0.0.1",
        4242,
        "3.1.1",
    )
    assert config.outbox.path == tmp_path / "outbox.sqlite"
    assert config.health.interval_s <= 5
    gps = [d for d in config.drivers if d.driver == "gps.sim"]
    assert gps
    assert all(d.options["speed_factor"] == 50 for d in gps)


def test_demo_with_kiosk_port_0_prints_the_url_it_got_and_the_page_answers_there() -> None:
    proc = _demo("--kiosk-port", "0", "--duration", "5")
    try:
        assert proc.stdout is not None
        announced = None
        deadline = time.monotonic() + 20
        while announced is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            announced = re.match(r"edged demo: kiosk screen at (http://127\.0\.0\.1:(\d+)/)$", line)
        assert announced is not None, "the demo never said where its kiosk is"
        assert int(announced.group(2)) != 0
        with urllib.request.urlopen(announced.group(1), timeout=5) as page:
            assert page.status == 200
            assert "text/html" in page.headers["Content-Type"]
        code, out, err = _finish(proc, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 0, err
    assert f"kiosk     {announced.group(1)}" in out.splitlines()


def test_demo_with_its_kiosk_port_taken_exits_2_with_one_error_naming_port_and_option() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = _finish(_demo("--kiosk-port", str(port), "--duration", "3"), timeout=30)
    assert code == 2
    errors = [line for line in err.splitlines() if "kiosk" in line]
    assert len(errors) == 1, err
    assert f"127.0.0.1:{port} (Address already in use)" in errors[0]
    assert "--kiosk-port PORT" in errors[0]
    assert "kiosk" not in out
    assert "Traceback" not in err


def test_demo_refuses_a_kiosk_port_that_is_no_tcp_port(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("70000", "-1", "http"):
        with pytest.raises(SystemExit) as exit_:
            main(["demo", "--kiosk-port", bad])
        assert exit_.value.code == 2
        assert f"--kiosk-port: '{bad}' is not a TCP port" in capsys.readouterr().err


def test_demo_config_puts_the_kiosk_on_the_port_asked_for(tmp_path: Path) -> None:
    path = default_config_path()
    config = load_config(path)
    for port in (0, 18080):
        demo = demo_config(
            config,
            address=BrokerAddress("127.0.0.1", 4242),
            protocol="3.1.1",
            outbox_dir=tmp_path,
            speed=20,
            base_dir=path.parent,
            kiosk_port=port,
        )
        assert demo.services.kiosk.port == port
        assert demo.services.kiosk.host == config.services.kiosk.host


async def test_embedded_broker_delivers_retained_messages_over_mqtt_3_1_1() -> None:
    async with EmbeddedBroker() as broker:
        address = broker.address
        async with CancellableClient(
            address.host, address.port, identifier="pub", protocol=aiomqtt.ProtocolVersion.V311
        ) as client:
            await client.publish("t/state", b'{"state": "online"}', qos=1, retain=True)
        async with CancellableClient(
            address.host, address.port, identifier="sub", protocol=aiomqtt.ProtocolVersion.V311
        ) as client:
            await client.subscribe("t/#", qos=1)
            async with asyncio.timeout(5):
                message = await anext(aiter(client.messages))
    assert message.payload == b'{"state": "online"}'
    assert message.retain
