"""The cyclic garbage collector while `edged run` starts.

Start-up builds ~58,000 objects that live as long as the process: modules, classes,
pydantic's validators, the config, the node. CPython's full (generation 2) collection walks
every object it tracks; with the default thresholds one runs in the middle of start-up and
frees nothing (measured: 0 objects, 17 ms of a 0.33 s start here, about 0.1 s at a sixth of
this core, bench.pizero's Pi Zero 2 W). So `edged run` holds full collections back until
the node runs. The young generations are still collected, so start-up's own short-lived
cycles are freed as before (10 objects were left for a full collection to find, against 0).

Once the node runs, the thresholds are restored and `gc.freeze()` moves what start-up built
to the permanent generation. Without it the held-back full collection would run at the
next young one, between `running` and the broker hearing the node. `SETTLE_S` later it is
unfrozen (`settled`): a frozen object in a cycle is never collected, and a daemon that
runs for months must not keep start-up's cycles that die later (a replaced config, kept
state); the full collection then walks start-up's objects once, on a node long online. A
restart in the same process (`restart`, `config.set`) unfreezes too, so the old node's
cycles stay collectable.

Only the daemon's own start does this (`edged.cli.main.run`): never a library user's or a
test's process, where a freeze would keep the cyclic garbage of all that came before.
"""

import gc

_FULL_HELD = 1_000_000_000
"""A generation-2 threshold no start-up reaches: the full collection waits for `running`."""

SETTLE_S = 300.0
"""How long after `running` start-up's objects stay frozen (`settled`)."""

_saved: tuple[int, int, int] | None = None


def hold_full_collections() -> None:
    """Before start-up's imports and build: collect the young generations only.

    Also unfreezes what an earlier start froze (a restart in the same process)."""
    global _saved
    gc.unfreeze()
    if _saved is None:
        _saved = gc.get_threshold()
    young, middle, _full = _saved
    gc.set_threshold(young, middle, _FULL_HELD)


def running() -> int:
    """The node runs: freeze what start-up built and restore the thresholds. Returns how many
    objects are frozen (0: nothing was held back). Idempotent."""
    global _saved
    if _saved is None:
        return 0
    gc.freeze()
    gc.set_threshold(*_saved)
    _saved = None
    return gc.get_freeze_count()


def settled() -> None:
    """Long after start-up: every object is the collector's again (see the module doc)."""
    if _saved is None:
        gc.unfreeze()


def held() -> bool:
    """Whether full collections are held back now."""
    return _saved is not None
