"""Access for the demo: a throw-away fleet secret and list key, and lists for the sim cards.

A node in the field gets its secret from the installer and its lists from dispatch; the
demo makes both up at start so that the simulated reader's taps are decided for real:
the first cards board with their profile's fare, one is a lost card, one is unknown.
"""

import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.nfc.uid import parse_uid
from edged.access.cardref import CardRefs
from edged.access.lists import sign_lists
from edged.config.models import EdgedConfig
from edged.security.signing import public_key_text

PROFILES = ("resident", "senior", "jobseeker", "resident", "senior")
FARES = {"resident": 150, "senior": 0, "jobseeker": 50}


def sim_cards(config: EdgedConfig) -> list[bytes]:
    cards: list[bytes] = []
    for d in config.drivers:
        if d.driver == "nfc.sim" and d.enabled:
            cards += [parse_uid(c) for c in d.options.get("cards", ())]
            cards += [parse_uid(t["uid"]) for t in d.options.get("taps", ())]
    return list(dict.fromkeys(cards))


def demo_access(config: EdgedConfig, workdir: Path) -> tuple[EdgedConfig, dict[str, Any] | None]:
    """The config with access on, and the signed `access.update` arguments to load."""
    cards = sim_cards(config)
    if not cards:
        return config, None
    secret = workdir / "fleet.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32).hex().encode())
    key = Ed25519PrivateKey.generate()
    access = config.services.access.model_copy(
        update={
            "enabled": True,
            "secret_file": secret,
            "lists_public_key": public_key_text(key.public_key()),
        }
    )
    refs = CardRefs.from_file(secret, access.card_ref_bytes)
    listed, lost = cards[:-2] or cards, cards[-2:-1]  # the last card stays unknown
    document = {
        "kind": "full",
        "fleet": config.node.fleet,
        "version": 1,
        "cards": {
            refs(uid): {"profile": PROFILES[i % len(PROFILES)]} for i, uid in enumerate(listed)
        },
        "deny": {refs(uid): {"reason": "lost"} for uid in lost},
        "fares": FARES,
    }
    services = config.services.model_copy(update={"access": access})
    return config.model_copy(update={"services": services}), {
        "lists": document,
        "sig": sign_lists(key, document),
    }
