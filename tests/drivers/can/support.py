"""What the CAN driver tests share: frame builders (drivers run in their real context:
tests/helpers/drivers.py)."""

from pathlib import Path
from typing import Any

import can

from drivers.can.j1939 import GLOBAL, make_id


def frame(
    pgn: int,
    data: bytes,
    *,
    source: int = 0x00,
    priority: int = 6,
    destination: int = GLOBAL,
    **flags: Any,
) -> can.Message:
    """A python-can message as a J1939 node would send it."""
    return can.Message(
        arbitration_id=make_id(pgn, source, priority=priority, destination=destination),
        is_extended_id=True,
        data=data,
        check=False,
        **flags,
    )


def muxed_dbc(folder: Path, ids: str) -> Path:
    """A DBC of 300 bytes whose extended multiplexer lists the ids `ids` (SG_MUL_VAL_):
    cantools makes a list of them, the table repeats the signal once per id."""
    dbc = folder / "muxed.dbc"
    dbc.write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_:\n\n'
        "BO_ 2566844926 EXTMUX: 8 Vector__XXX\n"
        ' SG_ Mux M : 0|4@1+ (1,0) [0|15] "" Vector__XXX\n'
        ' SG_ Sub m2M : 4|4@1+ (1,0) [0|15] "" Vector__XXX\n'
        ' SG_ D m1 : 24|4@1+ (1,0) [0|15] "" Vector__XXX\n\n'
        f"SG_MUL_VAL_ 2566844926 D Sub {ids};\n"
    )
    return dbc


def nested_dbc(folder: Path, levels: int) -> Path:
    """A DBC whose multiplexers nest `levels` deep: each 1-bit signal, multiplexed by the
    one before it (SG_MUL_VAL_), multiplexes the next."""
    dbc = folder / "nested.dbc"
    lines = ['VERSION ""', "", "NS_ :", "", "BS_:", "", "BU_:", ""]
    lines.append("BO_ 2566844926 NESTED: 64 Vector__XXX")
    lines.append(' SG_ S0 M : 0|1@1+ (1,0) [0|1] "" Vector__XXX')
    lines += [f' SG_ S{i} m0M : {i}|1@1+ (1,0) [0|1] "" Vector__XXX' for i in range(1, levels)]
    lines += [f' SG_ Leaf m0 : {levels}|1@1+ (1,0) [0|1] "" Vector__XXX', ""]
    lines += [f"SG_MUL_VAL_ 2566844926 S{i} S{i - 1} 0-0;" for i in range(1, levels)]
    lines.append(f"SG_MUL_VAL_ 2566844926 Leaf S{levels - 1} 0-0;")
    dbc.write_text("\n".join(lines) + "\n")
    return dbc
