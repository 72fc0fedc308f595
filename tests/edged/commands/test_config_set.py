"""`config.set` (edged/commands/admin.py) refuses what no later config.set could undo."""

import asyncio
import json
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.counters import Counters
from core.errors import ConfigError
from edged.commands.admin import CONFIG_SET_MAX_BYTES, Admin
from edged.commands.router import CommandRouter, IncomingCommand
from edged.config import load_config
from edged.config.loader import MAX_PROBLEMS, parse_config
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


def _router(admin: Admin) -> CommandRouter:
    commands = CommandRouter(Counters())
    for spec in admin.commands():
        commands.add(spec)
    return commands


async def test_a_config_set_over_its_size_cap_is_refused_too_large_unread(tmp_path: Path) -> None:
    admin, new, restarts = _node(tmp_path)
    new["node"]["name"] = "x" * CONFIG_SET_MAX_BYTES
    payload = json.dumps({"id": "big", "args": {"config": new}}).encode()
    topic = "rnst/v1/test/shuttle-07/cmd/config.set"
    out = await _router(admin).handle(IncomingCommand("config.set", payload, topic))
    assert out.reply.error is not None and out.reply.error.code == "too_large"
    assert f"limit for config.set is {CONFIG_SET_MAX_BYTES}" in out.reply.error.message
    assert out.reply.id == "big" and restarts == []


def _wrong_options(base: dict[str, Any]) -> dict[str, Any]:
    """64 KiB of drivers with unknown options: some 4,400 problems."""
    options = {f"o{j}": 1 for j in range(10)}
    drivers = [{"name": f"d{i}", "driver": "gps.sim", "options": options} for i in range(400)]
    return {**base, "drivers": drivers}


async def test_thousands_of_problems_are_refused_quickly_with_the_first_ones(
    tmp_path: Path,
) -> None:
    """Each problem's line was looked for through the whole text: 38 s of a held event
    loop for this config.set, under the size cap."""
    admin, new, _ = _node(tmp_path)
    began = time.monotonic()
    with pytest.raises(CommandError) as refused:
        await admin.config_set({"config": _wrong_options(new)})
    assert time.monotonic() - began < 2.0
    assert refused.value.code == "bad_config"
    assert str(refused.value).startswith("bad_config: drivers[0].options.route")


async def test_a_config_set_being_refused_leaves_the_event_loop_turning(tmp_path: Path) -> None:
    """Taps and doors are decided on the loop while a hostile config is read."""
    admin, new, _ = _node(tmp_path)
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    began = time.monotonic()
    with pytest.raises(CommandError):
        await admin.config_set({"config": _wrong_options(new)})
    took = time.monotonic() - began
    await asyncio.sleep(0.02)  # the ticker notes the gap a call holding the loop made
    ticker.cancel()
    assert max(gaps) < took / 2, (
        f"the loop stood still {max(gaps) * 1000:.0f} of {took * 1000:.0f} ms"
    )


def test_the_config_problems_beyond_the_first_fifty_are_counted() -> None:
    text = tomli_w.dumps(
        {
            "node": {"fleet": "f", "id": "n", "profile": "shuttle"},
            **{f"junk{i}": i for i in range(200)},
        }
    )
    with pytest.raises(ConfigError) as refused:
        parse_config(text)
    assert len(refused.value.problems) == MAX_PROBLEMS + 1
    assert refused.value.problems[-1] == "… and 150 more problem(s) like these"


_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40))
_HOSTILE = st.recursive(
    _LEAF,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=60,
)
_SECTIONS = st.sampled_from(
    ["node", "broker", "outbox", "security", "drivers", "services", "update", "wifi", "remote"]
)


@given(changes=st.dictionaries(_SECTIONS, _HOSTILE, max_size=4))
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_any_hostile_config_is_taken_or_refused_bad_config_never_a_crash(
    tmp_path: Path, changes: dict[str, Any]
) -> None:
    """Sections replaced by anything JSON can carry (nulls, NaN, nesting, odd keys): the
    node answers bad_config (or takes a config that is one), never `internal`."""
    admin, new, _ = _node(tmp_path)
    try:
        await admin.config_set({"config": {**new, **changes}})
    except CommandError as exc:
        assert exc.code in ("bad_config", "forbidden"), exc
    finally:
        Probation(admin.life.config_path).commit()  # type: ignore[arg-type]
        admin.applying = None
