"""A node process whose time runs K times faster: a service day in minutes.

`python -m bench.warp K CONFIG` runs the real `Node` on CONFIG with `time.monotonic` and the
event loop sped up K times: every period of the config (positions' reporting rules, vehicle
deadband looks and heartbeat, health, MQTT keepalive, reconnect backoff, the simulated GPS
and CAN replay) runs unchanged, K times sooner in real time. The wall clock (`ts`) is not
touched. It must be patched before anything imports `time.monotonic` (paho keeps a
reference), hence this module imports the node only after. Waits in threads (SQLite, the
TLS handshake) stay real: each counts K times longer in the node's time, so a bench run
sets the config's time-outs to their maximum.
"""

import sys
import time

_real = time.monotonic
_start = _real()
K = float(sys.argv[1]) if __name__ == "__main__" else 1.0


def warped() -> float:
    return _start + (_real() - _start) * K


def main() -> int:
    time.monotonic = warped
    import asyncio
    import selectors
    import signal
    from pathlib import Path

    class WarpSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            return super().select(None if timeout is None else max(0.0, timeout / K))

    from edged.config.loader import load_config
    from edged.node import Node

    config_path = Path(sys.argv[2])
    node = Node(load_config(config_path), config_path=config_path)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await node.run(stop)

    loop = asyncio.SelectorEventLoop(WarpSelector())
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
