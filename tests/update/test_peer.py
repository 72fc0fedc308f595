"""A fleet peer on the broker: a valid certificate, allowed to publish on the node's
command topics, but not holding the release (update) key. Whatever it sends, it must not
make the node download, install, switch, cancel or go back to anything.

Real parts: the update manager's own commands (their scopes as the node declares them),
the command router and the authoriser as the node builds them, on the most permissive
config (`signed_commands = []`)."""

import json
import time
from pathlib import Path
from typing import Any

import pytest

from core.counters import Counters
from edged.clock import Clock
from edged.commands.authorize import Authorizer
from edged.commands.router import CommandRouter, IncomingCommand
from edged.config.security import KeyConfig, SecurityConfig
from edged.security.signing import public_key_text, sign
from edged.update.job import WorkDir
from edged.update.manager import UpdateManager
from tests.release.support import KEY, WEAK
from tests.update.test_manager import GOOD, manager

BASE = "rnst/v1/f/n"


def node(tmp_path: Path) -> tuple[CommandRouter, UpdateManager]:
    config = SecurityConfig(
        signed_commands=[],
        keys=[
            KeyConfig(id="release", public_key=public_key_text(KEY.public_key()),
                      scopes=["update", "read"]),
            KeyConfig(id="ops", public_key=public_key_text(WEAK.public_key()),
                      scopes=["operate", "config", "read"]),
        ],
    )  # fmt: skip
    state: dict[str, Any] = {}
    router = CommandRouter(
        Counters(),
        authorizer=Authorizer(
            config, Clock(trust_system_clock=True), get_state=state.get, set_state=state.__setitem__
        ),
    )
    m = manager(tmp_path)
    for spec in m.commands():
        router.add(spec)
    return router, m


def command(name: str, args: dict[str, Any], key: Any = None, kid: str | None = None,
            ts: int | None = None, cmd_id: str = "c1") -> bytes:  # fmt: skip
    ts = int(time.time() * 1000) if ts is None else ts
    doc: dict[str, Any] = {"id": cmd_id, "ts": ts, "args": args}
    if key is not None:
        doc["sig"] = sign(key, f"{BASE}/cmd/{name}", cmd_id, ts, args)
    if kid is not None:
        doc["kid"] = kid
    return json.dumps(doc).encode()


async def send(router: CommandRouter, name: str, payload: bytes) -> Any:
    out = await router.handle(IncomingCommand(name, payload, topic=f"{BASE}/cmd/{name}"))
    return out.reply


NOT_THE_RELEASE_KEY = [
    pytest.param({}, "unsigned", id="unsigned"),
    pytest.param({"key": WEAK, "kid": "ops"}, "forbidden", id="its own key, no update scope"),
    pytest.param({"key": WEAK, "kid": "release"}, "bad_signature", id="its key, kid of release"),
    pytest.param({"key": WEAK}, "forbidden", id="its key, no kid"),
]


@pytest.mark.parametrize(("signing", "code"), NOT_THE_RELEASE_KEY)
@pytest.mark.parametrize(
    "args",
    [GOOD, GOOD | {"version": "0.0.9", "allow_downgrade": True}],
    ids=["an update", "a downgrade"],
)
async def test_a_peer_without_the_release_key_cannot_start_an_update(
    tmp_path: Path, signing: dict[str, Any], code: str, args: dict[str, Any]
) -> None:
    router, m = node(tmp_path)
    reply = await send(router, "update.apply", command("update.apply", args, **signing))
    assert reply.error is not None and reply.error.code == code, reply
    assert m.job is None and WorkDir(tmp_path / "releases").job() is None


@pytest.mark.parametrize(("signing", "code"), NOT_THE_RELEASE_KEY)
async def test_a_peer_without_the_release_key_cannot_cancel_an_update(
    tmp_path: Path, signing: dict[str, Any], code: str
) -> None:
    """update.cancel would keep the node from ever updating (sent after each apply)."""
    router, m = node(tmp_path)
    applied = await send(router, "update.apply", command("update.apply", GOOD, KEY, "release"))
    assert applied.error is None, applied
    reply = await send(router, "update.cancel", command("update.cancel", {}, cmd_id="c2",
                                                        **signing))  # fmt: skip
    assert reply.error is not None and reply.error.code == code, reply
    assert m.job is not None and m.job.state == "downloading"
    m._cancel.set()
    if m._pipeline is not None:
        m._pipeline.cancel()


@pytest.mark.parametrize("replay", ["the same command again", "the same command, an hour old"])
async def test_a_captured_update_apply_sent_again_starts_nothing(
    tmp_path: Path, replay: str
) -> None:
    """A peer records dispatch's signed update.apply (to a release since found vulnerable,
    or cancelled since) and sends it again later: it starts nothing. The same bytes get
    the reply remembered for them (a redelivery runs once); an old one is `stale`."""
    router, m = node(tmp_path)
    ts = int(time.time() * 1000) - (3_600_000 if "hour" in replay else 0)
    payload = command("update.apply", GOOD, KEY, "release", ts=ts)
    first = None
    if "hour" not in replay:
        first = await send(router, "update.apply", payload)
        assert first.error is None, first
        await m.command_cancel({})
    before = WorkDir(tmp_path / "releases").job()
    reply = await send(router, "update.apply", payload)
    if first is not None:
        assert reply == first  # remembered, not run again
    else:
        assert reply.error is not None and reply.error.code == "stale", reply
    after = WorkDir(tmp_path / "releases").job()
    if before is None:
        assert after is None and m.job is None
    else:
        assert after is not None and (after.id, after.state) == (before.id, "failed")
