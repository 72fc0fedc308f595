"""What a node at rest has imported: a separate interpreter loads what `edged run` loads
first, starts a node with the kiosk on (the config of `write_config`), waits until it is
ready and a little more for its services and drivers to settle, and prints `sys.modules`.

Tests of what the daemon loads or builds lazily (#19: every module or pydantic model that
`edged run` does not need until a command, an update, a kiosk request or a wifi event
arrives costs memory and start-up CPU) read these sets, computed once per test process."""

import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers.broker import free_port
from tests.helpers.nodes import ROOT, write_config

CHILD = r"""
import asyncio, json, sys

import edged.cli.main  # what `edged run` loads first
from edged.config import load_config
from edged.node import Node
from pydantic import BaseModel


async def main():
    node = Node(load_config(sys.argv[1]), base_dir=sys.argv[2])
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    await asyncio.wait_for(node.ready.wait(), 20)
    await asyncio.sleep(1.0)  # the drivers' and services' first turns
    loaded = sorted(sys.modules)
    built = sorted(models(BaseModel))
    stop.set()
    await asyncio.wait_for(task, 10)
    print(json.dumps({"modules": loaded, "built": built}))


def models(base):
    for cls in base.__subclasses__():
        if cls.__dict__.get("__pydantic_complete__"):
            yield f"{cls.__module__}.{cls.__qualname__}"
        yield from models(cls)


asyncio.run(main())
"""


@functools.cache
def _at_rest() -> dict[str, list[str]]:
    """The modules a node with every service of `write_config` and the kiosk has loaded
    once it is ready, before any command, request or update, and the pydantic models it
    has built (`module.Class`)."""
    with tempfile.TemporaryDirectory(prefix="edged-imports-") as tmp:
        config = write_config(Path(tmp), free_port(), kiosk=True, extra=f"port = {free_port()}")
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(config), tmp],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=ROOT,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    seen: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def loaded_at_rest() -> frozenset[str]:
    return frozenset(_at_rest()["modules"])


def built_at_rest() -> frozenset[str]:
    """The pydantic models a node at rest has built (validator and serializer made)."""
    return frozenset(_at_rest()["built"])


def loaded_of(prefixes: tuple[str, ...]) -> list[str]:
    """The modules at rest that are one of `prefixes` or inside one of them."""
    return sorted(
        m for m in loaded_at_rest() if any(m == p or m.startswith(p + ".") for p in prefixes)
    )
