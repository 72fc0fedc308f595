"""Can this node reach its broker and be let in? Step by step, so the failing step is named.

DNS, then TCP, then (with [broker.tls]) a TLS handshake with the context paho builds for
the uplink (PROTOCOL_TLS_CLIENT: the broker's certificate verified against `ca_file`, its
name against `host`, this node's certificate offered), then an MQTT CONNECT on that same
connection with the config's username and password file, and its CONNACK read.

The CONNECT is written here (a few bytes; see `connect_packet`) rather than through
aiomqtt: aiomqtt turns TLS errors into strings, waits for its whole timeout when the
broker hangs up before CONNACK, and connects in an executor thread that can outlive the
doctor's deadline. Here every failure arrives typed and at once, and nothing outlives it.

The doctor connects under its own client id (the node's plus `-doctor`) with a clean
session: reusing the node's id would throw a running daemon off the broker.
"""

import asyncio
import contextlib
import errno
import ipaddress
import socket
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from paho.mqtt._packet import decode_connack
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import ConfigError
from edged.clock import Clock
from edged.config.models import BrokerConfig
from edged.doctor.check import Check, fail, ok, warn
from edged.uplink.cancellable import unreadable_because
from edged.uplink.client import MAX_INCOMING_BYTES, read_password
from edged.uplink.packets import varint
from edged.uplink.tls import tls_context
from edged.uplink.tlsfail import alert_advice, kind, verify_advice

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
        password = _password(cfg)
        if cfg.tls is not None:
            tls_checks, reader, writer = await _tls(cfg, deadline, wait_s)
            checks.extend(tls_checks)
        else:
            async with asyncio.timeout_at(deadline):
                reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
        try:
            checks.append(await _mqtt(cfg, client_id, password, reader, writer, deadline, wait_s))
        finally:
            writer.close()
            await _closed(writer)
    except Failed as exc:
        checks.append(exc.check)
    except (TimeoutError, OSError) as exc:  # the broker went away between two steps
        checks.append(
            fail(SECTION, "broker: mqtt", f"lost {_where(cfg)}: {exc!r}", "run doctor again")
        )
    return checks


def _password(cfg: BrokerConfig) -> str | None:
    try:
        return read_password(cfg)
    except ConfigError as exc:
        raise Failed(
            fail(
                SECTION,
                "broker: mqtt",
                "; ".join(exc.problems),
                "the user running edged must be able to read password_file (chown it)",
            )
        ) from exc


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


async def _tls(
    cfg: BrokerConfig, deadline: float, wait_s: float
) -> tuple[list[Check], asyncio.StreamReader, asyncio.StreamWriter]:
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
            reader, writer = await asyncio.open_connection(
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
    except (ConnectionError, OSError) as exc:  # a plain MQTT listener resets on a ClientHello
        raise Failed(
            fail(
                SECTION,
                name,
                f"{_where(cfg)} hung up on the TLS handshake: it does not speak TLS? ({exc})",
                f"port {cfg.port} looks like a plain listener: use the broker's TLS one "
                "(usually 8883), or remove [broker.tls] if this broker has no TLS",
            )
        ) from exc
    version = writer.get_extra_info("ssl_object").version()
    peer = writer.get_extra_info("peercert") or {}
    subject = _cn(peer.get("subject", ()))
    until = peer.get("notAfter")
    detail = f"{version}, broker certificate {subject!r} verified"
    if until is None:
        checks.append(ok(SECTION, name, detail))
        return checks, reader, writer
    days = (ssl.cert_time_to_seconds(until) - time.time()) / 86400
    detail += f", valid {days:.0f} more days"
    if days < EXPIRY_WARN_DAYS:
        checks.append(warn(SECTION, name, detail, "the broker's certificate needs renewing soon"))
    else:
        checks.append(ok(SECTION, name, detail))
    return checks, reader, writer


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
    why = exc.verify_message or str(exc)
    right = Clock().system_clock_right()  # the node's own judgement, without GPS here
    advice = verify_advice(exc, cfg.host, cfg.tls.ca_file, clock_right=right)
    return fail(SECTION, "broker: tls", f"TLS: certificate verify failed ({why})", advice)


def _tls_refused(cfg: BrokerConfig, exc: ssl.SSLError) -> Check:
    assert cfg.tls is not None
    if kind(exc) == "not_tls":
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
        alert_advice(exc, cfg.tls.cert_file)
        or "the broker's log says why it refused the handshake",
    )


def connect_packet(cfg: BrokerConfig, client_id: str, password: str | None) -> bytes:
    """MQTT CONNECT (3.1.1 or 5) with a clean session, the username and password, no will."""
    v5 = cfg.protocol == "5"
    flags = 0x02  # clean session / clean start
    payload = _string(f"{client_id}-doctor"[:64].encode())
    if cfg.username is not None:
        flags |= 0x80
        payload += _string(cfg.username.encode())
    if password is not None:
        flags |= 0x40
        payload += _string(password.encode())
    header = _string(b"MQTT") + bytes([5 if v5 else 4, flags]) + cfg.keepalive_s.to_bytes(2)
    if v5:
        header += b"\x00"  # no properties
    body = header + payload
    return b"\x10" + varint(len(body)) + body


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(2) + data


async def _read_varint(reader: asyncio.StreamReader) -> int:
    value = 0
    for shift in range(0, 28, 7):
        byte = (await reader.readexactly(1))[0]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise ValueError("malformed remaining length")


async def _mqtt(
    cfg: BrokerConfig,
    client_id: str,
    password: str | None,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    deadline: float,
    wait_s: float,
) -> Check:
    """CONNECT, read the CONNACK, DISCONNECT: the broker's verdict on this node's login."""
    name = "broker: mqtt"
    who = f" as {cfg.username!r}" if cfg.username else ""
    started = time.monotonic()
    try:
        async with asyncio.timeout_at(deadline):
            writer.write(connect_packet(cfg, client_id, password))
            await writer.drain()
            kind = (await reader.readexactly(1))[0]
            length = await _read_varint(reader)
            if length > MAX_INCOMING_BYTES:  # not read: as the node, which ends it at once
                limit = MAX_INCOMING_BYTES
                raise ValueError(
                    f"a packet announcing {length} bytes, over the {limit} the node takes"
                )
            body = await reader.readexactly(length)
    except ssl.SSLError as exc:  # TLS 1.3: the broker judges our certificate after the handshake
        raise Failed(_broke(cfg, f"TLS alert: {exc.reason or exc}")) from exc
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise Failed(_broke(cfg, "the broker closed the connection before its CONNACK")) from exc
    except TimeoutError as exc:
        raise Failed(
            fail(
                SECTION,
                name,
                f"no CONNACK from {_where(cfg)} within {wait_s:g} s",
                "is this the broker's MQTT port? A TLS listener needs [broker.tls]",
            )
        ) from exc
    except ValueError as exc:
        raise Failed(_not_mqtt(cfg, str(exc))) from exc
    if kind >> 4 != 2 or len(body) < 2:
        raise Failed(_not_mqtt(cfg, f"it answered packet type {kind >> 4}, not CONNACK"))
    if body[1] != 0:
        raise Failed(_refused(cfg, body[1]))
    why = _unreadable(cfg, kind, body)
    if why is not None:
        raise Failed(
            fail(
                SECTION,
                name,
                f"{_where(cfg)} answered with a malformed CONNACK ({why}): the node cannot "
                "read it, and stays offline",
                "a broken MQTT server, or not the broker meant: see its version and log"
                + (
                    '; [broker] protocol = "3.1.1" if its MQTT 5 is at fault'
                    if cfg.protocol == "5"
                    else ""
                ),
            )
        )
    writer.write(b"\xe0\x00")  # DISCONNECT, normal
    ms = (time.monotonic() - started) * 1000
    return ok(SECTION, name, f"MQTT {cfg.protocol} CONNECT accepted{who} ({ms:.0f} ms)")


def _unreadable(cfg: BrokerConfig, kind: int, body: bytes) -> str | None:
    """Why the node's MQTT client (paho) could not read this CONNACK, None when it can: one
    with a property it does not know, or that runs past the packet, was "accepted" here
    while the node could never connect."""
    version = MQTTProtocolVersion.MQTTv5 if cfg.protocol == "5" else MQTTProtocolVersion.MQTTv311
    try:
        decode_connack(kind, body, version)
    except MalformedPacket as exc:
        return unreadable_because(exc)
    return None


def _not_mqtt(cfg: BrokerConfig, why: str) -> Check:
    return fail(
        SECTION,
        "broker: mqtt",
        f"{_where(cfg)} does not answer as an MQTT broker ({why})",
        "check [broker] host and port: they must name the broker's MQTT listener",
    )


def _refused(cfg: BrokerConfig, raw: int) -> Check:
    """A CONNACK with a failure code, judged in MQTT 5 numbering (3.1.1 codes mapped)."""
    name = "broker: mqtt"
    if cfg.protocol == "5":
        code, text = raw, f"MQTT 5 reason {raw}"
    else:
        code, text = V311_TO_V5.get(raw, raw), f"MQTT 3.1.1 return code {raw}"
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
    with contextlib.suppress(KeyError):  # a code paho has no name for
        text = f"{ReasonCode(PacketTypes.CONNACK, identifier=code)}, {text}"
    return fail(
        SECTION,
        name,
        f"the broker refused the CONNECT ({text})",
        "the broker is up but refuses connections now (banned, busy or shutting down): see its log",
    )


def _broke(cfg: BrokerConfig, message: str) -> Check:
    """The broker hung up (or alerted) instead of answering the CONNECT."""
    name = "broker: mqtt"
    alert = alert_advice(message, cfg.tls.cert_file if cfg.tls is not None else None)
    if alert:
        return fail(SECTION, name, f"the broker refused this node's TLS login ({message})", alert)
    if cfg.tls is None:
        advice = (
            f"if port {cfg.port} is a TLS listener (8883 usually is), configure [broker.tls]; "
            "otherwise the broker's log says why it hung up"
        )
    elif cfg.tls.cert_file is None:
        advice = (
            "the broker may require a client certificate: set [broker.tls] cert_file and "
            "key_file (`fleet-certs.sh DIR node FLEET NODE` issues one); its log says why"
        )
    else:  # TLS 1.3: a refused certificate shows as a hang-up (or an alert) after the handshake
        advice = (
            "the broker most likely refused this node's certificate: cert_file must be issued "
            "by the CA the broker trusts (its `cafile`); its log says why"
        )
    return fail(SECTION, name, message, advice)


async def _closed(writer: asyncio.StreamWriter) -> None:
    """Close without waiting on a peer that never answers the TLS close."""
    try:
        async with asyncio.timeout(1):
            await writer.wait_closed()
    except (TimeoutError, OSError, ssl.SSLError):
        pass
