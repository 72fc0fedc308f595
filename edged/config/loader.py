"""Load and validate a config file, reporting every problem with its key path and line."""

import hashlib
import json
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.driver import DriverOptions
from core.errors import ConfigError, EdgedError
from drivers.registry import options_model
from edged.config.models import DriverConfig, EdgedConfig


def load_config(path: str | Path) -> EdgedConfig:
    """Read, parse and fully validate a config file (driver options included)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(file), [f"cannot read the file: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(file), [f"the file is not UTF-8 text: {exc}"]) from exc
    return parse_config(text, source=str(file), base_dir=file.resolve().parent)


MAX_DEPTH = 32
"""No edged config nests deeper than a handful of tables; far below Python's recursion limit."""
MAX_PROBLEMS = 50
"""Problems of a config told with their line, at most: each line is looked for through the
whole text, and a config.set of 64 KiB of wrong options (4,000 problems) held the node's
event loop 38 s to locate them all; the rest are counted."""


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    max_problems: int = MAX_PROBLEMS,
) -> EdgedConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from exc
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError(source, [too_deep()]) from None
    check_depth(data, source)
    context = {"base_dir": base_dir}
    problems: list[str] = []
    config: EdgedConfig | None = None
    more = 0  # problems found beyond MAX_PROBLEMS, counted, not located
    try:
        config = EdgedConfig.model_validate(data, context=context)
    except ValidationError as exc:
        problems.extend(format_errors(exc, text, room=max_problems))
        more += exc.error_count() - len(problems)
    settings, beyond = _driver_settings(data.get("drivers"), text, base_dir, problems, max_problems)
    more += beyond
    if config is not None:
        problems.extend(_vehicle_signals(config, settings, text))
    if more:
        problems.append(f"… and {more} more problem(s) like these")
    if problems or config is None:
        raise ConfigError(source, problems)
    for i, d in enumerate(config.drivers):
        d._settings = settings[i]  # validated once, here; nobody validates them again
        _tell_doors(d._settings, config)
    return config


def too_deep() -> str:
    return (
        f"the config nests tables or arrays more than {MAX_DEPTH} levels deep: no edged "
        "setting does; look for runaway brackets"
    )


def check_depth(data: Any, source: str) -> None:
    """ConfigError when `data` nests deeper than MAX_DEPTH; iterative, so it cannot recurse
    out of stack itself on the input it guards against."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(source, [too_deep()])
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _driver_settings(
    drivers: Any, text: str, base_dir: Path | None, problems: list[str], max_problems: int
) -> tuple[dict[int, DriverOptions], int]:
    """Each driver validates its own options; a bad driver name lists the known ones; and
    the problems beyond `max_problems`, counted only.

    Runs on the raw data, so driver problems show up alongside every other problem."""
    if not isinstance(drivers, list):
        return {}, 0
    settings: dict[int, DriverOptions] = {}
    more = 0
    for i, d in enumerate(drivers):
        if not isinstance(d, dict) or not isinstance(d.get("driver"), str):
            continue  # the main model already reports it
        prefix: tuple[str | int, ...] = ("drivers", i)
        options = d.get("options", {})
        if not isinstance(options, dict):
            continue
        room = max_problems - len(problems)
        try:
            settings[i] = driver_options(d["driver"], options, base_dir)
        except EdgedError as exc:
            if room > 0:
                where = (*prefix, "driver")
                problems.append(_with_line(f"drivers[{i}].driver: {exc}", text, where))
            else:
                more += 1
        except ValidationError as exc:
            told = format_errors(exc, text, prefix=(*prefix, "options"), room=max(room, 0))
            problems.extend(told)
            more += exc.error_count() - len(told)
    return settings, more


def _vehicle_signals(
    config: EdgedConfig, settings: dict[int, DriverOptions], text: str
) -> list[str]:
    """Each signal `[services.vehicle]` names must be in the DBC of an enabled CAN driver: a
    misspelt one would leave its field empty for ever, with nothing in the log. No CAN driver
    enabled: nothing to hold them to (a venue)."""
    dbcs: list[tuple[str, dict[str, frozenset[str]]]] = []
    for i, d in enumerate(config.drivers):
        if d.enabled and d.driver.startswith("can.") and i in settings:
            from drivers.can.options import CanDecodeOptions

            options = settings[i]
            if isinstance(options, CanDecodeOptions):
                dbc = Path(options.dbc).name if options.dbc else "fms.dbc"
                dbcs.append((dbc, options.signals()))
    if not dbcs:
        return []
    vehicle = config.services.vehicle
    written = vehicle.model_fields_set  # a default the DBC lacks is no mistake of the file's:
    # TOML cannot unset it, and a DBC of the bus's own (CCVS1 renamed) leaves that field empty
    under = {"field": (), "door": ("doors",), "extra": ("extra",)}
    named = [((*under[kind], key), ref) for kind, key, ref in vehicle.signals()]
    named = [(key, ref) for key, ref in named if key[0] in written]
    problems = []
    files = " or ".join(sorted({name for name, _ in dbcs}))
    for key, ref in named:
        if ref is None:
            continue
        message, _, signal = ref.partition(".")
        if any(signal in table.get(message, ()) for _, table in dbcs):
            continue
        known = sorted({s for _, table in dbcs for s in table.get(message, ())})
        if known:
            why = f"{message} in {files} has no signal {signal} (it has {', '.join(known)})"
        else:
            messages = sorted({m for _, table in dbcs for m in table})
            why = f"{files} has no message {message} (it has {', '.join(messages)})"
        loc = ("services", "vehicle", *key)
        problems.append(
            _with_line(f"{_dotted(loc)}: {ref!r}: {why}; the field would stay empty", text, loc)
        )
    return problems


def driver_options(driver: str, options: dict[str, Any], base_dir: Path | None) -> DriverOptions:
    """`options` read by the model of driver `driver` (paths relative to `base_dir`):
    raises UnknownDriverError or ValidationError."""
    return options_model(driver).model_validate(options, context={"base_dir": base_dir})


def _tell_doors(options: DriverOptions, config: EdgedConfig) -> None:
    """A CAN driver learns which door statuses the node uses: its throttle lets their
    changes through at once, and only theirs (drivers/can/pipeline.py `PROMPT_CHANGES`).
    Its options' module is loaded when a CAN driver is configured: a node without one
    does not import it (nor python-can with it, bench.footprint)."""
    can_options = sys.modules.get("drivers.can.options")
    if can_options is not None and isinstance(options, can_options.CanDecodeOptions):
        options.use_doors(config.services.vehicle.doors.values())


def with_settings(d: DriverConfig, base_dir: Path | None) -> DriverConfig:
    """`d` with its options validated: already, when it was loaded from a file; here, for
    one that was not (a config the doctor salvaged, one a test or the demo made)."""
    if d._settings is None:
        d._settings = driver_options(d.driver, d.options, base_dir)
    return d


def format_errors(
    exc: ValidationError,
    text: str = "",
    prefix: Sequence[str | int] = (),
    room: int | None = None,
) -> list[str]:
    """Each error with its key path (and line, in `text`); the first `room` only."""
    out = []
    for err in exc.errors()[:room]:
        loc = (*prefix, *err["loc"])
        path = _dotted(loc)
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling; unknown keys are not ignored)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"]
            if "input" in err and not isinstance(err["input"], dict | list):
                msg += f" (got {_echo(err['input'])})"
        out.append(_with_line(f"{path or '(top level)'}: {msg}", text, loc))
    return out


ECHO_CHARS = 80
"""How much of a refused value a problem quotes: a 100,000-character value is not echoed."""


def _echo(value: object) -> str:
    """The refused value as the problem quotes it: its repr (control characters and escape
    sequences escaped, never sent raw to the terminal), cut to `ECHO_CHARS`."""
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return f"{value[:ECHO_CHARS]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= 2 * ECHO_CHARS else f"{text[: 2 * ECHO_CHARS]}…"


def _dotted(loc: Sequence[str | int]) -> str:
    s = ""
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else (f".{part}" if s else str(part))
    return s


def _with_line(message: str, text: str, loc: Sequence[str | int]) -> str:
    line = locate(text, loc)
    return f"{message} (line {line})" if line else message


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def locate(text: str, loc: Sequence[str | int]) -> int | None:
    """Best-effort line of a key path in TOML text: the key's line, else its table's line.

    tomllib keeps no positions, so this walks table headers (counting arrays of tables) and
    keys. Inline tables and dotted keys fall back to the nearest enclosing table.
    """
    if not text:
        return None
    array_counts: dict[str, int] = {}
    current: tuple[str | int, ...] = ()
    best: tuple[int, int] | None = None  # (matched depth, line)
    target = tuple(loc)

    def consider(path: tuple[str | int, ...], line: int) -> None:
        nonlocal best
        if target[: len(path)] == path and (best is None or len(path) >= best[0]):
            best = (len(path), line)

    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(raw)
        if header:
            name = tuple(p.strip().strip('"') for p in header.group(2).split("."))
            if header.group(1) == "[[":
                key = ".".join(name)
                index = array_counts.get(key, -1) + 1
                array_counts[key] = index
                # nested tables of this element are reset when a new element starts
                for k in [k for k in array_counts if k.startswith(key + ".")]:
                    del array_counts[k]
                current = (*_resolve_arrays(name[:-1], array_counts), name[-1], index)
            else:
                current = _resolve_arrays(name, array_counts)
            consider(current, number)
            continue
        key_match = _KEY.match(raw)
        if key_match:
            consider((*current, key_match.group(1)), number)
    return best[1] if best else None


def _resolve_arrays(name: tuple[str, ...], array_counts: dict[str, int]) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for i, part in enumerate(name):
        out.append(part)
        key = ".".join(name[: i + 1])
        if key in array_counts:
            out.append(array_counts[key])
    return tuple(out)


def config_hash(config: EdgedConfig) -> str:
    """Short stable hash of the effective config, shown in the birth message."""
    blob = json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
