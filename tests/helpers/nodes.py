"""Configs and processes for nodes under test."""

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from edged.clock import Clock
from edged.config import load_config
from edged.outbox import Outbox, Publication
from edged.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
ROUTE = ROOT / "config" / "routes" / "creuse-shuttle.json"
NODE_TOPICS = Topics("rnst/v1", "test", "shuttle-07")
"""The topics of the node `write_config` describes by default."""


def write_config(
    tmp: Path,
    port: int,
    *,
    node: str = "shuttle-07",
    fleet: str = "test",
    protocol: str = "5",
    gps: bool = True,
    speed_factor: float = 30.0,
    health_s: float = 30.0,
    health_beat_s: float = 0.0,
    outbox: str = "",
    broker: str = "",
    extra: str = "",
    kiosk: bool = False,
    reconnect_min_s: float = 0.2,
    reconnect_max_s: float = 1.0,
    occupancy: str = "",
) -> Path:
    """A complete node config talking to the test broker; extra TOML lines can be added.

    Tests read counters and outbox figures from `health`, so by default the node sends its
    full report at every `health_s` (`beat_s = 0`, the former rule); a test of the
    beats sets `health_beat_s`."""
    drivers = (
        f"""
[[drivers]]
name = "gps"
driver = "gps.sim"
[drivers.options]
route = "{ROUTE}"
speed_factor = {speed_factor}
rate_hz = 10
seed = 7
"""
        if gps
        else ""
    )
    text = f"""
[node]
fleet = "{fleet}"
id = "{node}"
profile = "shuttle"

[broker]
host = "127.0.0.1"
port = {port}
protocol = "{protocol}"
reconnect_min_s = {reconnect_min_s}
reconnect_max_s = {reconnect_max_s}
{broker}

[outbox]
path = "{tmp / (node + "-outbox.sqlite")}"
{outbox}

[health]
interval_s = {health_s}
beat_s = {health_beat_s}

[services.position]
qos = 1

[services.occupancy]
reset_at = "never"  # no daily reset at 03:00 in the middle of a test (tests/edged test it)
{occupancy}

[services.kiosk]
enabled = {"true" if kiosk else "false"}  # tests that want the page turn it on
{extra}
{drivers}
"""
    path = tmp / f"{node}.toml"
    path.write_text(text)
    return path


def write_venue_config(tmp: Path, *, access: str = "", extra: str = "") -> Path:
    """A venue's config with its door's access service on (a fleet secret made for it),
    `access`: more `[services.access]` lines; `extra`: more sections before it."""
    secret = tmp / "fleet.secret"
    secret.write_bytes(os.urandom(32))
    secret.chmod(0o600)
    cfg = tmp / "venue.toml"
    cfg.write_text(
        '[node]\nfleet = "creuse"\nid = "venue-ahun"\nprofile = "venue"\n'
        f'[broker]\nhost = "localhost"\n{extra}'
        f'[services.access]\nenabled = true\nsecret_file = "{secret}"\n{access}'
    )
    return cfg


def start_daemon(config: Path, log: Path) -> "subprocess.Popen[bytes]":
    """`edged run` as a separate process, as systemd would start it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "edged", "run", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )


async def queue_before_start(config: Path, publications: Iterable[Publication]) -> None:
    """Messages in the outbox of the node of `config`, as a node that stopped with them
    unsent leaves them: its next start has them as a backlog."""
    box = Outbox(load_config(config).outbox, Clock())
    await box.open()
    for publication in publications:
        box.put_nowait(publication)
    await box.close()
