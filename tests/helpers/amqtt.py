"""The embedded amqtt broker (edged/demo/broker.py) on its own loop in a thread, so sync
tests can run `edgectl` (its own `asyncio.run`) and `edged run` processes against it."""

import asyncio
import threading

from edged.demo.broker import EmbeddedBroker


class ThreadedAmqtt:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.broker = EmbeddedBroker()

    @property
    def port(self) -> int:
        assert self.broker.port is not None
        return self.broker.port

    @property
    def url(self) -> str:
        return self.broker.address.url

    def start(self) -> "ThreadedAmqtt":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.broker.start(), self._loop).result(15)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.broker.stop(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
