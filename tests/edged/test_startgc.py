"""The collector while `edged run` starts (edged.startgc).

Each case runs in its own interpreter: holding, freezing and unfreezing are process-wide,
and a freeze in the test process would keep every later test's garbage."""

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from tests.helpers.broker import Mosquitto
from tests.helpers.nodes import ROOT, write_config


def in_a_fresh_interpreter(code: str) -> dict[str, object]:
    """Run `code` (which sets `out`, a dict) in a new interpreter; return `out`."""
    script = "import gc, json\nout = {}\n" + textwrap.dedent(code) + "\nprint(json.dumps(out))\n"
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr
    result: dict[str, object] = json.loads(r.stdout.splitlines()[-1])
    return result


def test_the_daemons_start_up_runs_no_full_collection() -> None:
    out = in_a_fresh_interpreter(
        """
        from edged import startgc
        startgc.hold_full_collections()
        import edged.node, edged.cli.main, drivers.gps.serial, drivers.can.bus
        import drivers.nfc.libnfc, drivers.gpio.board, gpiozero
        from pathlib import Path
        from edged.config import load_config
        load_config(Path("config/shuttle.toml"))
        stats = gc.get_stats()
        out["young"] = stats[0]["collections"]
        out["full"] = stats[2]["collections"]
        """
    )
    assert out["full"] == 0
    assert isinstance(out["young"], int) and out["young"] > 10  # the young ones still run


def test_cycles_made_while_held_are_still_collected_by_the_young_generations() -> None:
    out = in_a_fresh_interpreter(
        """
        import weakref
        from edged import startgc
        startgc.hold_full_collections()
        class Cycle:
            pass
        a = Cycle(); a.me = a
        gone = weakref.ref(a)
        del a
        junk = [[] for _ in range(5000)]  # allocations: young collections run by themselves
        out["collected"] = gone() is None
        out["full"] = gc.get_stats()[2]["collections"]
        """
    )
    assert out == {"collected": True, "full": 0}


def test_running_freezes_start_up_and_restores_the_thresholds() -> None:
    out = in_a_fresh_interpreter(
        """
        from edged import startgc
        before = gc.get_threshold()
        startgc.hold_full_collections()
        out["held_full_threshold"] = gc.get_threshold()[2]
        out["held"] = startgc.held()
        out["frozen"] = startgc.running()
        out["restored"] = gc.get_threshold() == before
        out["again"] = startgc.running()  # idempotent
        out["held_after"] = startgc.held()
        """
    )
    assert out["held"] is True and out["held_after"] is False
    assert isinstance(out["held_full_threshold"], int) and out["held_full_threshold"] >= 10**9
    assert isinstance(out["frozen"], int) and out["frozen"] > 1000
    assert out["restored"] is True
    assert out["again"] == 0


def test_a_restart_in_the_same_process_lets_the_old_nodes_cycles_be_collected() -> None:
    out = in_a_fresh_interpreter(
        """
        import weakref
        from edged import startgc
        class Node:
            pass
        startgc.hold_full_collections()
        node = Node(); node.services = {"self": node}  # a node is full of cycles
        old = weakref.ref(node)
        startgc.running()  # frozen with the rest of start-up
        del node  # `restart`: the next node replaces it
        gc.collect()
        out["kept_while_frozen"] = old() is not None  # a frozen cycle is never collected
        startgc.hold_full_collections()  # the next start
        gc.collect()
        out["collected_after_restart"] = old() is None
        """
    )
    assert out == {"kept_while_frozen": True, "collected_after_restart": True}


def test_once_settled_start_ups_cycles_that_died_are_collected() -> None:
    out = in_a_fresh_interpreter(
        """
        import weakref
        from edged import startgc
        class State:
            pass
        startgc.hold_full_collections()
        kept = State(); kept.me = kept  # state read at start, replaced later
        old = weakref.ref(kept)
        startgc.running()
        del kept
        gc.collect()
        out["kept_while_frozen"] = old() is not None
        startgc.settled()
        out["frozen_after"] = gc.get_freeze_count()
        gc.collect()
        out["collected_once_settled"] = old() is None
        """
    )
    assert out == {"kept_while_frozen": True, "frozen_after": 0, "collected_once_settled": True}


def test_settling_during_a_restarts_start_up_leaves_the_hold_alone() -> None:
    out = in_a_fresh_interpreter(
        """
        from edged import startgc
        startgc.hold_full_collections()
        startgc.running()
        startgc.hold_full_collections()  # `restart`: a new start-up began
        startgc.settled()  # the old node's timer, late
        out["held"] = startgc.held()
        out["full_threshold"] = gc.get_threshold()[2]
        """
    )
    assert out["held"] is True
    assert isinstance(out["full_threshold"], int) and out["full_threshold"] >= 10**9


def test_the_daemon_ends_start_up_for_the_collector_once_it_runs(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = write_config(tmp_path, broker.port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edged", "-v", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    lines: list[str] = []
    deadline = threading.Timer(30, proc.terminate)  # a daemon that never says it: EOF
    deadline.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "start-up over" in line:
                break
    finally:
        deadline.cancel()
        proc.terminate()
        proc.communicate(timeout=30)  # read on: a daemon blocked on a full pipe cannot stop
    log = "".join(lines)
    running = [i for i, line in enumerate(lines) if " running as " in line]
    over = [i for i, line in enumerate(lines) if "start-up over" in line]
    assert running and over, log
    assert running[0] < over[0], log
    frozen = int(lines[over[0]].split("start-up over: ")[1].split()[0])
    assert frozen > 10_000, log  # the modules, classes and validators start-up built
