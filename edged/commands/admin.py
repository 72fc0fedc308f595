"""Ops commands: `config.get`, `config.set`, `diag.dump`, `restart`; and the probation of a
config pushed by `config.set`."""

import asyncio
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from edged.commands.args import only
from edged.commands.lifecycle import Lifecycle
from edged.commands.spec import MAX_COMMAND_BYTES, SIGNED_SCOPES, CommandSpec
from edged.config.loader import check_depth, config_hash, parse_config
from edged.config.models import EdgedConfig
from edged.config.probation import Probation
from edged.config.security import ALWAYS_SIGNED
from edged.diag import versions
from edged.errors import CommandError

CONFIG_SET_MAX_BYTES = MAX_COMMAND_BYTES
"""A config.set's command at most (refused `too_large`, unread, above): the fleet's largest
config (config/shuttle.toml) is 12 KB with its comments, 3 KB as JSON without them. Within
it, a hostile config is refused in a worker thread, its first problems told."""


class Admin:
    def __init__(self, life: Lifecycle) -> None:
        self.life = life
        self.applying: str | None = None
        """The hash of the config a config.set of this node wrote (the node restarting with
        it): one more would keep that one, never run, as `.previous`."""

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec("config.get", self.config_get, scope="read"),
            CommandSpec(
                "config.set", self.config_set, scope="config", max_bytes=CONFIG_SET_MAX_BYTES
            ),
            CommandSpec("diag.dump", self.diag_dump, scope="read"),
            CommandSpec("restart", self.restart, scope="config"),
        ]

    async def config_get(self, args: dict[str, Any]) -> dict[str, Any]:
        only("config.get", args)
        # no nulls: TOML has none, so a key left unset is left out, and the `config` given
        # here goes back through config.set as it is (the hash is the running one's)
        config = self.life.config.model_dump(mode="json", exclude_none=True)
        return {"config": config, "hash": self.life.config_hash}

    async def config_set(self, args: dict[str, Any]) -> dict[str, Any]:
        """Validate with the file's own models, write it on probation, restart with it."""
        path = self.life.config_path
        if path is None:
            raise CommandError("not_supported", "this node was not started from a config file")
        new = args.get("config")
        if set(args) != {"config"} or not isinstance(new, dict):
            raise CommandError("bad_args", 'config.set takes {"config": {...the whole config...}}')
        if self.applying is not None:
            raise CommandError(
                "busy",
                f"the node is restarting with the config {self.applying} of a config.set: send "
                "a new config.set once it is back (its birth): this one would have kept that "
                "config, never run, as the one to roll back to",
            )
        # in a worker thread: 64 KiB of hostile config takes a few hundred ms to refuse
        # here (x5 on a Pi Zero 2 W), in which taps would wait on the loop
        text, config = await asyncio.to_thread(_validated, new, path)
        if _locks_config_out(config):
            raise CommandError(
                "bad_config",
                "no [[security.keys]] would hold the scope config while config.set is signed: "
                "no config.set could ever be taken again (a technician's trip to undo); keep "
                "a key with scope config (config.set unsigned would be anyone's the broker "
                "lets write cmd/#, with every secret of the node)",
            )
        from edged.config import pushed  # a config.set's only (#19: not at rest)

        # files looked at (a place probed, a left outbox read): a slow card off the loop
        found = await asyncio.to_thread(pushed.problems, self.life.config, config, path)
        if (granted := _granted_beyond(self.life.config, config, SIGNED_SCOPES.get())) is not None:
            raise CommandError("forbidden", granted)
        if found:
            raise CommandError("bad_config", "; ".join(found)[:1000])
        try:
            await asyncio.to_thread(Probation(path).begin, text)
        except OSError as exc:  # a full card, a read-only one, EIO
            raise CommandError(
                "not_written",
                f"the config cannot be written beside {path.name} ({exc.strerror or exc}): "
                "the running config is kept, on no probation; free room on the card, then "
                "send it again",
            ) from None
        self.applying = config_hash(config)
        self.life.request_restart(after_reply=True)
        return {
            "hash": self.applying,
            "previous_hash": self.life.config_hash,
            "rollback_after_s": config.remote.rollback_after_s,
        }

    async def diag_dump(self, args: dict[str, Any]) -> dict[str, Any]:
        only("diag.dump", args)
        health = await self.life.health()
        return {
            "versions": versions(),
            "log": self.life.recent_log()[-100:],
            "counters": self.life.counters.snapshot(),
            "health": health.to_json_dict(),
        }

    async def restart(self, args: dict[str, Any]) -> dict[str, Any]:
        only("restart", args)
        self.life.request_restart(after_reply=True)
        return {"restarting": True}


def _validated(new: dict[str, Any], path: Path) -> tuple[str, EdgedConfig]:
    """`new` as the TOML text to write, and the config it makes, read with the file's own
    models; CommandError `bad_config` with the problems."""
    try:
        check_depth(new, "config.set")  # before tomli_w, which recurses
        if (null := _first_null(new)) is not None:
            why = f"{null} is null: leave the key out (TOML has no null)"
            raise CommandError("bad_config", why)
        import tomli_w  # a config.set's only: not loaded by a node at rest

        text = tomli_w.dumps(new)
        base_dir = path.absolute().parent
        # the reply tells 1000 characters of them: some ten problems
        config = parse_config(text, source="config.set", base_dir=base_dir, max_problems=12)
    except ConfigError as exc:
        raise CommandError("bad_config", "; ".join(exc.problems)[:1000]) from None
    except (TypeError, ValueError) as exc:  # not representable as TOML (nulls…)
        raise CommandError("bad_config", f"cannot be written as TOML: {exc}") from None
    return text, config


def _locks_config_out(config: EdgedConfig) -> bool:
    """A config that reaches the broker but refuses every config.set: the probation commits
    it (it connected), and nothing remote can undo it."""
    security = config.security
    # as the Authorizer holds them: one key per id, the last of that id
    scopes = {key.id: key.scopes for key in security.keys}
    return "config.set" in security.signed_commands and not any(
        "config" in held for held in scopes.values()
    )


BEYOND_CONFIG: frozenset[str] = frozenset(ALWAYS_SIGNED)
"""Scopes the scope `config` cannot reach otherwise (it can make any other command
unsigned): a config.set gives them to a key only when signed by a key holding them."""


def _granted_beyond(
    running: EdgedConfig, new: EdgedConfig, signer: frozenset[str] | None
) -> str | None:
    """Why `new` gives a key a scope the config.set's own key lacks (`update`: the node's
    code), or None. A key keeps what it held in the running config (same id and public key)."""
    held = {k.id: (k.public_key, set(k.scopes)) for k in running.security.keys}
    for key in {k.id: k for k in new.security.keys}.values():  # one per id, the last
        before = held.get(key.id)
        kept = before[1] if before is not None and before[0] == key.public_key else set()
        beyond = sorted((set(key.scopes) - kept) & BEYOND_CONFIG - (signer or frozenset()))
        if beyond:
            return (
                f"security.keys: key {key.id!r} would be given the scope "
                f"{', '.join(beyond)}, which the key that signed this config.set does not "
                "hold (the scope config is not the node's code): sign it with a key that "
                "holds it too"
            )
    return None


def _first_null(value: Any, path: str = "") -> str | None:
    """The key path of the first null in `value` (`broker.tls`, `drivers[0].options.x`)."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key
        if item is None:
            return where
        if isinstance(item, dict | list) and (found := _first_null(item, where)) is not None:
            return found
    return None


async def probation_watch(life: Lifecycle) -> None:
    """Commit a config on probation once connected with commands heard (the next config.set
    can reach the node); otherwise roll back and restart."""
    assert life.config_path is not None
    probation = Probation(life.config_path)
    left = probation.remaining_s(life.config.remote.rollback_after_s)
    ours = probation.token()  # after remaining_s, which may write the marker again
    deadline = asyncio.get_running_loop().time() + left
    while asyncio.get_running_loop().time() < deadline:
        # a config.set taken meanwhile (queued at the broker, handed over as the node came
        # back) began its own probation: the running config reached the broker, and the new
        # one is decided by the next start, not committed here for the one that ran
        if probation.token() != ours:
            return
        if life.hears_commands:  # online and deaf (the broker's ACL) is no way back
            probation.commit()
            return
        await asyncio.sleep(0.2)
    if probation.token() != ours:
        return
    probation.rollback()
    life.counters.inc("config.rolled_back")
    life.request_restart(after_reply=False)
