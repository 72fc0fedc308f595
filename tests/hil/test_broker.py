"""The test broker's start: a port taken by someone else is an error, never a success."""

import socket
from pathlib import Path

import pytest

from hil.broker import Mosquitto, _ephemeral_floor, free_port, listens


def test_a_broker_whose_port_another_process_listens_on_does_not_count_as_started(
    tmp_path: Path,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="Address already in use"):
            Mosquitto(tmp_path, port=port).start()


def test_a_started_broker_is_the_listener_on_its_port(tmp_path: Path) -> None:
    m = Mosquitto(tmp_path).start()
    try:
        assert m.pid is not None and listens(m.pid, m.port)
        assert not listens(m.pid, m.port + 1)
    finally:
        m.stop()


def test_free_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(p < _ephemeral_floor() for p in ports)
