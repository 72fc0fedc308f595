"""A config's Ed25519 key must be a point of the curve not of small order
(edged.security.keycheck): such a key verifies a forged signature of any message."""

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edged.config.security import KeyConfig
from edged.security import ed25519, keycheck
from tests.edged.security.test_ed25519 import RFC8032, raw_public

SODIUM_BLOCKLIST = [  # libsodium's ge25519_has_small_order, compared without the sign bit
    "0000000000000000000000000000000000000000000000000000000000000000",  # 0 (order 4)
    "0100000000000000000000000000000000000000000000000000000000000000",  # 1 (order 1)
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p - 1 (order 2)
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p (= 0)
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p + 1 (= 1)
]
"""Taken from libsodium (src/libsodium/crypto_core/ed25519/ref10/ref10.c), an independent
source for what the arithmetic here derives."""


def with_sign(hex_key: str, sign: int) -> bytes:
    raw = bytearray(bytes.fromhex(hex_key))
    raw[31] = (raw[31] & 0x7F) | (sign << 7)
    return bytes(raw)


IDENTITY = bytes.fromhex(SODIUM_BLOCKLIST[1])


def test_a_small_order_key_verifies_a_forged_signature_in_openssl() -> None:
    """Why the check exists: with the identity as the key, R = identity and S = 0 is a
    signature of every message; no private key is needed."""
    forged = IDENTITY + bytes(32)
    for message in (b"door.unlock", b'{"allow":["*"]}', b""):
        assert ed25519.verify(IDENTITY, forged, message)


@pytest.mark.parametrize("sign", [0, 1])
@pytest.mark.parametrize("entry", SODIUM_BLOCKLIST)
def test_every_key_on_libsodiums_small_order_list_is_refused(entry: str, sign: int) -> None:
    assert keycheck.problem(with_sign(entry, sign)) is not None


def test_the_eight_small_order_points_decode_and_are_refused_for_their_order() -> None:
    """The eight canonical encodings of the points whose order divides 8 are points (not
    refused for their bytes) and are refused for their order; the four of order 8 are
    not yet the identity after two doublings, so three are needed."""
    torsion = [with_sign(SODIUM_BLOCKLIST[i], s) for i in (0, 2, 3) for s in (0, 1)]
    torsion += [with_sign(SODIUM_BLOCKLIST[1], 0), with_sign(SODIUM_BLOCKLIST[4], 0)]
    for raw in torsion:
        assert keycheck.decode(raw) is not None, raw.hex()
        assert keycheck.problem(raw) == (
            "it is a point of small order, which verifies forged signatures"
        )
    for raw in torsion[2:6]:  # order 8
        point = keycheck.decode(raw)
        assert point is not None
        assert not keycheck.is_identity(keycheck.double(keycheck.double(point)))


@pytest.mark.parametrize(("public", "message", "signature"), RFC8032)
def test_the_rfcs_example_keys_are_accepted(public: str, message: str, signature: str) -> None:
    assert keycheck.problem(bytes.fromhex(public)) is None


@settings(max_examples=200, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_every_generated_key_is_accepted(seed: bytes) -> None:
    assert keycheck.problem(raw_public(Ed25519PrivateKey.from_private_bytes(seed))) is None


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=0, max_size=40))
def test_any_bytes_get_a_verdict_never_a_crash(raw: bytes) -> None:
    verdict = keycheck.problem(raw)
    assert verdict is None or verdict.startswith("it is ")
    if len(raw) != 32:
        assert verdict == "it is not a point of the Ed25519 curve"


@pytest.mark.parametrize("entry", [SODIUM_BLOCKLIST[1], SODIUM_BLOCKLIST[0]])
def test_a_config_with_a_small_order_key_is_refused_saying_why(entry: str) -> None:
    text = base64.b64encode(bytes.fromhex(entry)).decode()
    with pytest.raises(ValidationError, match="small order"):
        KeyConfig(id="dispatch", public_key=text, scopes=["door"])


def test_a_config_with_bytes_that_are_no_point_is_refused_saying_why() -> None:
    text = base64.b64encode(b"\xff" * 32).decode()
    with pytest.raises(ValidationError, match="not a point of the Ed25519 curve"):
        KeyConfig(id="dispatch", public_key=text, scopes=["door"])
