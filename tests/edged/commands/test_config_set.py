"""`config.set` (edged/commands/admin.py) refuses what no later config.set could undo."""

import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.commands.admin import Admin
from edged.config import load_config
from edged.config.probation import Probation
from edged.errors import CommandError
from edged.security.signing import public_key_text
from tests.helpers.nodes import write_config


def _node(tmp_path: Path) -> tuple[Admin, dict[str, Any], list[bool]]:
    key = public_key_text(Ed25519PrivateKey.generate().public_key())
    path = write_config(
        tmp_path,
        1883,
        gps=False,
        extra=f"""
[[security.keys]]
id = "ops"
public_key = "{key}"
scopes = ["read", "config"]
""",
    )
    restarts: list[bool] = []
    life = SimpleNamespace(
        config=load_config(path),
        config_path=path,
        config_hash="h",
        request_restart=lambda *, after_reply: restarts.append(after_reply),
    )
    return Admin(life), tomllib.loads(path.read_text()), restarts  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda s: s.update(keys=[]), id="keys-removed"),
        pytest.param(lambda s: s["keys"][0].update(scopes=["read"]), id="scope-removed"),
        # the node keeps one key per id, the last: the first's scope config is gone
        pytest.param(
            lambda s: s["keys"].append({**s["keys"][0], "scopes": ["read"]}),
            id="config-key-shadowed-by-a-later-key-of-its-id",
        ),
    ],
)
async def test_a_config_set_that_leaves_no_key_for_config_set_is_refused(
    tmp_path: Path, change: Any
) -> None:
    """Such a config reaches the broker, so its probation commits it, and every later
    config.set is refused `forbidden`/`bad_signature`: ops locked out for good, a
    technician's trip to each vehicle."""
    admin, new, restarts = _node(tmp_path)
    change(new["security"])
    before = admin.life.config_path.read_text()  # type: ignore[union-attr]
    with pytest.raises(CommandError) as refused:
        await admin.config_set({"config": new})
    assert refused.value.code == "bad_config" and "scope config" in str(refused.value)
    # never steered to the way out that opens config.set to anyone on the broker
    assert "out of signed_commands" not in str(refused.value)
    assert admin.life.config_path.read_text() == before  # type: ignore[union-attr]
    assert not Probation(admin.life.config_path).active  # type: ignore[arg-type]
    assert restarts == []


async def test_a_config_set_that_rotates_the_config_key_is_taken(tmp_path: Path) -> None:
    admin, new, restarts = _node(tmp_path)
    new["security"]["keys"] = [
        {
            "id": "ops-2027",
            "public_key": public_key_text(Ed25519PrivateKey.generate().public_key()),
            "scopes": ["config"],
        }
    ]
    await admin.config_set({"config": new})
    assert Probation(admin.life.config_path).active  # type: ignore[arg-type]
    assert restarts == [True]
