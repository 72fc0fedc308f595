"""The one check every command handler starts with: no argument it does not know."""

from typing import Any

from edged.errors import CommandError


def only(name: str, args: dict[str, Any], *allowed: str) -> None:
    """Refuse unknown arguments by name: a typo must not be silently ignored."""
    unknown = sorted(set(args) - set(allowed))
    if not unknown:
        return
    if not allowed:
        raise CommandError("bad_args", f"{name} takes no arguments, got {unknown}")
    raise CommandError(
        "bad_args", f"{name} takes {', '.join(allowed)}; unknown arguments {unknown}"
    )
