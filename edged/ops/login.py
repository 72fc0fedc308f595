"""How a tool logs in to the fleet's broker: the URL, TLS files, username and password file.

The checks are the node's own: the options become a `BrokerConfig` (the `[broker]` model of
a node config), so a key file readable by others or a certificate without its key is refused
by the same rules, and the TLS context and password come from the uplink's functions.
"""

import re
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from core.errors import ConfigError, EdgedError
from edged.config.loader import format_errors
from edged.config.models import BrokerConfig
from edged.ops.urls import BrokerAddress
from edged.uplink.client import read_password
from edged.uplink.tls import tls_context

Protocol = Literal["5", "3.1.1"]
ProtocolChoice = Literal["auto", "5", "3.1.1"]
PROTOCOL_CHOICES: tuple[ProtocolChoice, ...] = ("auto", "5", "3.1.1")

OPTION_NAMES = {
    "tls.ca_file": "--cafile",
    "tls.cert_file": "--cert",
    "tls.key_file": "--cert-key",
    "tls": "--cafile/--cert/--cert-key",
    "password_file": "--password-file",
    "username": "--username",
    "host": "the URL's host",
    "port": "the URL's port",
}
"""`BrokerConfig` keys as the tools' options, for error messages."""


class LoginError(EdgedError):
    """The login options cannot be used; the message names the option and what to do."""


@dataclass(frozen=True)
class Login:
    """Everything needed to open a connection; `protocol="auto"` tries 5, then 3.1.1."""

    address: BrokerAddress
    protocol: ProtocolChoice = "auto"
    username: str | None = None
    password_file: Path | None = None
    cafile: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if not self.address.tls and (self.cafile or self.cert or self.key):
            raise LoginError(
                f"--cafile/--cert/--cert-key need a TLS broker URL: use mqtts://{self.address} "
                "(port 8883 by default)"
            )
        if self.password_file is not None and self.username is None:
            raise LoginError("--password-file needs --username (the broker's user name)")
        for option, path in (
            ("--cafile", self.cafile),
            ("--cert", self.cert),
            ("--cert-key", self.key),
        ):
            if path is not None and not path.is_file():
                raise LoginError(f"{option} {path}: no such file")
        self.broker_config("5")  # refuse bad files now, not at the first connection
        self.tls_context()

    @property
    def versions(self) -> tuple[Protocol, ...]:
        """The protocol versions to try, in order."""
        return ("5", "3.1.1") if self.protocol == "auto" else (self.protocol,)

    def with_protocol(self, protocol: ProtocolChoice) -> "Login":
        return replace(self, protocol=protocol)

    def broker_config(self, protocol: Protocol) -> BrokerConfig:
        """This login as a node's `[broker]` section (validated by the node's rules)."""
        raw: dict[str, object] = {
            "host": self.address.host,
            "port": self.address.port,
            "protocol": protocol,
            "username": self.username,
            "password_file": self.password_file,
        }
        if self.address.tls:
            raw["tls"] = {
                "ca_file": self.cafile or _system_ca_file(),
                "cert_file": self.cert,
                "key_file": self.key,
            }
        try:
            return BrokerConfig.model_validate(raw)
        except ValidationError as exc:
            problems = [_as_options(p) for p in format_errors(exc)]
            raise LoginError("; ".join(problems)) from None

    def tls_context(self) -> ssl.SSLContext | None:
        """The node's TLS context: the broker's certificate and name verified, ours offered."""
        if not self.address.tls:
            return None
        try:
            return tls_context(self.broker_config("5"))
        except (OSError, ssl.SSLError) as exc:
            raise LoginError(
                f"cannot load the TLS files: {exc}. --cafile, --cert and --cert-key must be PEM "
                "files, and --cert must match --cert-key (fleet-certs.sh issues them together)"
            ) from None

    def password(self) -> str | None:
        try:
            return read_password(self.broker_config("5"))
        except ConfigError as exc:
            raise LoginError(f"--password-file: {'; '.join(exc.problems)}") from None


def _system_ca_file() -> Path:
    """Without --cafile, the system's CA bundle verifies the broker (a public CA)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise LoginError(
        "no system CA bundle found to verify the broker's certificate: give the fleet CA "
        "with --cafile (DIR/ca.crt from fleet-certs.sh)"
    )


def _as_options(problem: str) -> str:
    """A `[broker]` problem as the tools' options say it: `--password-file: pw is readable…`,
    without pydantic's "Value error, " and the `(got PosixPath('pw'))` the option shows."""
    key, sep, rest = problem.partition(": ")
    if not sep:
        return problem
    rest = re.sub(r" \(got .*\)$", "", rest.removeprefix("Value error, "))
    return f"{OPTION_NAMES.get(key, key)}: {rest}"
