"""Why a TLS connection to the broker failed, and what to do: one text for the uplink's log
and health, and for `edged doctor`.

A TLS connection fails in one of two ways. The node does not trust the broker's certificate
(`ssl.SSLCertVerificationError` in the handshake: another CA, another host name, or a time
outside its validity), or the broker does not take the node's certificate and sends a TLS
alert (expired, revoked, from a CA it does not trust, missing). Over TLS 1.3 that alert
comes after the handshake, at the node's first read: paho only logs it, and the connection
looks closed without a CONNACK, as if the port or the MQTT version were wrong
(`edged.uplink.readahead` keeps the error for the uplink).

A Raspberry Pi has no battery-backed clock: after a cold boot without network time its
clock can be months behind, and then every certificate looks not yet valid (or, a clock
ahead, expired). The node cannot tell a wrong clock from a wrong certificate, but it knows
whether the kernel's clock is synchronised and what GPS says: the advice names the clock
first when it is not.
"""

import re
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from edged.clock import ENABLE_NTP
from edged.uplink.readahead import NOT_A_REFUSAL

NOT_YET_VALID = 9  # X509_V_ERR_CERT_NOT_YET_VALID
EXPIRED = 10  # X509_V_ERR_CERT_HAS_EXPIRED
HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH
NEW_NODE_CERT = "`fleet-certs.sh DIR node FLEET NODE` on the fleet CA issues a new one"


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc`, then its cause or context, and theirs: aiomqtt re-raises paho's connect errors
    as `MqttError(str(exc)) from None`, which keeps the original as the context."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def tls_error(exc: BaseException | None) -> ssl.SSLError | None:
    """The TLS error behind `exc` (in its chain, or its `tls` attribute: `TlsEnded`); None
    when TLS is not the reason."""
    for one in _chain(exc):
        inner = getattr(one, "tls", one)
        if isinstance(inner, ssl.SSLError) and not isinstance(inner, NOT_A_REFUSAL):
            return inner
    return None


def reset_in_handshake(exc: BaseException | None) -> bool:
    """The connection was reset, not refused: with TLS configured, most often a plain MQTT
    listener that hung up on the ClientHello (a refused port says so at once)."""
    return any(isinstance(e, ConnectionResetError | ssl.SSLEOFError) for e in _chain(exc))


def plain_port_hint(port: int) -> str:
    return (
        f" (with [broker.tls] set: is port {port} the broker's TLS listener, usually 8883? "
        "A plain MQTT listener hangs up on TLS)"
    )


ALERT = re.compile(r"\b(?:SSLV3|TLSV1|TLSV13)_ALERT_([A-Z0-9_]+)\b")
"""OpenSSL's reason for an alert the peer sent: SSL_R_SSLV3_ALERT_*, SSL_R_TLSV1_ALERT_*,
SSL_R_TLSV13_ALERT_* (their names are OpenSSL's, stable since 1.1; the alert's name after
the prefix). An alert the node itself sends has another reason (CERTIFICATE_VERIFY_FAILED,
...), so a match is always the broker's word."""
ADVISED = (
    "CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|CERTIFICATE_REQUIRED|UNKNOWN_CA|BAD_CERTIFICATE|"
    "CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE|HANDSHAKE_FAILURE|PROTOCOL_VERSION"
)
NAMED = re.compile(rf"\b({ADVISED})\b")
"""An alert named without OpenSSL's prefix, in a text (`edged doctor`'s)."""
KINDS = {
    "CERTIFICATE_EXPIRED": "expired",
    "CERTIFICATE_REVOKED": "revoked",
    "CERTIFICATE_REQUIRED": "no_cert",
    "UNKNOWN_CA": "refused_cert",
    "BAD_CERTIFICATE": "refused_cert",
    "CERTIFICATE_UNKNOWN": "refused_cert",
    "UNSUPPORTED_CERTIFICATE": "refused_cert",
}
"""Counter keys of the alerts a broker sends about the node's certificate."""
NOT_TLS_REASONS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}
"""OpenSSL's reasons when the other end does not speak TLS (a plain MQTT port answers the
ClientHello with MQTT bytes)."""


def alert_of(err: ssl.SSLError | str) -> str:
    """The name of the TLS alert the broker sent ("CERTIFICATE_EXPIRED"), from the
    error's `reason` (a string: the reason's name in it, as `edged doctor` has it); "" when
    the error is not a received alert. Not the message's words: OpenSSL's reason is the
    one field that names the alert whatever the version and wherever it arrived (in the
    TLS 1.2 handshake, or at the first read after a TLS 1.3 one)."""
    if isinstance(err, ssl.SSLError):
        found = ALERT.fullmatch(reason_of(err))
        return found.group(1) if found and getattr(err, "library", "SSL") == "SSL" else ""
    found = ALERT.search(err.upper()) or NAMED.search(err.upper())
    return found.group(1) if found else ""


def kind(err: ssl.SSLError) -> str:
    """A short key for counters: clock, hostname, untrusted, expired, revoked, no_cert,
    refused_cert, not_tls or other."""
    if isinstance(err, ssl.SSLCertVerificationError):
        if err.verify_code in (NOT_YET_VALID, EXPIRED):
            return "clock"
        if err.verify_code == HOSTNAME_MISMATCH:
            return "hostname"
        return "untrusted"
    alert = alert_of(err)
    if alert:
        return KINDS.get(alert, "other")
    if reason_of(err) in NOT_TLS_REASONS:
        return "not_tls"
    return "other"


def reason_of(err: ssl.SSLError) -> str:
    """OpenSSL's reason name ("SSLV3_ALERT_CERTIFICATE_EXPIRED"); "" when it gave none."""
    return str(getattr(err, "reason", None) or "")


def alert_advice(
    err: ssl.SSLError | str, cert_file: Path | None = None, *, with_cert: bool | None = None
) -> str:
    """Advice for a TLS alert the broker sent about this node's certificate; "" when the
    error is not one. `with_cert`: whether the node presented one (None: `cert_file` is
    set). What each alert means is OpenSSL's mapping of the broker's verification error
    (`ssl_x509err2alert`): a certificate not yet valid by the broker's clock is
    `bad_certificate`, an expired CRL `certificate_expired`, a certificate without the TLS
    client purpose `unsupported_certificate`; over TLS 1.2 a missing client certificate is
    only `handshake_failure`."""
    alert = alert_of(err)
    if with_cert is None:
        with_cert = cert_file is not None
    if alert == "CERTIFICATE_REQUIRED" or (alert == "HANDSHAKE_FAILURE" and not with_cert):
        return (
            "the broker wants a client certificate: set [broker.tls] cert_file and key_file "
            f"({NEW_NODE_CERT})"
            + ("" if alert == "CERTIFICATE_REQUIRED" else " (TLS 1.2 says only: handshake failure)")
        )
    if alert == "CERTIFICATE_REVOKED":
        return f"the broker says this node's certificate is revoked: {NEW_NODE_CERT}"
    if alert == "CERTIFICATE_EXPIRED":
        return "the broker says this node's certificate expired" + _validity(cert_file)
    if alert == "BAD_CERTIFICATE":
        return _bad_certificate(cert_file)
    if alert == "UNSUPPORTED_CERTIFICATE":
        return (
            "the broker cannot use this node's certificate as a client's (its extended key "
            f"usage leaves out TLS client authentication: a server's certificate?): {NEW_NODE_CERT}"
        )
    if alert in ("UNKNOWN_CA", "CERTIFICATE_UNKNOWN"):
        return (
            "the broker refused this node's certificate: cert_file must be issued by the CA "
            "the broker trusts (its `cafile`)"
        )
    if alert == "HANDSHAKE_FAILURE":
        return (
            "the broker and this node share no TLS version or cipher: check [broker.tls] "
            "min_version, max_version and ciphers against the broker's listener"
        )
    if alert == "PROTOCOL_VERSION":
        return (
            "the broker does not speak the TLS versions [broker.tls] min_version and "
            "max_version allow"
        )
    return ""


def _bad_certificate(cert_file: Path | None) -> str:
    """`bad_certificate`: OpenSSL's alert for a client certificate not yet valid by the
    broker's clock (or one it cannot check: a key too small, a CRL not yet valid)."""
    valid = _valid_from(cert_file) if cert_file is not None else None
    if isinstance(valid, datetime):
        now = datetime.now(UTC)
        if valid > now:
            return (
                f"this node's certificate {cert_file} is not valid before "
                f"{valid:%Y-%m-%d %H:%M} UTC, by this node's clock too: it was issued by a "
                f"machine whose clock was ahead; {NEW_NODE_CERT}"
            )
        return (
            f"the broker says this node's certificate is bad: OpenSSL says so of one not yet "
            f"valid by the broker's clock ({cert_file} is valid from {valid:%Y-%m-%d %H:%M} "
            "UTC: is the broker's clock behind?), or of one it cannot check (a key too small, "
            "a CRL not yet valid): the broker's log says which"
        )
    said = f" ({valid})" if isinstance(valid, str) else ""
    return (
        f"the broker says this node's certificate is bad{said}: OpenSSL says so of one not "
        "yet valid by the broker's clock, or of one it cannot check: the broker's log says which"
    )


def _valid_from(cert_file: Path) -> datetime | str:
    """The start of `cert_file`'s validity, or why it cannot be read."""
    try:
        from cryptography import x509  # only on a failure: it is not light

        return x509.load_pem_x509_certificate(cert_file.read_bytes()).not_valid_before_utc
    except (OSError, ValueError) as exc:
        return f"cannot read {cert_file}: {exc}"


def _not_after(cert_file: Path) -> datetime | str:
    """The end of `cert_file`'s validity, or why it cannot be read."""
    try:
        from cryptography import x509  # only on a failure: it is not light

        return x509.load_pem_x509_certificate(cert_file.read_bytes()).not_valid_after_utc
    except (OSError, ValueError) as exc:
        return f"cannot read {cert_file}: {exc}"


def _validity(cert_file: Path | None) -> str:
    """What the node's own certificate says of its validity, and what to do."""
    if cert_file is None:
        return f": {NEW_NODE_CERT}"
    until = _not_after(cert_file)
    if isinstance(until, str):
        return f" ({until}): {NEW_NODE_CERT}"
    now = datetime.now(UTC)
    if until < now:
        return f": {cert_file} expired on {until:%Y-%m-%d %H:%M} UTC; {NEW_NODE_CERT}"
    return (
        f", but by this node's clock ({now:%Y-%m-%d %H:%M} UTC) {cert_file} is valid until "
        f"{until:%Y-%m-%d}: the broker's clock is wrong, or this node's is far behind, or the "
        "broker's CRL (Mosquitto's crlfile) is past its next update (OpenSSL says an expired "
        "CRL so): issue it again"
    )


def expired_own_certificate(cert_file: Path | None, *, refused: bool = True) -> str:
    """Advice when the node's own certificate has expired by its clock; "" when it has not
    (or there is none, or it cannot be read: the broker's answer, if any, says more).
    `refused`: said as the broker's refusal; else as what a broker that checks it refuses
    (a reset in the handshake: a plain port is the likelier cause, see `plain_port_hint`).

    For a TLS connection closed without a CONNACK: a broker refusing an expired client
    certificate sends an alert, but the alert is lost when its close resets the connection
    before the node reads it (seen over TLS 1.3: the node's CONNECT is still unread on the
    broker's side), and a TLS-terminating load balancer may send none. The node then saw a
    bare close, blamed the port or the MQTT version and tried 3.1.1."""
    if cert_file is None:
        return ""
    until = _not_after(cert_file)
    if isinstance(until, str) or until >= datetime.now(UTC):
        return ""
    who = "the broker refuses it" if refused else "a broker that checks it refuses it"
    return (
        f"this node's certificate {cert_file} expired on {until:%Y-%m-%d %H:%M} UTC, by its "
        f"clock: {who} ({NEW_NODE_CERT})"
    )


def verify_advice(
    err: ssl.SSLCertVerificationError,
    host: str,
    ca_file: Path | None,
    clock: str | None = None,
    clock_right: bool | None = None,
) -> str:
    """Advice for a broker certificate the node does not trust. `clock`: what the node's
    clocks say (`edged.clock.Clock.describe`); `clock_right`: whether the system clock can
    be believed (`Clock.system_clock_right`; None: nothing says)."""
    if err.verify_code == HOSTNAME_MISMATCH:
        return (
            f"the broker's certificate is not issued for {host!r}: set [broker] host to a name "
            "in its certificate, or reissue it (BROKER_HOST=... fleet-certs.sh DIR ca)"
        )
    if err.verify_code in (NOT_YET_VALID, EXPIRED):
        what = "not yet valid" if err.verify_code == NOT_YET_VALID else "expired"
        said = f" ({clock})" if clock else ""
        if clock_right is False:
            return (
                f"this node's clock is wrong{said}, so the broker's certificate looks {what}: "
                f"the node connects by itself once the clock is right: {ENABLE_NTP}"
            )
        if clock_right:
            fix = (
                "reissue it (the clock of the machine that issued it was ahead)"
                if err.verify_code == NOT_YET_VALID
                else "renew it on the broker"
            )
            return (
                f"this node's clock is right{said}, so the broker's certificate (or a CA "
                f"above it) is {what}: {fix}"
            )
        return (
            f"check this node's clock first{said}: a Pi without network time starts in the "
            f"past ({ENABLE_NTP}); if it is right, the broker's certificate must be renewed"
        )
    where = f" ({ca_file})" if ca_file is not None else ""
    return (
        f"check [broker.tls] ca_file{where}: it must be the CA that signed the broker's certificate"
    )


def explain(
    err: ssl.SSLError,
    *,
    host: str,
    port: int,
    ca_file: Path | None,
    cert_file: Path | None,
    clock: str | None = None,
    clock_right: bool | None = None,
) -> str:
    """One line for the log and `health.mqtt.last_error`: what TLS said, and what to do."""
    if isinstance(err, ssl.SSLCertVerificationError):
        why = err.verify_message or str(err)
        advice = verify_advice(err, host, ca_file, clock, clock_right)
        return f"TLS: the broker's certificate failed verification ({why}): {advice}"
    if kind(err) == "not_tls":
        return (
            f"TLS: port {port} does not speak TLS ({reason_of(err) or err}): use the broker's TLS "
            "listener (usually 8883), or remove [broker.tls] if this broker has no TLS"
        )
    advice = alert_advice(err, cert_file) or "the broker's log says why it ended the TLS session"
    return f"TLS: the broker ended the TLS session ({reason_of(err) or err}): {advice}"
