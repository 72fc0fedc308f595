"""Services turn driver events into local decisions and publications.

Each is built from the host (`edged.host.Host`) and its own config, may run, and declares
its commands beside their handlers; they speak to each other only through the typed events
of `events.py` on the bus. `table.py` lists them, in the order they are built and started,
with when each is on.
"""
