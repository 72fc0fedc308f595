"""libnfc's `nfc/nfc-types.h` laid out as a C compiler lays it out, for either width of size_t.

Only what the header's packed target structures use: `uint8_t`, `size_t`, enums (an `int`
on every Linux ABI edged runs on, armhf's EABI included), arrays and the header's own
typedefs. A declaration this does not understand is an error, never a guess.
"""

import re
from dataclasses import dataclass
from pathlib import Path

HEADER = Path("/usr/include/nfc/nfc-types.h")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    offset: int
    size: int


@dataclass(frozen=True)
class Aggregate:
    kind: str  # "struct" or "union"
    fields: dict[str, Field]
    size: int


def _strip(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def packed_region(text: str) -> str:
    """The part between `#pragma pack(1)` and `#pragma pack()`: the header packs it."""
    found = re.search(r"#\s*pragma pack\(1\)(.*?)#\s*pragma pack\(\)", text, flags=re.S)
    if not found:
        raise ValueError(f"{HEADER}: no '#pragma pack(1)' region: the layout is not packed")
    return found.group(1)


def layouts(size_t: int, text: str | None = None) -> dict[str, Aggregate]:
    """Every struct and union typedef of the packed region, by name."""
    region = _strip(packed_region(text if text is not None else HEADER.read_text()))
    sizes: dict[str, int] = {"uint8_t": 1, "size_t": size_t}
    for name in re.findall(r"typedef\s+enum\s*\{[^}]*\}\s*(\w+)\s*;", region):
        sizes[name] = 4
    out: dict[str, Aggregate] = {}
    for kind, body, name in re.findall(
        r"typedef\s+(struct|union)\s*\{([^}]*)\}\s*(\w+)\s*;", region
    ):
        fields: dict[str, Field] = {}
        offset = size = 0
        for decl in filter(None, (d.strip() for d in body.split(";"))):
            m = re.fullmatch(r"(\w+)\s+(\w+)\s*(?:\[(\d+)\])?", decl)
            if not m or m.group(1) not in sizes:
                raise ValueError(f"{HEADER}: cannot lay out {decl!r} in {name}")
            ctype, fname, count = m.group(1), m.group(2), int(m.group(3) or 1)
            fsize = sizes[ctype] * count
            at = offset if kind == "struct" else 0
            fields[fname] = Field(fname, ctype, at, fsize)
            offset = at + fsize  # packed: no padding anywhere
            size = max(size, offset)
        sizes[name] = size
        out[name] = Aggregate(kind, fields, size)
    return out
