"""The feed process tunes its garbage collector; a library user of edged.transit does not
get it behind their back."""

import gc
import json
import subprocess
import sys

from edged.transit.run import GC_THRESHOLDS

PROBE = """
import gc, json
from edged.transit.run import tune_gc_for_a_long_running_feed
before = gc.get_threshold()
tune_gc_for_a_long_running_feed()
print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))
"""


def test_the_feed_process_collects_the_young_generation_far_less_often() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    before, after, frozen = json.loads(out.stdout)
    assert tuple(after) == GC_THRESHOLDS and tuple(before) != GC_THRESHOLDS
    assert after[0] > 10 * before[0]
    assert frozen > 0  # what start-up made is out of the collector's way


def test_importing_the_feed_leaves_the_collector_as_it_was() -> None:
    before = gc.get_threshold()
    import edged.transit.run  # noqa: F401

    assert gc.get_threshold() == before
