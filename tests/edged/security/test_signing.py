"""Keys in a config are checked without cryptography, and so are signatures (OpenSSL checks
them: edged.security.ed25519); a key of the wrong shape is still refused at config time."""

import base64
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from edged.config.security import KeyConfig
from edged.security.signing import (
    public_key_from_text,
    public_key_text,
    sign,
    signed_message,
    verify,
)
from tests.helpers.nodes import ROOT

CHILD = """
import sys
from edged.clock import Clock
from edged.config.security import KeyConfig, SecurityConfig
from edged.commands.authorize import Authorizer
from edged.security.signing import signed_message, verify

public, sig = sys.argv[1], sys.argv[2]
config = SecurityConfig(keys=[KeyConfig(id="dispatch", public_key=public, scopes=["door"])])
auth = Authorizer(config, Clock(), get_state=lambda k, d: d, set_state=lambda k, v: None)
before = "cryptography" in sys.modules
ok = verify(auth.keys["dispatch"][0], sig, signed_message("t", "1", 0, {}))
print(before, ok, "cryptography" in sys.modules)
"""


def test_a_node_checks_a_signature_without_loading_cryptography() -> None:
    key = Ed25519PrivateKey.generate()
    public = public_key_text(key.public_key())
    sig = sign(key, "t", "1", 0, {})
    done = subprocess.run(
        [sys.executable, "-c", CHILD, public, sig],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert done.stdout.split() == ["False", "True", "False"]


def test_a_signature_by_another_key_does_not_verify() -> None:
    ours, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    key = public_key_from_text(public_key_text(ours.public_key()))
    message = signed_message("t", "1", 0, {})
    assert verify(key, sign(ours, "t", "1", 0, {}), message)
    assert not verify(key, sign(theirs, "t", "1", 0, {}), message)
    assert not verify(key, "not base64!", message)


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(bytes(31)).decode(),  # a byte short
        base64.b64encode(bytes(33)).decode(),  # a byte over
        "not-base64-at-all",
        "",
    ],
)
def test_a_key_of_the_wrong_shape_is_refused_in_the_config(text: str) -> None:
    with pytest.raises(ValidationError, match="not an Ed25519 public key"):
        KeyConfig(id="dispatch", public_key=text, scopes=["door"])
