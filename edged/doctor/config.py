"""The config file: valid or not (as `edged check-config` says), and the parts that still work.

A technician with a half-right config still wants to know whether the GPS answers and the
broker lets the node in, so each section is validated on its own as well: a section that
validates is used by the other checks even when another one does not.
"""

import contextlib
import os
import pwd
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from core.errors import ConfigError
from core.paths import private_files
from edged.config import load_config
from edged.config.advice import beams_without_their_door, broker_in_clear, venue_without_rooms
from edged.config.kiosk import KioskConfig
from edged.config.models import BrokerConfig, DriverConfig, OutboxConfig
from edged.config.security import ClockConfig
from edged.config.wifi import WifiConfig
from edged.doctor.check import Check, fail, ok, warn

SECTION = "config"


@dataclass
class Loaded:
    """What the other checks may use from the config file."""

    path: Path
    checks: list[Check]
    usable: bool
    """False when the file cannot be read or is not TOML: nothing in it can be used."""
    valid: bool
    """True when the whole file loads, exactly as `edged run` would load it."""
    base_dir: Path | None = None
    client_id: str = "edged"
    broker: BrokerConfig | None = None
    outbox: OutboxConfig | None = None
    clock: ClockConfig = field(default_factory=ClockConfig)
    drivers: list[DriverConfig] = field(default_factory=list)
    kiosk: KioskConfig | None = None
    private: list[tuple[str, Path]] = field(default_factory=list)
    """Secret files (passwords, private keys): (key path, file)."""
    wifi: WifiConfig | None = None


def load(path: Path) -> Loaded:
    """Load the whole file as the daemon does; on failure, salvage the sections that validate."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        problem = fail(
            SECTION,
            "config",
            f"{path}: {len(exc.problems)} problem(s)",
            "fix the problems listed above (`edged check-config` words them the same), "
            "then run again",
            items=tuple(exc.problems),
        )
        return _salvage(path, problem)
    base_dir = path.resolve().parent
    loaded = Loaded(
        path=path,
        checks=[],
        usable=True,
        valid=True,
        base_dir=base_dir,
        client_id=_client_id(config.broker, config.node.fleet, config.node.id),
        broker=config.broker,
        outbox=config.outbox,
        clock=config.clock,
        drivers=list(config.drivers),
        kiosk=config.services.kiosk,
        private=list(private_files(config)),
        wifi=config.wifi,
    )
    enabled = sum(d.enabled for d in config.drivers)
    n = config.node
    loaded.checks.append(
        ok(
            SECTION,
            "config",
            f"{path}: valid ({n.profile.value} {n.fleet}/{n.id}, {enabled} driver(s) enabled)",
        )
    )
    loaded.checks.extend(secrets_check(loaded.private))
    loaded.checks.extend(clear_broker_check(config.broker))
    if (rooms := venue_without_rooms(config)) is not None:
        loaded.checks.append(warn(SECTION, "venue_rooms", *rooms))
    if (beams := beams_without_their_door(config)) is not None:
        loaded.checks.append(warn(SECTION, "beams_door", *beams))
    return loaded


def clear_broker_check(broker: BrokerConfig | None) -> list[Check]:
    """A warning when the broker is reached over the network without TLS."""
    clear = broker_in_clear(broker) if broker is not None else None
    return [] if clear is None else [warn(SECTION, "broker_tls", *clear)]


def _salvage(path: Path, problem: Check) -> Loaded:
    """The sections of an invalid file that validate by themselves."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return Loaded(path=path, checks=[problem], usable=False, valid=False)
    base_dir = path.resolve().parent
    context = {"base_dir": base_dir}

    def section(model: type[BaseModel], key: str) -> Any:
        raw = data.get(key, {})
        try:
            return model.model_validate(raw, context=context)
        except ValidationError:
            return None

    broker: BrokerConfig | None = section(BrokerConfig, "broker")
    node = data.get("node")
    if not isinstance(node, dict):
        node = {}
    drivers = []
    raw_drivers = data.get("drivers", [])
    for raw in raw_drivers if isinstance(raw_drivers, list) else []:
        try:
            drivers.append(DriverConfig.model_validate(raw, context=context))
        except ValidationError:
            continue  # the config line already names what is wrong with it
    private = list(private_files(broker, "broker.")) if broker is not None else []
    services = data.get("services", {})
    kiosk: KioskConfig | None = None
    if isinstance(services, dict):
        with contextlib.suppress(ValidationError):
            kiosk = KioskConfig.model_validate(services.get("kiosk", {}), context=context)
    return Loaded(
        path=path,
        checks=[problem, *secrets_check(private), *clear_broker_check(broker)],
        usable=True,
        valid=False,
        base_dir=base_dir,
        client_id=_client_id(broker, str(node.get("fleet", "")), str(node.get("id", ""))),
        broker=broker,
        outbox=section(OutboxConfig, "outbox"),
        clock=section(ClockConfig, "clock") or ClockConfig(),
        drivers=drivers,
        kiosk=kiosk,
        private=private,
        wifi=section(WifiConfig, "wifi"),
    )


def _client_id(broker: BrokerConfig | None, fleet: str, node: str) -> str:
    """The daemon's client id, as edged.node builds it."""
    if broker is not None and broker.client_id:
        return broker.client_id
    return f"edged-{fleet}-{node}" if fleet and node else "edged"


def secrets_check(files: list[tuple[str, Path]]) -> list[Check]:
    """Loading already refuses secrets others can read; here: can *this* user read them?"""
    if not files:
        return []
    seen: list[str] = []
    for key, file in files:
        try:
            st = file.stat()
        except OSError as exc:
            return [
                fail(
                    SECTION,
                    "secrets",
                    f"{key} {file}: {exc.strerror}",
                    f"put the file back, or fix {key} in the config",
                )
            ]
        mode = stat.S_IMODE(st.st_mode)
        owner = _user(st.st_uid)
        if not os.access(file, os.R_OK):
            me = _user(os.geteuid())
            return [
                fail(
                    SECTION,
                    "secrets",
                    f"{key} {file}: {me} cannot read it (mode {mode:o}, owner {owner})",
                    f"`sudo chown {me} {file}` (the user running edged owns its secrets)",
                )
            ]
        seen.append(f"{key} ({mode:o}, {owner})")
    return [ok(SECTION, "secrets", "private and readable: " + ", ".join(seen))]


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
