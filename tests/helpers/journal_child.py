"""A tap journal (`edged.outbox.journal`) in a process of its own, for faults that end a
process (a signal) rather than raise: the test reads whether it lived.

    python -m tests.helpers.journal_child PATH

Prints `ready` once the journal is open; then, for each line read on stdin, writes one
tap-sized record and prints `wrote True` or `wrote False` (what `Journal.write` returned).
Ends at the end of stdin.
"""

import sys
from pathlib import Path

from edged.outbox.journal import Journal, Record


def main() -> None:
    journal = Journal(Path(sys.argv[1]))
    journal.open(0)
    print("ready", flush=True)
    for _ in sys.stdin:
        rn = journal.take_rn()
        record = Record(rn, "t/events/tap", "events/tap", rn, 1, 1, False, False, 0, b"{}" * 200)
        print(f"wrote {journal.write(record)}", flush=True)
    journal.close()


if __name__ == "__main__":
    main()
