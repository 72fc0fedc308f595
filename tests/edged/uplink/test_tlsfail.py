"""Why TLS failed, said from the errors real handshakes raise (in memory, both ends
Python's `ssl`), not from hand-made exceptions."""

import ssl
from datetime import timedelta
from pathlib import Path

import aiomqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.uplink import tlsfail
from edged.uplink.mqtt import TlsEnded
from tests.helpers.pki import DAY, Pki


def handshake(server: tuple[Path, Path], ca: Path, host: str = "localhost") -> ssl.SSLError:
    """The error a client trusting `ca` gets from a server presenting `server`."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(*server)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(ca)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = cctx.wrap_bio(c_in, c_out, server_hostname=host)
    srv = sctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for end, out, into in ((client, c_out, s_in), (srv, s_out, c_in)):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                if end is client:
                    return exc
            into.write(out.read())
    raise AssertionError("the handshake did not fail")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def verify_error(pki: Pki, starts: timedelta = -DAY, ends: timedelta = 400 * DAY) -> ssl.SSLError:
    return handshake(pki.issue("broker", "localhost", starts=starts, ends=ends), pki.ca)


def test_a_broker_certificate_not_yet_valid_is_a_clock_question(pki: Pki) -> None:
    err = verify_error(pki, starts=2 * DAY)
    assert isinstance(err, ssl.SSLCertVerificationError)
    assert tlsfail.kind(err) == "clock"


@pytest.mark.parametrize(
    ("right", "says"),
    [
        (False, "this node's clock is wrong"),
        (True, "renew it on the broker"),
        (None, "check this node's clock first"),
    ],
)
def test_an_expired_broker_certificate_blames_what_the_clocks_say(
    pki: Pki, right: bool | None, says: str
) -> None:
    err = verify_error(pki, starts=-400 * DAY, ends=-DAY)
    text = tlsfail.explain(
        err, host="localhost", port=8883, ca_file=pki.ca, cert_file=None, clock_right=right
    )
    assert "certificate has expired" in text and says in text, text


def test_a_certificate_for_another_host_says_set_the_host(pki: Pki) -> None:
    err = handshake(pki.issue("broker", "localhost"), pki.ca, host="broker.example")
    text = tlsfail.explain(err, host="broker.example", port=8883, ca_file=pki.ca, cert_file=None)
    assert tlsfail.kind(err) == "hostname"
    assert "not issued for 'broker.example'" in text, text


def test_a_broker_certificate_from_another_ca_names_the_ca_file(pki: Pki, tmp_path: Path) -> None:
    rogue = Pki(tmp_path / "rogue", ca_name="rogue")
    err = handshake(rogue.issue("broker", "localhost"), pki.ca)
    text = tlsfail.explain(err, host="localhost", port=8883, ca_file=pki.ca, cert_file=None)
    assert tlsfail.kind(err) == "untrusted"
    assert str(pki.ca) in text, text


def test_the_tls_error_is_found_behind_aiomqtts_error(pki: Pki) -> None:
    """aiomqtt raises `MqttError(str(exc)) from None`: the original is the context."""
    err = verify_error(pki, starts=2 * DAY)
    try:
        try:
            raise err
        except OSError as exc:
            raise aiomqtt.MqttError(str(exc)) from None
    except aiomqtt.MqttError as outer:
        assert tlsfail.tls_error(outer) is err
    assert tlsfail.tls_error(TlsEnded(err)) is err
    assert tlsfail.tls_error(aiomqtt.MqttError("Operation timed out")) is None


def test_an_alert_about_an_expired_certificate_reads_the_nodes_certificate(pki: Pki) -> None:
    crt, _ = pki.issue("node", "test.a", starts=-400 * DAY, ends=-2 * DAY)
    advice = tlsfail.alert_advice("SSLV3_ALERT_CERTIFICATE_EXPIRED", crt)
    assert f"{crt} expired on" in advice and "fleet-certs.sh" in advice


def test_an_expired_alert_for_a_valid_certificate_suspects_the_brokers_clock(pki: Pki) -> None:
    crt, _ = pki.issue("node", "test.a")
    advice = tlsfail.alert_advice("SSLV3_ALERT_CERTIFICATE_EXPIRED", crt)
    assert "the broker's clock is wrong" in advice


@pytest.mark.parametrize("content", [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\n"])
def test_an_unreadable_node_certificate_is_said_not_raised(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "node.crt"
    bad.write_bytes(content)
    advice = tlsfail.alert_advice("SSLV3_ALERT_CERTIFICATE_EXPIRED", bad)
    assert f"cannot read {bad}" in advice
    assert "cannot read" in tlsfail.alert_advice("CERTIFICATE_EXPIRED", tmp_path / "missing.crt")


@given(st.text(max_size=300))
def test_any_text_from_the_peer_gets_advice_or_nothing_never_an_error(text: str) -> None:
    """An alert's text comes from the other end of the link: a hostile broker chooses it."""
    assert isinstance(tlsfail.alert_advice(text), str)


@pytest.mark.parametrize(
    "benign",
    [ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed (EOF)"), ssl.SSLEOFError()],
)
def test_a_clean_tls_close_or_a_cut_is_not_a_refusal(benign: ssl.SSLError) -> None:
    """A broker without MQTT 5 that closes cleanly must still lead to the 3.1.1 probe."""
    assert tlsfail.tls_error(benign) is None
    assert tlsfail.tls_error(TlsEnded(benign)) is None
