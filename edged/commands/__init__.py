"""Commands from dispatch and ops: one router, one handler per command name."""

from edged.commands.router import CommandRouter, Handler, IncomingCommand

__all__ = ["CommandRouter", "Handler", "IncomingCommand"]
