"""`edgectl lists sign` and `edgectl card-ref`: the reference for dispatch."""

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edged.access.cardref import CardRefs
from edged.access.lists import parse_update
from edged.cli.ctl import main
from edged.security.signing import generate_key_file, public_key_from_text


def lists_file(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "lists.json"
    path.write_text(json.dumps(doc))
    return path


def test_signed_lists_verify_on_a_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    public = generate_key_file(tmp_path / "lists.key")
    doc = {"kind": "full", "fleet": "creuse", "version": 4, "fares": {"resident": 150}}
    assert (
        main(
            ["lists", "sign", str(lists_file(tmp_path, doc)), "--key", str(tmp_path / "lists.key")]
        )
        == 0
    )
    args = json.loads(capsys.readouterr().out)
    parsed = parse_update(args, key=public_key_from_text(public), fleet="creuse", card_ref_chars=32)
    assert parsed.version == 4


def test_an_invalid_list_is_not_signed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate_key_file(tmp_path / "lists.key")
    doc = {"kind": "full", "fleet": "creuse", "version": "four"}
    code = main(
        ["lists", "sign", str(lists_file(tmp_path, doc)), "--key", str(tmp_path / "lists.key")]
    )
    assert code == 2 and "not a valid list" in capsys.readouterr().err


def test_card_ref_matches_the_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"0123456789abcdef0123456789")
    os.chmod(secret, 0o600)
    assert main(["card-ref", "04a1b2c3d4e5f6", "--secret-file", str(secret)]) == 0
    expected = CardRefs(b"0123456789abcdef0123456789")(bytes.fromhex("04a1b2c3d4e5f6"))
    assert capsys.readouterr().out.strip() == expected


@pytest.mark.parametrize("uid", ["zz", "0102", "0102030405"])
def test_card_ref_refuses_what_is_not_a_uid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uid: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"0123456789abcdef0123456789")
    assert main(["card-ref", uid, "--secret-file", str(secret)]) == 2
    assert capsys.readouterr().err.startswith("edgectl:")


@pytest.mark.parametrize("uid", ["08a1b2c3", "08:5E:11:F0"])
def test_card_ref_refuses_a_random_id_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uid: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"0123456789abcdef0123456789")
    assert main(["card-ref", uid, "--secret-file", str(secret)]) == 2
    err = capsys.readouterr()
    assert err.out == "" and "random ID" in err.err and "14443-3" in err.err


def test_card_ref_makes_a_ref_of_a_seven_byte_uid_beginning_with_08(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"0123456789abcdef0123456789")
    assert main(["card-ref", "08a1b2c3d4e5f6", "--secret-file", str(secret)]) == 0
    expected = CardRefs(b"0123456789abcdef0123456789")(bytes.fromhex("08a1b2c3d4e5f6"))
    assert capsys.readouterr().out.strip() == expected


def test_a_list_no_node_would_take_is_not_signed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """50,000 cards with a date each: a valid list, but ~4.3 MB, over the 4 MiB a node takes
    in one access.update (refused `too_large` on every node, after dispatch sent it)."""
    generate_key_file(tmp_path / "lists.key")
    card = {"profile": "resident", "valid_until": "2026-12-31"}
    cards = {f"{i:032x}": card for i in range(50_000)}
    doc = {"kind": "full", "fleet": "creuse", "version": 4, "cards": cards}
    code = main(
        ["lists", "sign", str(lists_file(tmp_path, doc)), "--key", str(tmp_path / "lists.key")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "4194304" in err and "delta" in err


def test_a_list_signed_fits_the_access_update_edgectl_cmd_sends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lists sign` measures compact JSON; `edgectl cmd access.update @FILE` sent the same
    arguments with a space after every `:` and `,` (~5 bytes a card), so a list it signed
    near the limit was refused `too_large` by every node."""
    from edged.access.lists import LIST_BYTES
    from edged.ops.commands import make_request
    from edged.security.signing import load_private_key

    generate_key_file(tmp_path / "lists.key")
    card = {"profile": "resident", "valid_until": "2026-12-31"}
    cards = {f"{i:032x}": card for i in range(49_000)}
    doc = {"kind": "full", "fleet": "creuse", "version": 4, "cards": cards}
    key_file = tmp_path / "lists.key"
    assert main(["lists", "sign", str(lists_file(tmp_path, doc)), "--key", str(key_file)]) == 0
    args = json.loads(capsys.readouterr().out)
    base = "edged/creuse/bus-12/cmd"
    kid = "k" * 64  # the longest a [[security.keys]] id may be
    request = make_request(base, "access.update", args, key=load_private_key(key_file), kid=kid)
    assert len(request.payload) <= LIST_BYTES


def test_valid_days_signs_issued_and_expires_into_the_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public = generate_key_file(tmp_path / "lists.key")
    doc = {"kind": "full", "fleet": "creuse", "version": 4}
    path, key = str(lists_file(tmp_path, doc)), str(tmp_path / "lists.key")
    assert main(["lists", "sign", path, "--key", key, "--valid-days", "7"]) == 0
    args = json.loads(capsys.readouterr().out)
    parsed = parse_update(args, key=public_key_from_text(public), fleet="creuse", card_ref_chars=32)
    assert parsed.issued is not None and parsed.expires is not None
    assert parsed.expires - parsed.issued == timedelta(days=7)
    assert abs(parsed.issued - datetime.now(UTC)) < timedelta(minutes=1)


def test_valid_days_of_zero_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate_key_file(tmp_path / "lists.key")
    doc = {"kind": "full", "fleet": "creuse", "version": 4}
    path, key = str(lists_file(tmp_path, doc)), str(tmp_path / "lists.key")
    assert main(["lists", "sign", path, "--key", key, "--valid-days", "0"]) == 2
    assert "--valid-days" in capsys.readouterr().err
