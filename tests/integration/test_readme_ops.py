"""The README's signing sequence, run as written: generate a key, paste its block with the
scopes the README shows, send the signed `restart` the README shows. It was refused
(`lacks the scope 'config'`) when the README used the printed block as it was."""

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers.broker import Mosquitto
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import ROOT, write_config

EDGECTL = Path(sys.executable).parent / "edgectl"


def section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


def commands(text: str, program: str) -> list[list[str]]:
    """Each `program ...` line of the sh blocks as argv, continuations joined."""
    out = []
    for block in blocks(text, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0].endswith(f"/{program}"):
                out.append([str(EDGECTL), *argv[1:]])
    return out


def edgectl(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)


async def test_the_readme_key_sequence_lets_the_signed_restart_through(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    text = section("Running a node")
    ctl = commands(text, "edgectl")
    (generate,) = [a for a in ctl if a[1:3] == ["keys", "generate"]]
    (restart,) = [a for a in ctl if a[1] == "cmd" and "restart" in a]
    printed = edgectl(generate, tmp_path)
    assert printed.returncode == 0, printed.stderr
    (shown,) = [b for b in blocks(text, "toml") if "[[security.keys]]" in b]
    scopes = re.search(r"^scopes = .*$", shown, re.MULTILINE)
    assert scopes, shown
    block = re.sub(r"^scopes = .*$", scopes[0], printed.stdout, flags=re.MULTILINE)
    fleet, node = restart[2].split("/")
    config = write_config(
        tmp_path,
        broker.port,
        fleet=fleet,
        node=node,
        gps=False,
        # the README's node has a synced clock; this machine's clock may not be
        extra=f"[clock]\ntrust_system_clock = true\n{block}",
    )
    async with Collector(broker.port) as c:
        await spawn(config)
        await c.wait_for(
            lambda: any(m.payload.get("state") == "online" for m in c.on("state")), 10, "birth"
        )
    restart[restart.index("--broker") + 1] = broker.url
    r = edgectl(restart, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
