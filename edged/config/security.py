"""`[security]` and `[clock]` in the config."""

from typing import Literal

from pydantic import Field, field_validator

from edged.config.base import Strict
from edged.security.signing import public_key_from_text

Scope = Literal["read", "operate", "door", "access", "config", "update"]
"""What a signing key may do: read the node, operate it, open a door, change the access
lists, change its config, update its software (and sign release bundles). Each command
declares its own scope beside its handler (`edged.commands.spec.CommandSpec`);
docs/topics.md lists them, held to the code by test."""

COMMANDS: frozenset[str] = frozenset(
    {
        "access.status", "access.update", "alarm.ack", "config.get", "config.set",
        "diag.dump", "door.unlock", "geofences.set", "journey.assign", "journey.clear",
        "kiosk.ack", "kiosk.message", "kiosk.schedule", "mode.set", "occupancy.reset",
        "ping", "republish", "restart", "trip.start", "trip.stop", "update.apply",
        "update.cancel", "update.status",
    }
)  # fmt: skip
"""Every command a node may answer, whatever services it runs (held to the router by
tests/edged/test_topics.py): a `signed_commands` entry outside it is a typo that would leave
the command meant unsigned."""

ALWAYS_SIGNED: frozenset[str] = frozenset({"update"})
"""Scopes whose commands are refused unsigned whatever `signed_commands` says: new code."""


class KeyConfig(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="named in a command's `kid`")
    public_key: str = Field(description="base64 of the 32-byte Ed25519 public key")
    scopes: list[Scope] = Field(min_length=1)

    @field_validator("public_key")
    @classmethod
    def _is_key(cls, value: str) -> str:
        public_key_from_text(value)
        return value


class SecurityConfig(Strict):
    signed_commands: list[str] = Field(
        default_factory=lambda: ["door.unlock", "access.update", "config.set", "restart"],
        description="refused unless signed by a key holding the command's scope",
    )
    max_skew_s: float = Field(
        default=300, gt=0, le=86400, description="a signed command's ts must be this close"
    )
    keys: list[KeyConfig] = Field(default_factory=list)

    @field_validator("signed_commands")
    @classmethod
    def _are_command_names(cls, names: list[str]) -> list[str]:
        """A name the router never looks up would leave its command unsigned, silently."""
        for name in names:
            if name not in COMMANDS:  # door/unlock, Door.Unlock, " door.unlock", door.unlok
                import difflib  # a refused config's hint only: not in a running node

                close = difflib.get_close_matches(name, sorted(COMMANDS), n=1)
                hint = f": did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"{name!r} is no command of edged{hint} (a command is named in lower-case "
                    "words separated by dots, as door.unlock)"
                )
        return names


class ClockConfig(Strict):
    trust_system_clock: bool = Field(
        default=False,
        description="treat the system clock as synced even when the kernel says it is not "
        "(a machine whose NTP daemon does not discipline the kernel clock)",
    )
