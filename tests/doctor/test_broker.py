"""The broker lines against a real Mosquitto: each way of being refused is named distinctly."""

from pathlib import Path

import pytest

from edged.doctor import Check, Status, run_checks
from tests.doctor.conftest import config
from tests.helpers.broker import Mosquitto
from tests.helpers.hostile_broker import hostile_broker


async def broker_lines(cfg: Path, wait_s: float = 3) -> list[Check]:
    report = await run_checks(cfg, wait_s)
    assert report.config_valid, report.checks[0]
    return [c for c in report.checks if c.section == "broker"]


def login(tmp_path: Path, password: str) -> str:
    secret = tmp_path / "mqtt-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return f'username = "test.a"\npassword_file = "{secret}"\n'


def tls(ca: Path, cert_dir: Path | None = None) -> str:
    text = f'[broker.tls]\nca_file = "{ca}"\n'
    if cert_dir is not None:
        text += f'cert_file = "{cert_dir / "test.a.crt"}"\nkey_file = "{cert_dir / "test.a.key"}"\n'
    return text


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_the_right_password_is_accepted_and_the_secret_reported(
    password_broker: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    cfg = config(
        tmp_path,
        password_broker.port,
        protocol=protocol,
        broker=login(tmp_path, "correct horse"),
    )
    report = await run_checks(cfg, 3)
    mqtt = report.checks[-1]
    assert (mqtt.name, mqtt.status) == ("broker: mqtt", Status.OK), mqtt
    assert f"MQTT {protocol} CONNECT accepted as 'test.a'" in mqtt.detail
    secrets = next(c for c in report.checks if c.name == "secrets")
    assert secrets.status is Status.OK
    assert "broker.password_file (600, " in secrets.detail


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_wrong_password_says_check_username_and_password_file(
    password_broker: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    cfg = config(tmp_path, password_broker.port, protocol=protocol, broker=login(tmp_path, "wrong"))
    *before, mqtt = await broker_lines(cfg)
    assert [c.status for c in before] == [Status.OK, Status.OK]  # address, tcp: it is there
    assert mqtt.status is Status.FAIL
    assert "not authorised" in mqtt.detail or "bad username or password" in mqtt.detail
    assert "username/password_file" in mqtt.advice


async def test_tls_with_the_fleet_certificate_is_accepted(
    tls_broker: Mosquitto, pki: Path, tmp_path: Path
) -> None:
    cfg = config(tmp_path, tls_broker.port, broker=tls(pki / "ca.crt", pki))
    lines = await broker_lines(cfg)
    assert [(c.name, c.status) for c in lines] == [
        ("broker: address", Status.OK),
        ("broker: tcp", Status.OK),
        ("broker: client certificate", Status.OK),
        ("broker: tls", Status.OK),
        ("broker: mqtt", Status.OK),
    ], lines
    assert "test.a, valid" in lines[2].detail
    assert "TLSv1." in lines[3].detail and "'localhost' verified" in lines[3].detail


async def test_a_wrong_ca_file_is_a_certificate_verify_failure(
    tls_broker: Mosquitto, pki: Path, tmp_path: Path
) -> None:
    cfg = config(tmp_path, tls_broker.port, broker=tls(pki / "rogue" / "ca.crt", pki))
    last = (await broker_lines(cfg))[-1]
    assert (last.name, last.status) == ("broker: tls", Status.FAIL)
    assert last.detail.startswith("TLS: certificate verify failed")
    assert "check [broker.tls] ca_file" in last.advice


async def test_a_certificate_from_another_ca_is_refused_by_the_broker(
    tls_broker: Mosquitto, pki: Path, tmp_path: Path
) -> None:
    cfg = config(tmp_path, tls_broker.port, broker=tls(pki / "ca.crt", pki / "rogue"))
    last = (await broker_lines(cfg))[-1]
    assert last.status is Status.FAIL
    assert "refused this node's certificate" in last.advice, last


async def test_no_client_certificate_for_a_broker_that_wants_one(
    tls_broker: Mosquitto, pki: Path, tmp_path: Path
) -> None:
    cfg = config(tmp_path, tls_broker.port, broker=tls(pki / "ca.crt"))
    last = (await broker_lines(cfg))[-1]
    assert last.status is Status.FAIL
    assert "cert_file and key_file" in last.advice, last


async def test_tls_configured_against_a_plain_listener(
    broker: Mosquitto, pki: Path, tmp_path: Path
) -> None:
    cfg = config(tmp_path, broker.port, broker=tls(pki / "ca.crt", pki))
    last = (await broker_lines(cfg))[-1]
    assert (last.name, last.status) == ("broker: tls", Status.FAIL)
    assert "does not speak TLS" in last.detail, last
    assert "remove [broker.tls]" in last.advice and "8883" in last.advice


async def test_no_tls_configured_against_a_tls_listener(
    tls_broker: Mosquitto, tmp_path: Path
) -> None:
    cfg = config(tmp_path, tls_broker.port)
    last = (await broker_lines(cfg))[-1]
    assert (last.name, last.status) == ("broker: mqtt", Status.FAIL)
    assert "configure [broker.tls]" in last.advice, last


async def test_a_host_that_does_not_resolve_is_a_dns_failure(tmp_path: Path) -> None:
    cfg = config(tmp_path, 1883, broker='host = "no-such-broker.invalid"')
    # `host` given twice would be a TOML error: write_config sets 127.0.0.1, so replace it
    cfg.write_text(cfg.read_text().replace('host = "127.0.0.1"\n', "", 1))
    (line,) = await broker_lines(cfg, wait_s=2)
    assert line.status is Status.FAIL
    assert line.detail.startswith("DNS:"), line
    assert "[broker] host" in line.advice or "DNS" in line.advice


async def test_a_connack_the_node_cannot_read_fails_naming_what_is_wrong(tmp_path: Path) -> None:
    """A CONNACK with a property paho does not know: the doctor said "CONNECT accepted"
    while the node, whose client cannot read it, never connected."""
    unknown_property = bytes([0x20, 5, 0, 0, 2, 0x7F, 0])
    async with hostile_broker(unknown_property) as broker:
        mqtt = (await broker_lines(config(tmp_path, broker.port)))[-1]
    assert (mqtt.name, mqtt.status) == ("broker: mqtt", Status.FAIL), mqtt
    assert "answered with a malformed CONNACK (unknown property or code 0x7f)" in mqtt.detail


async def test_a_connack_over_the_size_the_node_takes_fails_unread(tmp_path: Path) -> None:
    """A header announcing 256 MB: the doctor waited to read it all (its memory growing with
    what the server sent) until its time ran out, and blamed the port."""
    async with hostile_broker(bytes([0x20, 0xFF, 0xFF, 0xFF, 0x7F])) as broker:
        mqtt = (await broker_lines(config(tmp_path, broker.port), wait_s=2))[-1]
    assert mqtt.status is Status.FAIL, mqtt
    assert "a packet announcing 268435455 bytes, over the 8388608 the node takes" in mqtt.detail
