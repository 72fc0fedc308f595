"""Commands from dispatch and ops: each declared by its owner (`CommandSpec`), one router."""

from edged.commands.router import CommandRouter, IncomingCommand
from edged.commands.spec import CommandSpec, Handler

__all__ = ["CommandRouter", "CommandSpec", "Handler", "IncomingCommand"]
