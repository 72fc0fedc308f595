"""`python -m hil.nfc`: the PN532 emulator standalone, for trials with nfc-list or a node.

    python -m hil.nfc --uid 04A1B2C3                 # prints: ready pn532_uart:/dev/pts/N
    nfc-list -v                                      # (LIBNFC_DEVICE=pn532_uart:/dev/pts/N)
    python -m hil.nfc --link /tmp/nfc0               # a stable path across unplug/replug
    python -m hil.nfc --measure 100                  # put-to-tap latency of nfc.libnfc, JSON

While it runs, lines on stdin drive it: `put HEX [kind]`, `remove`, `glitch [N]`,
`inject FAULT [N]`, `silent on|off`, `unplug`, `replug`, `stats`, `quit`.
"""

import argparse
import asyncio
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from hil.nfc.cards import CardKind
from hil.nfc.emulator import FAULTS, Faults, Pn532Emulator
from hil.nfc.latency import measure_tap_latency

HELP = (
    "commands: put HEX [classic-1k|ultralight|desfire|triple], remove, glitch [N], "
    f"inject FAULT [N] ({', '.join(FAULTS)}), silent on|off, unplug, replug, stats, quit"
)


def stats(emu: Pn532Emulator) -> str:
    return json.dumps(
        {
            "port": emu.port,
            "card": emu.card.uid.hex().upper() if emu.card else None,
            "polls": emu.polls,
            "card_polls": emu.card_polls,
            "bad_frames": emu.bad_frames,
            "aborts": emu.aborts,
            "faults": dict(emu.served),
            "unknown": {f"0x{c:02X}": n for c, n in emu.unknown.items()},
            "commands": dict(emu.commands),
        }
    )


def command(emu: Pn532Emulator, line: str) -> bool:
    """One stdin line; False to quit."""
    words = line.split()
    if not words:
        return True
    verb, args = words[0], words[1:]
    try:
        if verb == "put" and args:
            emu.put(bytes.fromhex(args[0]), CardKind(args[1]) if len(args) > 1 else None)
        elif verb == "remove":
            emu.remove()
        elif verb == "glitch":
            emu.glitch(int(args[0]) if args else 1)
        elif verb == "inject" and args:
            emu.inject(args[0], int(args[1]) if len(args) > 1 else 1)  # type: ignore[arg-type]
        elif verb == "silent" and args:
            emu.silent = args[0] == "on"
        elif verb == "unplug":
            emu.unplug()
        elif verb == "replug":
            emu.replug()
            print(f"ready {emu.connstring}", flush=True)
        elif verb == "stats":
            print(stats(emu), flush=True)
        elif verb == "quit":
            return False
        else:
            print(HELP, flush=True)
    except ValueError as exc:
        print(f"error: {exc}", flush=True)
    return True


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m hil.nfc", description="A PN532 NFC reader emulated on a pty."
    )
    ap.add_argument("--uid", help="hex UID of a card on the antenna at start")
    ap.add_argument("--kind", choices=[k.value for k in CardKind], help="card kind for --uid")
    ap.add_argument("--link", type=Path, help="symlink to the pty (stable across replug)")
    ap.add_argument("--delay", type=float, default=0.0, help="s before every answer")
    ap.add_argument("--seed", type=int, default=None)
    for name in FAULTS:
        ap.add_argument(f"--{name.replace('_', '-')}", type=float, default=0.0, metavar="P")
    ap.add_argument("--measure", type=int, metavar="N", help="measure N put-to-tap latencies")
    ap.add_argument("--poll-interval", type=float, default=0.05, help="with --measure")
    args = ap.parse_args(argv)
    faults = Faults(**{name: getattr(args, name) for name in FAULTS}, seed=args.seed)
    emu = Pn532Emulator(args.link, delay_s=args.delay, faults=faults)
    if args.measure:
        with emu:
            options = {"poll_interval_s": args.poll_interval}
            options["release_s"] = max(0.3, 2 * args.poll_interval)
            result = asyncio.run(measure_tap_latency(args.measure, options=options, emulator=emu))
        print(json.dumps(result.as_dict()))
        return

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with emu:
        if args.uid:
            emu.put(bytes.fromhex(args.uid), CardKind(args.kind) if args.kind else None)
        print(f"ready {emu.connstring}", flush=True)

        def read_commands() -> None:
            for line in sys.stdin:
                if not command(emu, line):
                    break
            else:
                return  # end of input: keep serving until a signal
            stop.set()

        threading.Thread(target=read_commands, daemon=True).start()
        while not stop.wait(0.5):
            pass
    print(f"stopped: {stats(emu)}", file=sys.stderr)


if __name__ == "__main__":
    main()
