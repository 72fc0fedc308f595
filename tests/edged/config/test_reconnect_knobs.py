"""The reconnect's knobs in `[broker]` and `[broker.tls]` (#20): each refused with a reason
when it cannot work, never passed silently."""

import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from edged.config import parse_config
from edged.config.models import BrokerConfig
from edged.uplink.tls import tls_context
from tests.helpers.fileserver import fleet_ca

MINIMAL = """
[node]
fleet = "creuse"
id = "bus-1"
profile = "shuttle"
"""


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fleet_ca(tmp_path_factory.mktemp("fleet")) / "ca.crt"


def config(ca: Path, broker: str = "", tls: str = "") -> str:
    return f'{MINIMAL}\n[broker]\n{broker}\n[broker.tls]\nca_file = "{ca}"\n{tls}\n'


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="t.toml")
    return info.value.problems


def test_the_defaults_keep_the_former_handshake_and_a_birth_at_every_connection(
    ca: Path,
) -> None:
    cfg = parse_config(config(ca), source="t.toml").broker
    assert cfg.will_delay_s == 0
    assert cfg.tls is not None
    assert (cfg.tls.min_version, cfg.tls.middlebox_compat, cfg.tls.ciphers) == ("1.2", True, None)


def test_a_tls13_floor_above_a_tls12_ceiling_is_refused(ca: Path) -> None:
    found = problems(config(ca, tls='min_version = "1.3"\nmax_version = "1.2"'))
    assert any("no TLS version left" in p for p in found), found


@pytest.mark.parametrize(
    "ciphers",
    ["NOT-A-CIPHER", "", "TLS_AES_128_GCM_SHA256", "eNULL", "ECDHE+CHACHA20\x00x", "ALL", "RSA"],
)
def test_a_cipher_list_openssl_cannot_use_for_tls12_is_refused_naming_the_fix(
    ca: Path, ciphers: str
) -> None:
    escaped = ciphers.replace("\x00", "\\u0000")
    found = problems(config(ca, tls=f'ciphers = "{escaped}"'))
    assert any(
        "ciphers" in p and ("openssl ciphers" in p or "no TLS 1.2" in p or "only ECDHE" in p)
        for p in found
    ), found


def test_a_cipher_list_longer_than_any_real_one_is_refused(ca: Path) -> None:
    found = problems(config(ca, tls=f'ciphers = "{"ECDHE+CHACHA20:" * 200}"'))
    assert any("ciphers" in p for p in found), found


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_any_cipher_text_is_accepted_or_refused_never_a_crash(ca: Path, text: str) -> None:
    escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    try:
        cfg = parse_config(config(ca, tls=f'ciphers = "{escaped}"'), source="t.toml").broker
    except ConfigError:
        return
    assert cfg.tls is not None and cfg.tls.ciphers is not None
    tls_context(cfg)  # what was accepted, the uplink can use


def test_ciphers_with_a_tls13_floor_is_refused_as_having_no_effect(ca: Path) -> None:
    found = problems(config(ca, tls='min_version = "1.3"\nciphers = "ECDHE+CHACHA20"'))
    assert any("leaves TLS 1.2 out" in p for p in found), found


def test_the_lean_and_chacha_knobs_reach_the_tls_context(ca: Path) -> None:
    lean = parse_config(
        config(ca, tls='min_version = "1.3"\nmiddlebox_compat = false'), source="t.toml"
    ).broker
    context = tls_context(lean)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert not context.options & ssl.OP_ENABLE_MIDDLEBOX_COMPAT
    chacha = parse_config(
        config(ca, tls='max_version = "1.2"\nciphers = "ECDHE+CHACHA20"'), source="t.toml"
    ).broker
    offered = [c["name"] for c in tls_context(chacha).get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert offered and all("CHACHA20" in name for name in offered), offered
    assert tls_context(chacha).options & ssl.OP_ENABLE_MIDDLEBOX_COMPAT


@pytest.mark.parametrize("tls", ["tickets = false", 'tickets = false\nmax_version = "1.3"'])
def test_resuming_by_session_id_over_tls13_is_refused_as_never_resuming(
    ca: Path, tls: str
) -> None:
    found = problems(config(ca, tls=tls))
    assert any('Set max_version = "1.2" too' in p for p in found), found


def test_resuming_by_session_id_without_resuming_is_refused(ca: Path) -> None:
    found = problems(config(ca, tls='tickets = false\nresume = false\nmax_version = "1.2"'))
    assert any("resume = false never does" in p for p in found), found


def test_tickets_off_reaches_the_tls_context_and_tickets_stay_on_by_default(ca: Path) -> None:
    by_id = parse_config(
        config(ca, tls='tickets = false\nmax_version = "1.2"'), source="t.toml"
    ).broker
    assert tls_context(by_id).options & ssl.OP_NO_TICKET
    assert tls_context(by_id).maximum_version == ssl.TLSVersion.TLSv1_2
    default = parse_config(config(ca), source="t.toml").broker
    assert not tls_context(default).options & ssl.OP_NO_TICKET


def test_a_will_delay_longer_than_the_session_is_refused(ca: Path) -> None:
    found = problems(config(ca, broker="session_expiry_s = 60\nwill_delay_s = 61"))
    assert any("will_delay_s (61) is longer than session_expiry_s (60)" in p for p in found)
    found = problems(config(ca, broker="session_expiry_s = 0\nwill_delay_s = 10"))
    assert found


@pytest.mark.parametrize("bad", ["-1", "4294967296", '"a minute"', "1.5"])
def test_a_will_delay_outside_mqtt_range_is_refused(ca: Path, bad: str) -> None:
    assert problems(config(ca, broker=f"will_delay_s = {bad}"))


def test_a_will_delay_within_the_session_is_accepted() -> None:
    assert BrokerConfig(will_delay_s=300).will_delay_s == 300


@pytest.mark.parametrize("name", ["shuttle", "truck"])
def test_the_shipped_vehicle_tls_block_uncommented_resumes_tls12_by_session_id(
    ca: Path, name: str
) -> None:
    """What an operator gets by uncommenting the vehicle config's `[broker.tls]` block."""
    shipped = Path(__file__).resolve().parents[3] / "config" / f"{name}.toml"
    text = shipped.read_text()
    lines = text.splitlines()
    start = lines.index("# [broker.tls]")
    end = start + 1
    while lines[end].startswith("# ") and " = " in lines[end]:
        end += 1
    block = [line[2:] for line in lines[start:end]]
    block = [f'ca_file = "{ca}"' if b.startswith("ca_file") else b for b in block]
    block = [b for b in block if not b.startswith(("cert_file", "key_file"))]
    body = "\n".join(lines[:start] + block + lines[end:])
    cfg = parse_config(body, source=f"{name}.toml", base_dir=shipped.parent).broker
    assert cfg.tls is not None and not cfg.tls.tickets
    context = tls_context(cfg)
    assert context.options & ssl.OP_NO_TICKET
    assert context.maximum_version == ssl.TLSVersion.TLSv1_2
    offered = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert offered and all("CHACHA20" in c for c in offered), offered


@pytest.mark.parametrize(
    "line",
    [
        "protocol_retry_s = 0",
        "protocol_retry_s = -600",
        "protocol_retry_s = nan",
        "protocol_retry_s = inf",
        "protocol_retry_s = true",
        "protocol_retry_s = 86401",
        "protocol_retry_max_s = 0",
        "protocol_retry_max_s = 604801",
        "protocol_retry_s = 700\nprotocol_retry_max_s = 600",
    ],
    ids=["zero", "negative", "nan", "inf", "bool", "over-a-day", "max-zero",
         "max-over-a-week", "max-under-the-first"],
)  # fmt: skip
def test_an_mqtt5_retry_wait_that_cannot_work_is_refused(ca: Path, line: str) -> None:
    """The waits of the MQTT 5 retry after a fallback (`protocol_retry_s`, doubled up to
    `protocol_retry_max_s`): each refused with the field named, never taken silently."""
    found = problems(config(ca, broker=line))
    assert any("protocol_retry" in p for p in found), found


def test_the_mqtt5_retry_waits_default_to_ten_minutes_doubling_to_four_hours(ca: Path) -> None:
    cfg = parse_config(config(ca), source="t.toml").broker
    assert (cfg.protocol_retry_s, cfg.protocol_retry_max_s) == (600, 14400)
    cfg = parse_config(
        config(ca, broker="protocol_retry_s = 60\nprotocol_retry_max_s = 60"), source="t.toml"
    ).broker
    assert (cfg.protocol_retry_s, cfg.protocol_retry_max_s) == (60, 60)
