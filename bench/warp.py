"""A node process whose time runs K times faster: a service day in minutes.

`python -m bench.warp K CONFIG` runs the real `Node` on CONFIG with `time.monotonic` and the
event loop sped up K times: every period of the config (positions' reporting rules, vehicle
deadband looks and heartbeat, health, MQTT keepalive, reconnect backoff, the simulated GPS
and CAN replay) runs unchanged, K times sooner in real time. The wall clock (`ts`) is not
touched. It must be patched before anything imports `time.monotonic` (paho keeps a
reference), hence this module imports the node only after. A thread's paced wait
(`threading.Event.wait` with a time-out: the CAN replay's sender waits so between frames) is
warped too, or the replayed bus would fall silent K times longer than its log says between
bursts (up to 34 node seconds at 60x: past `ignition_off_after_s`, a trip closed at random).
Blocking work in threads (SQLite, the TLS handshake) stays real: each counts K times longer
in the node's time, so a bench run sets the config's time-outs to their maximum.
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
    import threading

    real_wait = threading.Event.wait

    def warped_wait(self: threading.Event, timeout: float | None = None) -> bool:
        return real_wait(self, None if timeout is None else max(0.0, timeout / K))

    threading.Event.wait = warped_wait  # type: ignore[method-assign]
    import asyncio
    import selectors
    import signal
    from pathlib import Path

    class WarpSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            return super().select(None if timeout is None else max(0.0, timeout / K))

    import os

    import edged.uplink.tls as tls
    from edged.config.loader import load_config
    from edged.config.models import BrokerConfig
    from edged.node import Node

    keylog = os.environ.get("EDGED_BENCH_KEYLOG")
    if keylog:  # the bench breaks each reconnect down (bench.wire): never set on a node
        load = tls._load

        def logging_load(context: tls.C, cfg: BrokerConfig) -> tls.C:
            context = load(context, cfg)
            context.keylog_filename = keylog
            return context

        tls._load = logging_load

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
