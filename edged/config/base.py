"""Shared pieces of the config models."""

from pydantic import ConfigDict

from core.confignumbers import NumbersNotBools

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""Fleet, node and driver names become MQTT topic levels: no wildcards, no slashes, no spaces."""


class Strict(NumbersNotBools):
    """Unknown keys are errors; a loaded config does not change under the daemon. TOML has
    `inf` and `nan`: no knob takes them (a NaN factor would put NaN, which is no JSON, in a
    payload; an infinite period is a feature switched off by stealth)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
