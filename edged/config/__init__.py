"""Configuration: TOML files validated by pydantic models."""

from edged.config.loader import config_hash, load_config, parse_config
from edged.config.models import (
    BrokerConfig,
    DriverConfig,
    EdgedConfig,
    HealthConfig,
    NodeConfig,
    OutboxConfig,
    Profile,
)

__all__ = [
    "BrokerConfig",
    "DriverConfig",
    "EdgedConfig",
    "HealthConfig",
    "NodeConfig",
    "OutboxConfig",
    "Profile",
    "config_hash",
    "load_config",
    "parse_config",
]
