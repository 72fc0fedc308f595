"""`edgectl lists sign` and `edgectl card-ref`: what dispatch needs to feed nodes' access lists.

Dispatch keeps the fleet secret and the list-signing key; these two commands are the
reference implementation of card_ref and of the list signature, for a dispatch written in
any language to check itself against.
"""

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from core.errors import EdgedError
from drivers.nfc.uid import parse_uid
from edged.access.cardref import CardRefs, random_uid
from edged.access.lists import LIST_BYTES, AccessDelta, AccessLists, sign_lists
from edged.security.signing import load_private_key


class AccessToolError(EdgedError):
    pass


ENVELOPE_BYTES = 1024
"""Room left in an `access.update` for the command around the arguments (`id`, `ts`, `sig`,
`kid`: ~250 bytes as `edgectl cmd` writes them, with the longest key id)."""


def add_parsers(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    lists = sub.add_parser("lists", help="access lists for access.update")
    lists_sub = lists.add_subparsers(dest="lists_command", required=True)
    sign = lists_sub.add_parser(
        "sign",
        help="check a lists JSON file and print the access.update arguments, signed",
    )
    sign.add_argument("file", type=Path, metavar="LISTS.json", help="a full list or a delta")
    sign.add_argument("--key", type=Path, required=True, metavar="FILE", help="list-signing key")
    sign.add_argument(
        "--valid-days",
        type=float,
        metavar="DAYS",
        help="sign issued (now) and expires (now + DAYS) into the lists: past it a node "
        "flags its taps and applies expired_lists (docs/topics.md, How long the lists hold)",
    )
    ref = sub.add_parser(
        "card-ref",
        help="the card_ref a node computes for a card UID (not for a random ID: 4 bytes from 08)",
    )
    ref.add_argument("uid", metavar="UID_HEX", help="the card's UID in hex, e.g. 04a1b2c3d4e5f6")
    ref.add_argument("--secret-file", type=Path, required=True, metavar="FILE")
    ref.add_argument("--bytes", type=int, default=16, help="card_ref_bytes of the nodes (16)")


MAX_VALID_DAYS = 3650.0


def sign_file(
    path: Path, key_path: Path, valid_days: float | None = None, now: datetime | None = None
) -> str:
    """The `access.update` arguments for the lists in `path`, signed; `valid_days`: with
    `issued` and `expires` set from `now` (default the clock of this machine)."""
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise AccessToolError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise AccessToolError(f"{path} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise AccessToolError(f"{path} must hold a JSON object (a full list or a delta)")
    if valid_days is not None:
        if not 0 < valid_days <= MAX_VALID_DAYS:
            raise AccessToolError(f"--valid-days must be above 0 and at most {MAX_VALID_DAYS:g}")
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        document["issued"] = issued.isoformat()
        document["expires"] = (issued + timedelta(days=valid_days)).isoformat()
    model = AccessDelta if document.get("kind") == "delta" else AccessLists
    try:
        model.model_validate(document)
    except ValidationError as exc:
        raise AccessToolError(f"{path} is not a valid list:\n{exc}") from None
    key = load_private_key(key_path)
    args = {"lists": document, "sig": sign_lists(key, document)}
    text = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    # measured as `edgectl cmd` sends it (non-ASCII as \uXXXX): never less than the text
    size = len(json.dumps(args, separators=(",", ":")))
    if size + ENVELOPE_BYTES > LIST_BYTES:
        # the list is valid, but every node would refuse the command `too_large`
        raise AccessToolError(
            f"{path} signed is {size} bytes: a node takes an access.update of at most "
            f"{LIST_BYTES} bytes with the command around it. Send the change as a delta, or a "
            "smaller full list (the deny list first) and the rest as deltas on it"
        )
    return text


def card_ref(uid_hex: str, secret_file: Path, nbytes: int) -> str:
    try:
        uid = parse_uid(uid_hex)  # the reader drivers' rule: hex, 4, 7 or 10 bytes
    except ValueError as exc:
        raise AccessToolError(str(exc)) from None
    if random_uid(uid):
        raise AccessToolError(
            f"{uid.hex().upper()} is a random ID, not a card's UID: a 4-byte UID that begins "
            "with 08 is drawn anew each time the chip meets a reader (ISO/IEC 14443-3; a "
            "phone, a privacy card). Its card_ref would never match the same card again, and "
            "nodes refuse such taps (reason random_uid): read the card's fixed UID instead"
        )
    if not 8 <= nbytes <= 32:
        raise AccessToolError("--bytes must be from 8 to 32, as the nodes' card_ref_bytes")
    return CardRefs.from_file(secret_file, nbytes)(uid)


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "lists":
            print(sign_file(args.file, args.key, args.valid_days))
        else:
            print(card_ref(args.uid, args.secret_file, args.bytes))
    except EdgedError as exc:
        print(f"edgectl: {exc}", file=sys.stderr)
        return 2
    return 0
