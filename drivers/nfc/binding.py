"""The libnfc calls `nfc.libnfc` makes, bound with ctypes prototypes of our own.

Not pynfc's generated bindings: importing `pynfc.nfc` loads libfreefare (and libnfc through
it) and builds Python objects for every function and structure of both libraries, ~0.6 MB
of a node's memory for the ten calls used here (#19); its prototypes were also generated
on x86-64 (see drivers.nfc.abi). Here libnfc is loaded alone, each call is declared from
libnfc 1.8's `nfc/nfc.h`, and every pointer libnfc hands out is an opaque `c_void_p`, of the
machine's own width. `nfc_initiator_select_passive_target`, which takes the structures, is
bound by drivers.nfc.abi with the layout it checks.
"""

import ctypes
import functools
from typing import Any

from core.errors import ConfigError

SONAMES = ("libnfc.so.6", "libnfc.so")
"""Debian's libnfc6 (libnfc 1.8) ships the first; the second is the -dev symlink."""
CONNSTRING_BYTES = 1024
"""`typedef char nfc_connstring[NFC_BUFSIZE_CONNSTRING]`, 1024 in nfc-types.h."""
# enum nfc_property (nfc-types.h)
NP_INFINITE_SELECT = 7
NP_AUTO_ISO14443_4 = 10

_PROTOTYPES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "nfc_init": (None, (ctypes.POINTER(ctypes.c_void_p),)),
    "nfc_exit": (None, (ctypes.c_void_p,)),
    "nfc_open": (ctypes.c_void_p, (ctypes.c_void_p, ctypes.c_char_p)),
    "nfc_close": (None, (ctypes.c_void_p,)),
    "nfc_initiator_init": (ctypes.c_int, (ctypes.c_void_p,)),
    "nfc_device_set_property_bool": (
        ctypes.c_int,
        (ctypes.c_void_p, ctypes.c_int, ctypes.c_bool),
    ),
    "nfc_device_get_name": (ctypes.c_char_p, (ctypes.c_void_p,)),
    "nfc_abort_command": (ctypes.c_int, (ctypes.c_void_p,)),
    "nfc_strerror": (ctypes.c_char_p, (ctypes.c_void_p,)),
}
"""name: (restype, argtypes), as nfc.h declares them (pointers to libnfc's own types are
opaque; `nfc_connstring` decays to a pointer)."""


@functools.cache
def libnfc() -> Any:
    """libnfc with the prototypes above, loaded once; a `ConfigError` (not retried) that
    says what to install if it cannot be loaded."""
    errors = []
    for name in SONAMES:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as exc:
            errors.append(str(exc))
    else:
        raise ConfigError(
            "driver nfc.libnfc",
            [f"libnfc cannot be loaded ({'; '.join(errors)}): install the Debian package libnfc6"],
        )
    for fn, (restype, argtypes) in _PROTOTYPES.items():
        call = getattr(lib, fn)
        call.restype, call.argtypes = restype, argtypes
    return lib


def connstring(text: str) -> ctypes.Array[ctypes.c_char]:
    """A connection string in a buffer of `nfc_connstring`'s size, as libnfc copies it."""
    return ctypes.create_string_buffer(text.encode(), CONNSTRING_BYTES)
