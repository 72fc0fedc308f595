"""Shared pieces of the config models."""

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""Fleet, node and driver names become MQTT topic levels: no wildcards, no slashes, no spaces."""


class Strict(BaseModel):
    """Unknown keys are errors; a loaded config does not change under the daemon."""

    model_config = ConfigDict(extra="forbid", frozen=True)
