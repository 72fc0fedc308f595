"""The node's side of software updates: `update.apply`, download, install, switch, trial.

See docs/updates.md for the whole story; `edged.release` holds the bundle format and the
launcher that systemd starts.
"""
