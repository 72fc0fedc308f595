"""What a connection's first bytes are: TLS records by type, and the MQTT packets inside.

`bench.budget` keeps each connection's first bytes both ways (`hil.proxy`, raw) and the
node's TLS keys (an NSS key log, written by the bench's node only: `bench.warp`), so a
reconnect's bytes can be broken down exactly: the ClientHello and its extensions (the
session ticket among them), the server's flight, the NewSessionTicket, and each MQTT packet
(the CONNECT and its properties, the will, the birth…) with the TLS record around it.
TLS 1.3 (AES-GCM, ChaCha20-Poly1305) and TLS 1.2 (ECDHE with AES-GCM or ChaCha20-Poly1305)
records are decrypted; anything else is named by its outer type only.

Input is what crossed a socket, so nothing is trusted: a truncated or malformed record,
handshake message or MQTT packet ends the parsing of that stream where it stands
(`truncated`), never raises.
"""

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA = 20, 21, 22, 23
RECORD_TYPES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData"}
HANDSHAKE_TYPES = {
    1: "ClientHello",
    2: "ServerHello",
    4: "NewSessionTicket",
    8: "EncryptedExtensions",
    11: "Certificate",
    12: "ServerKeyExchange",
    13: "CertificateRequest",
    14: "ServerHelloDone",
    15: "CertificateVerify",
    16: "ClientKeyExchange",
    20: "Finished",
    24: "KeyUpdate",
}
EXTENSIONS = {
    0: "server_name",
    5: "status_request",
    10: "supported_groups",
    11: "ec_point_formats",
    13: "signature_algorithms",
    16: "alpn",
    21: "padding",
    22: "encrypt_then_mac",
    23: "extended_master_secret",
    35: "session_ticket",
    41: "pre_shared_key",
    42: "early_data",
    43: "supported_versions",
    45: "psk_key_exchange_modes",
    49: "post_handshake_auth",
    50: "signature_algorithms_cert",
    51: "key_share",
    0xFF01: "renegotiation_info",
}
MQTT_TYPES = {
    1: "CONNECT",
    2: "CONNACK",
    3: "PUBLISH",
    4: "PUBACK",
    5: "PUBREC",
    6: "PUBREL",
    7: "PUBCOMP",
    8: "SUBSCRIBE",
    9: "SUBACK",
    10: "UNSUBSCRIBE",
    11: "UNSUBACK",
    12: "PINGREQ",
    13: "PINGRESP",
    14: "DISCONNECT",
    15: "AUTH",
}
MQTT_PROPERTIES = {
    0x01: "payload_format",
    0x02: "message_expiry",
    0x03: "content_type",
    0x08: "response_topic",
    0x09: "correlation_data",
    0x0B: "subscription_id",
    0x11: "session_expiry",
    0x12: "assigned_client_id",
    0x13: "server_keep_alive",
    0x15: "auth_method",
    0x16: "auth_data",
    0x17: "request_problem_info",
    0x18: "will_delay",
    0x19: "request_response_info",
    0x1A: "response_info",
    0x1C: "server_reference",
    0x1F: "reason_string",
    0x21: "receive_maximum",
    0x22: "topic_alias_maximum",
    0x23: "topic_alias",
    0x24: "maximum_qos",
    0x25: "retain_available",
    0x26: "user_property",
    0x27: "maximum_packet_size",
    0x28: "wildcard_subscription_available",
    0x29: "subscription_id_available",
    0x2A: "shared_subscription_available",
}
_ONE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_TWO = {0x13, 0x21, 0x22, 0x23}
_FOUR = {0x02, 0x11, 0x18, 0x27}
# cipher suite -> (AEAD, key bytes, hash); TLS 1.3 then TLS 1.2 ECDHE suites
SUITES: dict[int, tuple[str, int, str]] = {
    0x1301: ("aes-gcm", 16, "sha256"),
    0x1302: ("aes-gcm", 32, "sha384"),
    0x1303: ("chacha20", 32, "sha256"),
    0xC02B: ("aes-gcm", 16, "sha256"),
    0xC02F: ("aes-gcm", 16, "sha256"),
    0xC02C: ("aes-gcm", 32, "sha384"),
    0xC030: ("aes-gcm", 32, "sha384"),
    0xCCA8: ("chacha20", 32, "sha256"),
    0xCCA9: ("chacha20", 32, "sha256"),
}
SUITE_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
}


class Malformed(Exception):
    """Bytes that are not what they claim to be (caught inside this module)."""


def _need(data: bytes, end: int) -> None:
    if end > len(data):
        raise Malformed(f"needs {end} bytes, has {len(data)}")


def _u(data: bytes, at: int, n: int) -> int:
    _need(data, at + n)
    return int.from_bytes(data[at : at + n], "big")


@dataclass
class Record:
    """One TLS record as it crossed the wire; `to_broker` says which way."""

    to_broker: bool
    type: int
    version: int
    body: bytes
    at: int  # offset of its header in its direction's bytes

    @property
    def wire(self) -> int:
        return 5 + len(self.body)


def records(data: bytes, to_broker: bool) -> tuple[list[Record], bool]:
    """Every whole TLS record of `data`; True when the bytes end inside one or are not TLS."""
    out: list[Record] = []
    at = 0
    while at + 5 <= len(data):
        kind, version, size = data[at], _u(data, at + 1, 2), _u(data, at + 3, 2)
        if kind not in RECORD_TYPES or version >> 8 != 3 or size > 16384 + 2048:
            return out, True
        if at + 5 + size > len(data):
            return out, True
        out.append(Record(to_broker, kind, version, bytes(data[at + 5 : at + 5 + size]), at))
        at += 5 + size
    return out, at != len(data)


def handshake_messages(body: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, message with its 4-byte header) of each whole handshake message in `body`."""
    at = 0
    while at + 4 <= len(body):
        size = _u(body, at + 1, 3)
        _need(body, at + 4 + size)
        yield body[at], body[at : at + 4 + size]
        at += 4 + size
    if at != len(body):
        raise Malformed("a handshake message split across records")


def _extensions(data: bytes, at: int) -> dict[str, int]:
    """Bytes of each extension (its 4-byte header included) from a hello's extension block."""
    if at == len(data):
        return {}
    total = _u(data, at, 2)
    at += 2
    end = at + total
    _need(data, end)
    out: dict[str, int] = {}
    while at < end:
        ident, size = _u(data, at, 2), _u(data, at + 2, 2)
        _need(data, at + 4 + size)
        name = EXTENSIONS.get(ident, f"ext_{ident}")
        out[name] = out.get(name, 0) + 4 + size
        at += 4 + size
    return out


@dataclass
class Hello:
    """What a ClientHello or ServerHello says that matters here."""

    random: bytes
    session_id: int
    suites: list[int]
    extensions: dict[str, int]
    version: str  # the negotiated one (ServerHello), or the highest offered


def _versions(ext_body: bytes) -> list[int]:
    return [int.from_bytes(ext_body[i : i + 2], "big") for i in range(0, len(ext_body) - 1, 2)]


def parse_hello(message: bytes) -> Hello:
    """A ClientHello (type 1) or ServerHello (type 2), header included."""
    kind = message[0]
    at = 4 + 2  # header, legacy version
    random = message[at : at + 32]
    _need(message, at + 33)
    at += 32
    sid = message[at]
    at += 1 + sid
    if kind == 1:
        n = _u(message, at, 2)
        _need(message, at + 2 + n)
        suites = [_u(message, at + 2 + i, 2) for i in range(0, n, 2)]
        at += 2 + n
        _need(message, at + 1)
        at += 1 + message[at]  # compression methods
    else:
        suites = [_u(message, at, 2)]
        at += 3
    extensions = _extensions(message, at)
    version = "1.2"
    # supported_versions: 1.3 when the ServerHello picks 0x0304 or a ClientHello offers it
    at2, seen = at + 2, _u(message, at, 2) + at + 2 if at < len(message) else at
    while at2 + 4 <= seen:
        ident, size = _u(message, at2, 2), _u(message, at2 + 2, 2)
        if ident == 43:
            body = message[at2 + 4 : at2 + 4 + size]
            offered = _versions(body if kind == 2 else body[1:])
            version = "1.3" if 0x0304 in offered else version
        at2 += 4 + size
    return Hello(random, sid, suites, extensions, version)


def hkdf_label(secret: bytes, label: str, length: int, algorithm: str) -> bytes:
    """TLS 1.3 HKDF-Expand-Label with an empty context."""
    full = b"tls13 " + label.encode()
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    algo = hashes.SHA384() if algorithm == "sha384" else hashes.SHA256()
    return HKDFExpand(algo, length, info).derive(secret)


def prf12(secret: bytes, label: bytes, seed: bytes, length: int, algorithm: str) -> bytes:
    """The TLS 1.2 PRF (P_SHA256 or P_SHA384)."""
    digest = hashlib.sha384 if algorithm == "sha384" else hashlib.sha256
    out, a = b"", label + seed
    while len(out) < length:
        a = hmac.new(secret, a, digest).digest()
        out += hmac.new(secret, a + label + seed, digest).digest()
    return out[:length]


@dataclass
class Keys:
    """One direction's record protection: AEAD, key, IV, the next sequence number."""

    aead: str
    key: bytes
    iv: bytes
    tls12: bool
    seq: int = 0

    def open(self, record: Record) -> tuple[int, bytes]:
        """(inner content type, plaintext); Malformed when it does not decrypt."""
        body = record.body
        cipher: AESGCM | ChaCha20Poly1305 = (
            AESGCM(self.key) if self.aead == "aes-gcm" else ChaCha20Poly1305(self.key)
        )
        seq = self.seq.to_bytes(8, "big")
        if self.tls12:
            if self.aead == "aes-gcm":
                nonce, body = self.iv + body[:8], body[8:]
            else:
                nonce = bytes(a ^ b for a, b in zip(self.iv, b"\0\0\0\0" + seq, strict=True))
            length = len(body) - 16
            if length < 0:
                raise Malformed("a record shorter than its tag")
            aad = seq + bytes([record.type]) + record.version.to_bytes(2, "big")
            aad += length.to_bytes(2, "big")
        else:
            nonce = bytes(a ^ b for a, b in zip(self.iv, b"\0\0\0\0" + seq, strict=True))
            aad = bytes([record.type]) + record.version.to_bytes(2, "big")
            aad += len(body).to_bytes(2, "big")
        try:
            plain = cipher.decrypt(nonce, body, aad)
        except (InvalidTag, ValueError) as exc:
            raise Malformed("does not decrypt with the logged keys") from exc
        self.seq += 1
        if self.tls12:
            return record.type, plain
        plain = plain.rstrip(b"\0")
        if not plain:
            raise Malformed("a TLS 1.3 record without its content type")
        return plain[-1], plain[:-1]


def read_keylog(text: str) -> dict[bytes, dict[str, bytes]]:
    """An NSS key log: client random -> label -> secret. Lines that are not one are skipped."""
    out: dict[bytes, dict[str, bytes]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or line.startswith("#"):
            continue
        try:
            random, secret = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
        except ValueError:
            continue
        if len(random) == 32 and 0 < len(secret) <= 64:
            out.setdefault(random, {})[parts[0]] = secret
    return out


@dataclass
class Item:
    """One thing on the wire: a TLS record, or an MQTT packet with its share of the record."""

    to_broker: bool
    what: str
    bytes: int
    end: int  # offset just past it in its direction's bytes (to place it in time)
    parts: dict[str, int] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dir": "up" if self.to_broker else "down",
            "what": self.what,
            "bytes": self.bytes,
        }
        if self.parts:
            out["parts"] = self.parts
        return out


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(4):
        _need(data, at + i + 1)
        byte = data[at + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, at + i + 1
    raise Malformed("a variable byte integer longer than 4 bytes")


def _named_properties(packet: bytes, at: int, parts: dict[str, int], prefix: str) -> int:
    """Name a properties block's bytes in `parts` (`{prefix}properties_length`, each
    `{prefix}property.{name}`); returns where the block ends."""
    props, after = _properties(packet, at)
    parts[f"{prefix}properties_length"] = after - at - sum(props.values())
    parts.update({f"{prefix}property.{k}": v for k, v in props.items()})
    return after


def _properties(data: bytes, at: int) -> tuple[dict[str, int], int]:
    """Bytes of each MQTT 5 property (identifier included); the offset after them."""
    size, at = _varint(data, at)
    end = at + size
    _need(data, end)
    out: dict[str, int] = {}
    while at < end:
        ident = data[at]
        start = at
        at += 1
        if ident in _ONE:
            at += 1
        elif ident in _TWO:
            at += 2
        elif ident in _FOUR:
            at += 4
        elif ident == 0x0B:
            _, at = _varint(data, at)
        elif ident == 0x26:
            at += 2 + _u(data, at, 2)
            at += 2 + _u(data, at, 2)
        elif ident in MQTT_PROPERTIES:
            at += 2 + _u(data, at, 2)
        else:
            raise Malformed(f"unknown MQTT property 0x{ident:02X}")
        _need(data, at)
        name = MQTT_PROPERTIES[ident]
        out[name] = out.get(name, 0) + at - start
    if at != end:
        raise Malformed("MQTT properties overrun their length")
    return out, end


def _string(data: bytes, at: int) -> tuple[int, int]:
    """(bytes including the 2-byte length, offset after)"""
    n = _u(data, at, 2)
    _need(data, at + 2 + n)
    return 2 + n, at + 2 + n


def mqtt_packet(packet: bytes, v5: bool) -> tuple[str, dict[str, int]]:
    """The name and parts (bytes each) of one whole MQTT packet."""
    kind, flags = packet[0] >> 4, packet[0] & 0x0F
    _, at = _varint(packet, 1)
    parts = {"fixed_header": at}
    if kind not in MQTT_TYPES:
        raise Malformed(f"MQTT packet type {kind} is reserved")
    name = MQTT_TYPES[kind]
    if kind == 1:  # CONNECT
        start = at
        _, at = _string(packet, at)
        level = packet[at]
        v5 = level == 5
        connect_flags = packet[at + 1]
        at += 4
        parts["protocol_name_level_flags_keepalive"] = at - start
        if v5:
            at = _named_properties(packet, at, parts, "")
        n, at = _string(packet, at)
        parts["client_id"] = n
        if connect_flags & 0x04:
            if v5:
                at = _named_properties(packet, at, parts, "will_")
            n, at = _string(packet, at)
            parts["will_topic"] = n
            n, at = _string(packet, at)
            parts["will_payload"] = n
        for flag, key in ((0x80, "username"), (0x40, "password")):
            if connect_flags & flag:
                n, at = _string(packet, at)
                parts[key] = n
        if at != len(packet):
            raise Malformed("a CONNECT longer than its fields")
        return f"{name} (MQTT {'5' if v5 else '3.1.1'})", parts
    if kind == 3:  # PUBLISH
        n, at = _string(packet, at)
        parts["topic"] = n
        if (flags >> 1) & 3:
            parts["packet_id"] = 2
            at += 2
        if v5:
            at = _named_properties(packet, at, parts, "")
        parts["payload"] = len(packet) - at
        retained = " retained" if flags & 1 else ""
        return f"PUBLISH qos {(flags >> 1) & 3}{retained}", parts
    parts["rest"] = len(packet) - at
    return name, parts


def mqtt_stream(data: bytes, v5: bool) -> Iterator[tuple[int, int, str, dict[str, int]]]:
    """(start, end, name, parts) of each whole MQTT packet in a direction's plaintext."""
    at = 0
    while at < len(data):
        try:
            size, body = _varint(data, at + 1)
        except Malformed:
            return
        end = body + size
        if end > len(data):
            return
        packet = data[at:end]
        if packet[0] >> 4 == 1:
            v5 = len(packet) > body + 6 and packet[body + 6] == 5
        try:
            name, parts = mqtt_packet(packet, v5)
        except (Malformed, IndexError):
            name, parts = f"malformed {MQTT_TYPES.get(packet[0] >> 4, '?')}", {}
        yield at, end, name, parts
        at = end


@dataclass
class Breakdown:
    """A connection's first bytes, item by item, both ways, in wire order per direction."""

    items: list[Item]
    version: str | None
    suite: str | None
    resumed: bool | None
    truncated: bool
    decrypted: bool

    def json(self, until: dict[bool, int] | None = None) -> dict[str, Any]:
        """Items ending within `until` (bytes each way; None: all), with totals by kind."""
        kept = [i for i in self.items if until is None or i.end <= until[i.to_broker]]
        parsed = {
            side: max((i.end for i in kept if i.to_broker == side), default=0)
            for side in (True, False)
        }
        unnamed = sum(until.values()) - sum(parsed.values()) if until is not None else 0
        totals: dict[str, int] = {}
        for item in kept:
            key = item.what.split(" (")[0]
            totals[key] = totals.get(key, 0) + item.bytes
        return {
            "tls_version": self.version,
            "cipher": self.suite,
            "resumed": self.resumed,
            "decrypted": self.decrypted,
            "truncated": self.truncated if until is None else unnamed > 0,
            "unnamed_bytes": unnamed,
            "bytes": sum(i.bytes for i in kept),
            "by_kind": dict(sorted(totals.items(), key=lambda kv: -kv[1])),
            "items": [i.json() for i in kept],
        }


def breakdown(up: bytes, down: bytes, keylog: dict[bytes, dict[str, bytes]]) -> Breakdown:
    """Name every byte of a connection's first `up` (to the broker) and `down` bytes."""
    ups, trunc_up = records(up, True)
    downs, trunc_down = records(down, False)
    state = _Tls(keylog)
    items: list[Item] = []
    # each side's hello first: the keys of both sides' protected records come from both
    for record in [*ups[:1], *downs[:1], *ups[1:], *downs[1:]]:
        items += state.record(record)
    return Breakdown(
        items=items,
        version=state.version,
        suite=SUITE_NAMES.get(state.suite, hex(state.suite)) if state.suite else None,
        resumed=state.resumed,
        truncated=trunc_up or trunc_down or state.broken,
        decrypted=state.decrypted,
    )


class _Tls:
    """What the records of one connection are, keys found as the hellos go by. The client's
    records are all handled before the server's, so the server's hello is looked ahead for."""

    def __init__(self, keylog: dict[bytes, dict[str, bytes]]) -> None:
        self.keylog = keylog
        self.client: Hello | None = None
        self.server: Hello | None = None
        self.version: str | None = None
        self.suite: int | None = None
        self.resumed: bool | None = None
        self.keys: dict[bool, Keys | None] = {True: None, False: None}
        self.phase: dict[bool, str] = {True: "clear", False: "clear"}
        self.plain: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
        self.broken = False
        self.decrypted = False
        self.pending_server: list[Record] = []

    def record(self, record: Record) -> list[Item]:
        side = record.to_broker
        end = record.at + record.wire
        try:
            if record.type == CHANGE_CIPHER_SPEC:
                if self.version == "1.2" and self.phase[side] == "clear":
                    self.phase[side] = "app"
                    self.keys[side] = self._keys12(side)
                return [Item(side, "ChangeCipherSpec", record.wire, end)]
            if record.type == HANDSHAKE and self.phase[side] == "clear":
                return self._clear_handshake(record, end)
            return self._protected(record, end)
        except (Malformed, IndexError) as exc:
            self.broken = True
            what = f"{RECORD_TYPES[record.type]} (unreadable: {exc})"
            return [Item(side, what, record.wire, end)]

    def _clear_handshake(self, record: Record, end: int) -> list[Item]:
        out = []
        for kind, message in handshake_messages(record.body):
            name = HANDSHAKE_TYPES.get(kind, f"handshake_{kind}")
            parts: dict[str, int] = {}
            if kind in (1, 2):
                hello = parse_hello(message)
                parts = {"record_header": 5, "message_header": 4}
                parts["random_version_session_id"] = 2 + 32 + 1 + hello.session_id
                if kind == 1:
                    self.client = hello
                    parts["cipher_suites"] = 2 + 2 * len(hello.suites)
                    parts["compression"] = 2
                else:
                    self.server = hello
                    self.version = hello.version
                    self.suite = hello.suites[0]
                    parts["cipher_suite_compression"] = 3
                    self._derive()
                parts["extensions_length"] = 2 if hello.extensions else 0
                parts.update({f"ext.{k}": v for k, v in hello.extensions.items()})
                if kind == 2:
                    self.resumed = self._resumed(hello)
            out.append(Item(record.to_broker, name, len(message), end, parts))
        if out:
            out[0].bytes += 5  # the record header, once per record
        return out

    def _resumed(self, server: Hello) -> bool:
        """1.3: the server took our pre-shared key; 1.2: it echoed our session id."""
        if server.version == "1.3":
            return "pre_shared_key" in server.extensions
        client = self.client
        return bool(client and client.session_id and server.random and server.session_id) and (
            client is not None and server.session_id == client.session_id
        )

    def _derive(self) -> None:
        """Handshake keys (1.3) once both hellos are known; 1.2 keys come at each CCS."""
        if self.client is None or self.server is None or self.suite not in SUITES:
            return
        secrets = self.keylog.get(bytes(self.client.random))
        if not secrets or self.version != "1.3":
            return
        self.keys[True] = self._keys13(secrets.get("CLIENT_HANDSHAKE_TRAFFIC_SECRET"))
        self.keys[False] = self._keys13(secrets.get("SERVER_HANDSHAKE_TRAFFIC_SECRET"))
        self.phase = {True: "handshake", False: "handshake"}

    def _keys13(self, secret: bytes | None) -> Keys | None:
        if secret is None or self.suite is None:
            return None
        aead, size, algorithm = SUITES[self.suite]
        key = hkdf_label(secret, "key", size, algorithm)
        iv = hkdf_label(secret, "iv", 12, algorithm)
        return Keys(aead, key, iv, tls12=False)

    def _keys12(self, side: bool) -> Keys | None:
        if self.client is None or self.server is None or self.suite not in SUITES:
            return None
        master = self.keylog.get(bytes(self.client.random), {}).get("CLIENT_RANDOM")
        if master is None:
            return None
        aead, size, algorithm = SUITES[self.suite]
        iv_size = 4 if aead == "aes-gcm" else 12
        block = prf12(
            master,
            b"key expansion",
            bytes(self.server.random) + bytes(self.client.random),
            2 * size + 2 * iv_size,
            algorithm,
        )
        key = block[:size] if side else block[size : 2 * size]
        iv_at = 2 * size + (0 if side else iv_size)
        return Keys(aead, key, block[iv_at : iv_at + iv_size], tls12=True)

    def _protected(self, record: Record, end: int) -> list[Item]:
        side = record.to_broker
        keys = self.keys[side]
        if keys is None:
            what = "ApplicationData" if record.type == APPLICATION_DATA else "encrypted"
            return [Item(side, f"{what} (no keys)", record.wire, end)]
        inner, plain = keys.open(record)
        self.decrypted = True
        overhead = record.wire - len(plain)
        if inner == HANDSHAKE:
            out = []
            finished = False
            for kind, message in handshake_messages(plain):
                name = HANDSHAKE_TYPES.get(kind, f"handshake_{kind}")
                finished |= kind == 20
                out.append(Item(side, name, len(message), end))
            if not out:
                raise Malformed("an empty handshake record")
            out[0].bytes += overhead
            out[0].parts = {"tls_record_overhead": overhead}
            if finished and self.version == "1.3" and self.phase[side] == "handshake":
                secrets = self.keylog.get(bytes(self.client.random)) if self.client else None
                label = "CLIENT_TRAFFIC_SECRET_0" if side else "SERVER_TRAFFIC_SECRET_0"
                self.keys[side] = self._keys13((secrets or {}).get(label))
                self.phase[side] = "app"
            return out
        if inner == APPLICATION_DATA:
            return self._mqtt(side, plain, overhead, end)
        return [Item(side, RECORD_TYPES.get(inner, f"inner_{inner}"), record.wire, end)]

    def _mqtt(self, side: bool, plain: bytes, overhead: int, end: int) -> list[Item]:
        """The MQTT packets that end in this record, each with all its bytes (a packet may
        begin in an earlier record); the record's overhead goes to the first of them. A
        record where no packet ends is its overhead alone."""
        buf = self.plain[side]  # what is left of the stream after its last whole packet
        buf += plain
        out = []
        consumed = 0
        for first, last, name, parts in mqtt_stream(bytes(buf), v5=True):
            out.append(Item(side, name, last - first, end, parts))
            consumed = last
        del buf[:consumed]
        if out:
            out[0].bytes += overhead
            out[0].parts["tls_record_overhead"] = overhead
        else:
            out.append(Item(side, "TLS record (an MQTT packet continues)", overhead, end))
        return out
