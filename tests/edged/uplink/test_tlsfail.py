"""Why TLS failed, said from the errors real handshakes raise (in memory, both ends
Python's `ssl`), not from hand-made exceptions."""

import socket
import ssl
from datetime import timedelta
from pathlib import Path

import aiomqtt
import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given
from hypothesis import strategies as st

from edged.uplink import tlsfail
from edged.uplink.mqtt import TlsEnded
from tests.helpers.broker import Mosquitto
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


def refused_by_mosquitto(
    tmp_path: Path,
    pki: Pki,
    cert: tuple[Path, Path] | None,
    version: ssl.TLSVersion,
    broker_extra: str = "",
) -> ssl.SSLError:
    """The error the node's side gets from a real Mosquitto (Debian 12's OpenSSL 3) that
    wants a client certificate of `pki`'s CA, offered `cert` over TLS `version`: the alert in
    the TLS 1.2 handshake, or at the first read after a TLS 1.3 one. Nothing is written
    first: with a CONNECT already sent, Mosquitto's close often lost the alert (measured
    124 of 200 tries here ended in a bare EOF; with nothing written, 0 of 500), and 30 tries
    in a row lost it once in CI."""
    crt, key = pki.issue("broker", "localhost")
    extra = (
        f"allow_anonymous false\ncafile {pki.ca}\ncertfile {crt}\nkeyfile {key}\n"
        f"require_certificate true\nuse_identity_as_username true\n{broker_extra}"
    )
    broker = Mosquitto(tmp_path, extra=extra).start()
    try:
        for _ in range(30):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(pki.ca)
            ctx.minimum_version = ctx.maximum_version = version
            if cert is not None:
                ctx.load_cert_chain(*cert)
            with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw:
                try:
                    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                        tls.recv(16)
                except ssl.SSLError as exc:
                    if not isinstance(exc, tlsfail.NOT_A_REFUSAL):
                        return exc
                except OSError:
                    pass  # the alert lost to a reset: again
        raise AssertionError("the broker never sent its alert")
    finally:
        broker.stop()


VERSIONS = pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)


@VERSIONS
def test_a_node_certificate_not_yet_valid_by_its_own_clock_is_named_not_the_ca(
    tmp_path: Path, pki: Pki, version: ssl.TLSVersion
) -> None:
    """OpenSSL answers a client certificate not yet valid with `bad_certificate`: the node
    said its certificate was from a CA the broker does not trust."""
    crt, key = pki.issue("node", "test.a", starts=2 * DAY)
    err = refused_by_mosquitto(tmp_path, pki, (crt, key), version)
    text = tlsfail.explain(err, host="localhost", port=8883, ca_file=pki.ca, cert_file=crt)
    assert f"{crt} is not valid before" in text and "cafile" not in text, text


@VERSIONS
def test_a_missing_node_certificate_is_named_over_either_tls_version(
    tmp_path: Path, pki: Pki, version: ssl.TLSVersion
) -> None:
    """Over TLS 1.2 OpenSSL says only `handshake_failure` (TLS 1.3: certificate_required):
    the node said to read the broker's log."""
    err = refused_by_mosquitto(tmp_path, pki, None, version)
    text = tlsfail.explain(err, host="localhost", port=8883, ca_file=pki.ca, cert_file=None)
    assert "the broker wants a client certificate" in text, text
    assert tlsfail.kind(err) in ("no_cert", "other")


@VERSIONS
def test_a_server_certificate_used_as_the_nodes_is_named(
    tmp_path: Path, pki: Pki, version: ssl.TLSVersion
) -> None:
    """A certificate without TLS client authentication in its extended key usage: OpenSSL
    says `unsupported_certificate`, for which the node had no advice."""
    crt, key = pki.issue("node", "test.a", usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    err = refused_by_mosquitto(tmp_path, pki, (crt, key), version)
    text = tlsfail.explain(err, host="localhost", port=8883, ca_file=pki.ca, cert_file=crt)
    assert "TLS client authentication" in text, text


@VERSIONS
def test_an_expired_crl_on_the_broker_is_among_the_causes_of_an_expired_alert(
    tmp_path: Path, pki: Pki, version: ssl.TLSVersion
) -> None:
    """OpenSSL says `certificate_expired` of a valid certificate when the broker's CRL is
    past its next update: the node blamed only the clocks."""
    crt, key = pki.issue("node", "test.a")
    crl = pki.crl(next_update=-DAY)
    err = refused_by_mosquitto(tmp_path, pki, (crt, key), version, f"crlfile {crl}\n")
    text = tlsfail.explain(err, host="localhost", port=8883, ca_file=pki.ca, cert_file=crt)
    assert tlsfail.kind(err) == "expired" and "crlfile" in text, text


@VERSIONS
@pytest.mark.parametrize(
    ("case", "says", "key"),
    [
        ("expired", "expired on", "expired"),
        ("revoked", "is revoked", "revoked"),
        ("rogue", "must be issued by the CA the broker trusts", "refused_cert"),
    ],
)
def test_each_refusal_of_the_nodes_certificate_is_named_from_its_alert(
    tmp_path: Path, pki: Pki, version: ssl.TLSVersion, case: str, says: str, key: str
) -> None:
    extra = ""
    if case == "expired":
        cert = pki.issue("node", "test.a", starts=-400 * DAY, ends=-2 * DAY)
    elif case == "revoked":
        cert = pki.issue("node", "test.a")
        extra = f"crlfile {pki.crl(revoked=(cert[0],))}\n"
    else:
        cert = Pki(tmp_path / "rogue", ca_name="rogue").issue("node", "test.a")
    err = refused_by_mosquitto(tmp_path, pki, cert, version, extra)
    text = tlsfail.explain(err, host="localhost", port=8883, ca_file=pki.ca, cert_file=cert[0])
    assert says in text and tlsfail.kind(err) == key, text


def test_an_alert_is_read_from_the_reason_field_not_from_the_message() -> None:
    """The reason names the alert; a message that only mentions one is not an alert."""
    said = ssl.SSLError(1, "[SSL] mentions SSLV3_ALERT_CERTIFICATE_EXPIRED in passing")
    assert tlsfail.alert_of(said) == "" and tlsfail.kind(said) == "other"
