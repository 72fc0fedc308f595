"""Can this node reach its broker and be let in? Step by step, so the failing step is named.

DNS, then TCP, then (with [broker.tls]) a TLS handshake with the same settings paho uses
for the uplink (PROTOCOL_TLS_CLIENT: the broker's certificate verified against `ca_file`
and its name checked against `host`), then a real MQTT CONNECT through aiomqtt with the
config's username, password file and client certificate. Each failure says what to change.

The doctor connects under its own client id (the node's, plus `-doctor`) with a clean
session: reusing the node's id would throw a running daemon off the broker.
"""

import asyncio
import errno
import ipaddress
import socket
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from cryptography import x509
from paho.mqtt.reasoncodes import ReasonCode

from edged.config.models import BrokerConfig
from edged.doctor.check import Check, fail, ok, warn
from edged.errors import ConfigError
from edged.uplink.client import read_password

SECTION = "broker"
EXPIRY_WARN_DAYS = 30
V311_TO_V5 = {1: 132, 2: 133, 3: 136, 4: 134, 5: 135}
"""MQTT 3.1.1 CONNACK return codes as their MQTT 5 reason codes."""


class Failed(Exception):
    """A step failed; carries its report line."""

    def __init__(self, check: Check) -> None:
        super().__init__(check.detail)
        self.check = check


async def check_broker(cfg: BrokerConfig, client_id: str, wait_s: float) -> list[Check]:
    """One line per step that ran; the first failing step ends the list."""
    deadline = asyncio.get_running_loop().time() + wait_s
    checks: list[Check] = []
    try:
        checks.append(await _resolve(cfg, deadline, wait_s))
        checks.append(await _tcp(cfg, deadline, wait_s))
        if cfg.tls is not None:
            checks.extend(await _tls(cfg, deadline, wait_s))
        checks.append(await _mqtt(cfg, client_id, deadline, wait_s))
    except Failed as exc:
        checks.append(exc.check)
    return checks


def _where(cfg: BrokerConfig) -> str:
    return f"{cfg.host}:{cfg.port}"


async def _resolve(cfg: BrokerConfig, deadline: float, wait_s: float) -> Check:
    name = "broker: address"
    try:
        ipaddress.ip_address(cfg.host)
    except ValueError:
        pass
    else:
        return ok(SECTION, name, f"{cfg.host} (an IP address: no DNS lookup)")
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline):
            infos = await loop.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Failed(
            fail(
                SECTION,
                name,
                f"DNS: cannot resolve {cfg.host!r} ({exc.strerror})",
                "check [broker] host for typos, then the network and DNS "
                "(`resolvectl status`, `getent hosts HOST`)",
            )
        ) from exc
    except TimeoutError as exc:
        raise Failed(
            fail(
                SECTION,
                name,
                f"DNS: no answer for {cfg.host!r} within {wait_s:g} s",
                "the network or its DNS server is down (`resolvectl status`)",
            )
        ) from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    return ok(SECTION, name, f"{cfg.host} -> {', '.join(addresses)}")


async def _tcp(cfg: BrokerConfig, deadline: float, wait_s: float) -> Check:
    name = "broker: tcp"
    started = time.monotonic()
    try:
        async with asyncio.timeout_at(deadline):
            _, writer = await asyncio.open_connection(cfg.host, cfg.port)
    except ConnectionRefusedError as exc:
        raise Failed(
            fail(
                SECTION,
                name,
                f"connection refused at {_where(cfg)}",
                "is mosquitto running there (`systemctl status mosquitto`) and listening on "
                f"port {cfg.port}? A firewall may refuse it too",
            )
        ) from exc
    except TimeoutError as exc:
        raise Failed(
            fail(
                SECTION,
                name,
                f"no answer from {_where(cfg)} within {wait_s:g} s",
                "a firewall drops the packets, or host/port are wrong, or the network "
                "(mobile data?) is down",
            )
        ) from exc
    except OSError as exc:
        unreachable = exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
        raise Failed(
            fail(
                SECTION,
                name,
                f"cannot connect to {_where(cfg)}: {exc.strerror or exc}",
                "no network route: check the modem or Wi-Fi (`ip route`)"
                if unreachable
                else "check [broker] host and port, and the network",
            )
        ) from exc
    writer.close()
    await _closed(writer)
    ms = (time.monotonic() - started) * 1000
    return ok(SECTION, name, f"{_where(cfg)} accepts connections ({ms:.0f} ms)")


def tls_context(cfg: BrokerConfig) -> ssl.SSLContext:
    """The context paho builds from the uplink's TLSParameters (see paho's tls_set)."""
    assert cfg.tls is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the cert and the host name
    context.verify_mode = ssl.CERT_REQUIRED
    if cfg.tls.cert_file is not None:
        context.load_cert_chain(
            str(cfg.tls.cert_file), str(cfg.tls.key_file) if cfg.tls.key_file else None
        )
    context.load_verify_locations(str(cfg.tls.ca_file))
    return context


async def _tls(cfg: BrokerConfig, deadline: float, wait_s: float) -> list[Check]:
    name = "broker: tls"
    assert cfg.tls is not None
    try:
        context = tls_context(cfg)
    except (OSError, ssl.SSLError) as exc:
        raise Failed(
            fail(
                SECTION,
                name,
                f"cannot load the TLS files: {exc}",
                "[broker.tls] ca_file, cert_file and key_file must be PEM files, and "
                "cert_file must match key_file (fleet-certs.sh issues them together)",
            )
        ) from exc
    checks = [c for c in [_client_cert(cfg)] if c is not None]
    try:
        async with asyncio.timeout_at(deadline):
            _, writer = await asyncio.open_connection(
                cfg.host, cfg.port, ssl=context, server_hostname=cfg.host
            )
    except ssl.SSLCertVerificationError as exc:
        raise Failed(_verify_failed(cfg, exc)) from exc
    except ssl.SSLError as exc:
        raise Failed(_tls_refused(cfg, exc)) from exc
    except TimeoutError as exc:
        raise Failed(
            fail(
                SECTION,
                name,
                f"no TLS handshake with {_where(cfg)} within {wait_s:g} s",
                f"is port {cfg.port} the broker's TLS listener (usually 8883)?",
            )
        ) from exc
    except (ConnectionError, OSError) as exc:
        raise Failed(
            fail(
                SECTION,
                name,
                f"the connection broke during the TLS handshake ({exc})",
                f"is port {cfg.port} the broker's TLS listener (usually 8883)? "
                "Its log says why it hung up",
            )
        ) from exc
    version = writer.get_extra_info("ssl_object").version()
    peer = writer.get_extra_info("peercert") or {}
    writer.close()
    await _closed(writer)
    subject = _cn(peer.get("subject", ()))
    until = peer.get("notAfter")
    if until is None:
        return [*checks, ok(SECTION, name, f"{version}, broker certificate {subject} verified")]
    days = (ssl.cert_time_to_seconds(until) - time.time()) / 86400
    detail = f"{version}, broker certificate {subject!r} verified, valid {days:.0f} more days"
    if days < EXPIRY_WARN_DAYS:
        checks.append(warn(SECTION, name, detail, "the broker's certificate needs renewing soon"))
    else:
        checks.append(ok(SECTION, name, detail))
    return checks


def _cn(name: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    """The commonName of a certificate name as `getpeercert()` gives it."""
    for rdn in name:
        for key, value in rdn:
            if key == "commonName":
                return value
    return "?"


def _client_cert(cfg: BrokerConfig) -> Check | None:
    """The node's own certificate: an expired one is refused by the broker, say it first."""
    assert cfg.tls is not None
    if cfg.tls.cert_file is None:
        return None
    name = "broker: client certificate"
    try:
        cert = x509.load_pem_x509_certificate(Path(cfg.tls.cert_file).read_bytes())
    except (OSError, ValueError) as exc:
        return warn(SECTION, name, f"cannot read {cfg.tls.cert_file}: {exc}", "is it PEM?")
    now = datetime.now(UTC)
    left = (cert.not_valid_after_utc - now).total_seconds() / 86400
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    who = f"{cn[0].value!s}" if cn else str(cert.subject.rfc4514_string())
    if cert.not_valid_before_utc > now:
        return fail(
            SECTION,
            name,
            f"{who}: not valid before {cert.not_valid_before_utc:%Y-%m-%d}; the clock says "
            f"{now:%Y-%m-%d}",
            "the clock is wrong (see the clock line): sync it, then run again",
        )
    if left < 0:
        return fail(
            SECTION,
            name,
            f"{who}: expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            "issue a new one: `fleet-certs.sh DIR node FLEET NODE` on the fleet CA",
        )
    detail = f"{who}, valid {left:.0f} more days"
    if left < EXPIRY_WARN_DAYS:
        return warn(SECTION, name, detail, "renew it soon: `fleet-certs.sh DIR node FLEET NODE`")
    return ok(SECTION, name, detail)


def _verify_failed(cfg: BrokerConfig, exc: ssl.SSLCertVerificationError) -> Check:
    assert cfg.tls is not None
    name = "broker: tls"
    why = exc.verify_message or str(exc)
    detail = f"TLS: certificate verify failed ({why})"
    if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
        advice = (
            f"the broker's certificate is not issued for {cfg.host!r}: set [broker] host to a "
            "name in its certificate, or reissue it (BROKER_HOST=... fleet-certs.sh DIR ca)"
        )
    elif exc.verify_code in (9, 10):  # not yet valid, expired
        advice = (
            "check the clock first (a Pi without network time starts in the past); "
            "otherwise the broker's certificate must be renewed"
        )
    else:
        advice = (
            f"check [broker.tls] ca_file ({cfg.tls.ca_file}): it must be the CA that signed "
            "the broker's certificate"
        )
    return fail(SECTION, name, detail, advice)


def _tls_refused(cfg: BrokerConfig, exc: ssl.SSLError) -> Check:
    text = f"{exc.reason or ''} {exc}".upper()
    if "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER" in text or "PACKET_LENGTH" in text:
        return fail(
            SECTION,
            "broker: tls",
            f"{_where(cfg)} does not speak TLS ({exc.reason})",
            f"port {cfg.port} is a plain listener: use the TLS one (usually 8883), or "
            "remove [broker.tls] if this broker has no TLS",
        )
    return fail(
        SECTION,
        "broker: tls",
        f"TLS handshake refused: {exc.reason or exc}",
        _alert_advice(text) or "the broker's log says why it refused the handshake",
    )


def _alert_advice(text: str) -> str:
    """Advice for a TLS alert the broker sent about this node's certificate."""
    text = text.upper()
    if "CERTIFICATE_REQUIRED" in text or "PEER DID NOT RETURN A CERTIFICATE" in text:
        return (
            "the broker wants a client certificate: set [broker.tls] cert_file and key_file "
            "(`fleet-certs.sh DIR node FLEET NODE` issues one)"
        )
    if any(t in text for t in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return (
            "the broker refused this node's certificate: cert_file must be issued by the CA "
            "the broker trusts (its `cafile`)"
        )
    if "CERTIFICATE_EXPIRED" in text:
        return "the broker says this node's certificate expired (or the clock is wrong)"
    return ""


def _client(cfg: BrokerConfig, client_id: str, wait_s: float) -> aiomqtt.Client:
    """As Uplink._client_for builds it, minus the will; a clean session under a doctor id."""
    tls = None
    if cfg.tls is not None:
        tls = aiomqtt.TLSParameters(
            ca_certs=str(cfg.tls.ca_file),
            certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
            keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    v5 = cfg.protocol == "5"
    return aiomqtt.Client(
        hostname=cfg.host,
        port=cfg.port,
        identifier=f"{client_id}-doctor"[:64],
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        username=cfg.username,
        password=read_password(cfg),
        keepalive=cfg.keepalive_s,
        tls_params=tls,
        clean_session=None if v5 else True,
        timeout=wait_s,
    )


async def _mqtt(cfg: BrokerConfig, client_id: str, deadline: float, wait_s: float) -> Check:
    name = "broker: mqtt"
    left = max(0.1, deadline - asyncio.get_running_loop().time())
    try:
        client = _client(cfg, client_id, left)
    except ConfigError as exc:
        raise Failed(
            fail(
                SECTION,
                name,
                "; ".join(exc.problems),
                "the user running edged must be able to read password_file (chown it)",
            )
        ) from exc
    who = f" as {cfg.username!r}" if cfg.username else ""
    started = time.monotonic()
    try:
        async with asyncio.timeout_at(deadline), client:
            pass
    except MqttConnectError as exc:
        raise Failed(_refused(cfg, exc.rc)) from exc
    except aiomqtt.MqttError as exc:
        raise Failed(_broke(cfg, str(exc), wait_s)) from exc
    except TimeoutError as exc:
        raise Failed(_broke(cfg, "timed out", wait_s)) from exc
    ms = (time.monotonic() - started) * 1000
    return ok(SECTION, name, f"MQTT {cfg.protocol} CONNECT accepted{who} ({ms:.0f} ms)")


def _refused(cfg: BrokerConfig, rc: int | ReasonCode | None) -> Check:
    name = "broker: mqtt"
    if isinstance(rc, ReasonCode):
        code, text = rc.value, str(rc)
    else:
        code, text = V311_TO_V5.get(rc or 0, rc or 0), f"return code {rc}"
    login = (
        f"username {cfg.username!r} and the password in {cfg.password_file}"
        if cfg.password_file
        else f"username {cfg.username!r}"
        if cfg.username
        else "the login: no username is set"
    )
    if code in (134, 135):
        what = "bad username or password" if code == 134 else "not authorised"
        advice = f"check {login} (username/password_file) against the broker's password file"
        if cfg.tls is not None and cfg.tls.cert_file is not None:
            advice += "; with certificate logins, the broker must know the certificate's CN"
        return fail(SECTION, name, f"the broker refused the CONNECT: {what} ({text})", advice)
    if code == 132:
        other = "3.1.1" if cfg.protocol == "5" else "5"
        return fail(
            SECTION,
            name,
            f"the broker does not speak MQTT {cfg.protocol} ({text})",
            f'set [broker] protocol = "{other}"',
        )
    if code == 133:
        return fail(
            SECTION,
            name,
            f"the broker refused the client id ({text})",
            "check [broker] client_id against the broker's client id rules",
        )
    return fail(
        SECTION,
        name,
        f"the broker refused the CONNECT: {text}",
        "the broker is up but refuses connections now (banned, busy or shutting down): see its log",
    )


def _broke(cfg: BrokerConfig, message: str, wait_s: float) -> Check:
    name = "broker: mqtt"
    alert = _alert_advice(message)
    if alert:
        return fail(SECTION, name, f"TLS: the broker refused this node ({message})", alert)
    if "timed out" in message.lower():
        return fail(
            SECTION,
            name,
            f"no CONNACK from {_where(cfg)} within {wait_s:g} s",
            "is this an MQTT port? A TLS listener needs [broker.tls]",
        )
    advice = "the broker's log says why it hung up"
    if cfg.tls is None:
        advice = (
            f"if port {cfg.port} is a TLS listener, configure [broker.tls]; otherwise " + advice
        )
    return fail(SECTION, name, f"the connection broke before CONNACK: {message}", advice)


async def _closed(writer: asyncio.StreamWriter) -> None:
    """Close without waiting on a peer that never answers the TLS close."""
    try:
        async with asyncio.timeout(1):
            await writer.wait_closed()
    except (TimeoutError, OSError, ssl.SSLError):
        pass
