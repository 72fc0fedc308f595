"""The outbox tests read every outcome they ask for. A put the caps or the disk refused,
whose future nobody read, was a "Future exception was never retrieved" in the log once
collected: 17,659 in this package's run (a test putting 20,000 events past the hard cap,
another 600 taps on a full disk), noise burying what a failing test printed. The node
reads each one (`OutboxAlarms.check_stored`: counted, alarmed, logged through the flood
guard); a test that puts on its own reads its futures too: awaits them, gathers them, or
says what it expects of them."""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from edged.outbox import Outbox, Publication, PutResult


@pytest.fixture(autouse=True)
def every_outcome_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each future `put_nowait` gave the test, checked once the test and its loop are done
    (the loop's last run took the done-callbacks, the node's reading included). Checked
    here rather than at collection: a closed loop's timers keep an outbox, and the futures
    it holds, alive until pytest lets go of the test's fixtures, after any fixture ends."""
    asked: list[asyncio.Future[PutResult]] = []
    put_nowait = Outbox.put_nowait

    def tracked(
        self: Outbox, pub: Publication, *, state: dict[str, Any] | None = None
    ) -> "asyncio.Future[PutResult]":
        future = put_nowait(self, pub, state=state)
        asked.append(future)
        return future

    monkeypatch.setattr(Outbox, "put_nowait", tracked)
    yield
    # `_log_traceback`: what asyncio reads at collection to say "never retrieved"
    unread = [f for f in asked if f.done() and not f.cancelled() and f._log_traceback]
    told = [repr(f.exception()) for f in unread]  # read: said once here, not at collection
    assert not unread, f"{len(unread)} outcome(s) of a put nobody read, the first: {told[:3]}"
