"""Ops commands: `config.get`, `config.set`, `diag.dump`, `restart`, `mode.set`."""

import asyncio
from typing import TYPE_CHECKING, Any

import tomli_w

from core.errors import ConfigError
from edged.commands.args import only
from edged.config.loader import check_depth, config_hash, parse_config
from edged.config.probation import Probation
from edged.diag import versions
from edged.errors import CommandError

if TYPE_CHECKING:
    from edged.node import Node

MODES = ("on-demand", "school", "out-of-service")
MODE_KEY = "mode"


def register_admin(node: "Node") -> None:
    async def config_get(args: dict[str, Any]) -> dict[str, Any]:
        only("config.get", args)
        return {"config": node.config.model_dump(mode="json"), "hash": node.config_hash}

    async def config_set(args: dict[str, Any]) -> dict[str, Any]:
        """Validate with the file's own models, write it on probation, restart with it."""
        if node.config_path is None:
            raise CommandError("not_supported", "this node was not started from a config file")
        new = args.get("config")
        if set(args) != {"config"} or not isinstance(new, dict):
            raise CommandError("bad_args", 'config.set takes {"config": {...the whole config...}}')
        try:
            check_depth(new, "config.set")  # before tomli_w, which recurses
            text = tomli_w.dumps(new)
            config = parse_config(
                text, source="config.set", base_dir=node.config_path.absolute().parent
            )
        except ConfigError as exc:
            raise CommandError("bad_config", "; ".join(exc.problems)[:1000]) from None
        except (TypeError, ValueError) as exc:  # not representable as TOML (nulls…)
            raise CommandError("bad_config", f"cannot be written as TOML: {exc}") from None
        Probation(node.config_path).begin(text)
        node.request_restart(after_reply=True)
        return {
            "hash": config_hash(config),
            "previous_hash": node.config_hash,
            "rollback_after_s": config.remote.rollback_after_s,
        }

    async def diag_dump(args: dict[str, Any]) -> dict[str, Any]:
        only("diag.dump", args)
        health = await node.health()
        return {
            "versions": versions(),
            "log": list(node.recent_log.lines)[-100:],
            "counters": node.counters.snapshot(),
            "health": health.to_json_dict(),
        }

    async def restart(args: dict[str, Any]) -> dict[str, Any]:
        only("restart", args)
        node.request_restart(after_reply=True)
        return {"restarting": True}

    async def mode_set(args: dict[str, Any]) -> dict[str, Any]:
        mode = args.get("mode")
        if set(args) != {"mode"} or mode not in MODES:
            raise CommandError("bad_args", f'mode.set takes {{"mode": one of {list(MODES)}}}')
        previous = node.get_state(MODE_KEY, MODES[0])
        node.set_state(MODE_KEY, mode)
        return {"mode": mode, "previous": previous}

    node.router.register("config.get", config_get, scope="read")
    node.router.register("config.set", config_set, scope="config")
    node.router.register("diag.dump", diag_dump, scope="read")
    node.router.register("restart", restart, scope="config")
    node.router.register("mode.set", mode_set, scope="operate")


async def probation_watch(node: "Node") -> None:
    """Commit a config on probation once connected; otherwise roll back and restart."""
    assert node.config_path is not None
    probation = Probation(node.config_path)
    deadline = asyncio.get_running_loop().time() + node.config.remote.rollback_after_s
    while asyncio.get_running_loop().time() < deadline:
        if node.uplink.connected:
            probation.commit()
            return
        await asyncio.sleep(0.2)
    probation.rollback()
    node.counters.inc("config.rolled_back")
    node.request_restart(after_reply=False)
