"""Signed lists, secrets and configs for the access tests."""

import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.access.cardref import CardRefs
from edged.access.freshness import ListsAge
from edged.access.lasttrusted import LastTrustedTime
from edged.access.lists import sign_lists
from edged.clock import Clock, ClockSource
from edged.config.access import AccessServiceConfig
from edged.security.signing import public_key_text
from edged.services.access import AccessService
from tests.helpers.host import TestHost

SECRET = b"fleet-secret-for-tests-0123456789"
FLEET = "creuse"
KEY = Ed25519PrivateKey.generate()
PUBLIC = public_key_text(KEY.public_key())
REFS = CardRefs(SECRET, 16)

UID_RESIDENT = bytes.fromhex("04a1b2c3")
UID_SENIOR = bytes.fromhex("04112233445566")
UID_STAFF = bytes.fromhex("0811223344556677889a")
UID_PROVIDER = bytes.fromhex("04998877")
UID_LOST = bytes.fromhex("04deadbe")
UID_UNKNOWN = bytes.fromhex("04000001")
UID_BOOKED = bytes.fromhex("04b00c3d")
UID_PHONE = bytes.fromhex("08a1b2c3")  # ISO 14443-3: single size, UID0 = 08h: a random ID
UID_PHONE_AGAIN = bytes.fromhex("085e11f0")  # the same phone presented again: a new one


def secret_file(tmp: Path) -> Path:
    path = tmp / "fleet.secret"
    path.write_bytes(SECRET)
    os.chmod(path, 0o600)
    return path


def config(tmp: Path, **extra: Any) -> AccessServiceConfig:
    return AccessServiceConfig.model_validate(
        {
            "enabled": True,
            "secret_file": str(secret_file(tmp)),
            "lists_public_key": PUBLIC,
            **extra,
        }
    )


def full_lists(version: int = 1, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "kind": "full",
        "fleet": FLEET,
        "version": version,
        "cards": {
            REFS(UID_RESIDENT): {"profile": "resident", "valid_until": "2099-12-31"},
            REFS(UID_SENIOR): {"profile": "senior"},
            REFS(UID_STAFF): {"profile": "staff"},
            REFS(UID_PROVIDER): {"profile": "provider"},
            REFS(UID_LOST): {"profile": "resident"},
            REFS(UID_BOOKED): {"profile": "jobseeker"},
        },
        "deny": {REFS(UID_LOST): {"reason": "lost"}},
        "bookings": {},
        "fares": {"resident": 150, "senior": 0, "jobseeker": 50},
    }
    doc.update(changes)
    return doc


def signed(doc: dict[str, Any], key: Ed25519PrivateKey = KEY) -> dict[str, Any]:
    return {"lists": doc, "sig": sign_lists(key, doc)}


class SetClock(Clock):
    """A node clock the test sets: UTC ms and whether it is trusted (NTP, or GPS) or not."""

    def __init__(self, ms: int, trusted: bool = True) -> None:
        super().__init__(trust_system_clock=True)
        self.ms = ms
        self.trusted = trusted
        self.kind = ClockSource.NTP  # what a trusted reading comes from (NTP or GPS)

    def now(self) -> tuple[int, ClockSource]:
        return self.ms, self.kind if self.trusted else ClockSource.UNSYNCED

    @property
    def source(self) -> ClockSource:
        return self.now()[1]

    def at(self, when: datetime) -> None:
        self.ms = int(when.timestamp() * 1000)


def host(profile: str = "shuttle", *, clock: Clock | None = None, **kw: Any) -> TestHost:
    """A host for the access service: a node of `profile` in the fleet the lists are for."""
    return TestHost(profile=profile, fleet=FLEET, clock=clock, **kw)


def service_on(
    node: TestHost,
    tmp: Path,
    *,
    boot: str = "boot-1",
    monotonic: Callable[[], float] = time.monotonic,
    **kw: Any,
) -> AccessService:
    """The access service on `node`, its last trusted time on `node`'s state and clock;
    `kw` goes to its config."""
    return AccessService(
        node,
        config(tmp, **kw),
        last_trusted=LastTrustedTime(
            node.clock, node.state.get, node.state.set, boot=boot, monotonic=monotonic
        ),
        lists_age=ListsAge(node.state.get, node.state.set, boot=boot, monotonic=monotonic),
    )
