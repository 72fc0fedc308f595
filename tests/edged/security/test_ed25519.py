"""Ed25519 checked by OpenSSL (edged.security.ed25519): RFC 8032's own examples, the same
verdict as `cryptography` on anything, and no way in for a forged or bent signature."""

import subprocess
import sys

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edged.security import ed25519
from tests.helpers.nodes import ROOT

RFC8032 = [  # RFC 8032 section 7.1, TEST 1-3: (public key, message, signature)
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e"
        "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290"
        "ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]
L = 2**252 + 27742317777372353535851937790883648493
"""The order of Ed25519's base point: a signature's S must be below it (RFC 8032 5.1.7)."""


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def cryptography_says(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@pytest.mark.parametrize(("public", "message", "signature"), RFC8032)
def test_the_rfcs_examples_verify(public: str, message: str, signature: str) -> None:
    assert ed25519.verify(bytes.fromhex(public), bytes.fromhex(signature), bytes.fromhex(message))


@pytest.mark.parametrize(("public", "message", "signature"), RFC8032)
@pytest.mark.parametrize("bit", [0, 7, 255, 256, 511])
def test_one_flipped_bit_of_an_rfc_signature_does_not_verify(
    public: str, message: str, signature: str, bit: int
) -> None:
    sig = bytearray(bytes.fromhex(signature))
    sig[bit // 8] ^= 1 << (bit % 8)
    assert not ed25519.verify(bytes.fromhex(public), bytes(sig), bytes.fromhex(message))


@pytest.mark.parametrize(("public", "message", "signature"), RFC8032)
def test_an_rfc_signature_does_not_verify_another_message_or_key(
    public: str, message: str, signature: str
) -> None:
    key, sig, msg = bytes.fromhex(public), bytes.fromhex(signature), bytes.fromhex(message)
    assert not ed25519.verify(key, sig, msg + b"\x00")
    other = bytes.fromhex(RFC8032[(RFC8032.index((public, message, signature)) + 1) % 3][0])
    assert not ed25519.verify(other, sig, msg)


def test_a_signature_bent_by_adding_the_groups_order_to_s_is_refused() -> None:
    """The malleable twin of a valid signature (S + L): same R, same point, other bytes."""
    key = Ed25519PrivateKey.generate()
    message = b'{"args":{},"id":"1","topic":"t","ts":0}'
    sig = key.sign(message)
    s = int.from_bytes(sig[32:], "little") + L
    assert s < 2**256
    twin = sig[:32] + s.to_bytes(32, "little")
    assert not ed25519.verify(raw_public(key), twin, message)
    assert cryptography_says(raw_public(key), twin, message) is False


@settings(max_examples=150, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(max_size=2048),
    flip=st.integers(min_value=-1, max_value=511),
)
def test_the_verdict_is_cryptographys_for_any_key_message_and_bent_signature(
    seed: bytes, message: bytes, flip: int
) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    sig = bytearray(key.sign(message))
    if flip >= 0:
        sig[flip // 8] ^= 1 << (flip % 8)
    public = raw_public(key)
    assert ed25519.verify(public, bytes(sig), message) == cryptography_says(
        public, bytes(sig), message
    )
    assert ed25519.verify(public, bytes(sig), message) == (flip < 0)


@settings(max_examples=150, deadline=None)
@given(public=st.binary(max_size=40), signature=st.binary(max_size=80), message=st.binary())
@example(public=b"\x00" * 32, signature=b"\x00" * 64, message=b"")  # the identity point
@example(public=b"\xff" * 32, signature=b"\xff" * 64, message=b"x")  # not a point at all
@example(public=b"\x01" + b"\x00" * 31, signature=b"\x01" + b"\x00" * 63, message=b"")
def test_any_bytes_as_key_or_signature_get_cryptographys_verdict_never_a_crash(
    public: bytes, signature: bytes, message: bytes
) -> None:
    """Parity, not "never a yes": the identity point as a key with R = identity and S = 0
    verifies any message in both (RFC 8032 does not ask to refuse small-order keys). A key
    is the operator's, from the config (`edgectl keys generate`), never a sender's."""
    assert ed25519.verify(public, signature, message) is cryptography_says(
        public, signature, message
    )


def test_a_large_message_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    message = bytes(range(256)) * 8192  # 2 MiB: an update bundle's manifest is far smaller
    assert ed25519.verify(raw_public(key), key.sign(message), message)


def test_openssl_is_the_one_the_ssl_module_mapped() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ssl; from edged.security import ed25519; lib = ed25519.libcrypto(); "
            "maps = {l.split()[-1] for l in open('/proc/self/maps') if 'libcrypto.so' in l}; "
            "print(lib._name in maps, len(maps))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert done.stdout.split() == ["True", "1"]


def test_without_a_usable_openssl_the_error_says_what_to_install() -> None:
    """The one fault not produced for real: a machine without libcrypto (Python's own ssl
    module needs it, so no node has none); the search is pointed at missing files."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from edged.security import ed25519\n"
            "ed25519._linked_libcrypto = lambda: None\n"
            "ed25519.FALLBACKS = ('/nonexistent/libcrypto.so.3',)\n"
            "try:\n"
            "    ed25519.verify(b'k' * 32, b's' * 64, b'm')\n"
            "except ed25519.OpenSslError as exc:\n"
            "    print(exc)\n",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert "install the Debian package libssl3" in done.stdout
    assert "/nonexistent/libcrypto.so.3" in done.stdout


def test_config_keys_load_without_ctypes_which_waits_for_the_first_check() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from edged.config.security import KeyConfig; "
            "print('ctypes' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert done.stdout.split() == ["False"]
