"""Ed25519 verification by the OpenSSL the interpreter's `ssl` module already loaded.

A node checks a signature on every command and access-list update, and on every update
bundle. `cryptography` did it for ~9 MB of resident memory (its Rust library, relocated at
load) the first time, which every node in service pays within minutes of a start: more than
the rest of what the daemon adds over its imports. OpenSSL is already mapped (asyncio
imports `ssl`), and its EVP interface verifies Ed25519 (RFC 8032, OpenSSL >= 1.1.1) for
~0.1 MB: this module declares the six calls it needs and makes them, nothing else. Signing
and key files stay with `cryptography`, in the tools (`edgectl`), never in the daemon.

The libcrypto used is the one `_ssl` is linked to (read from /proc/self/maps), so a process
never holds two OpenSSLs; `libcrypto.so.3` and `.so.1.1` are the fall-backs.
"""

import functools
from typing import Any

from core.errors import EdgedError

NID_ED25519 = 1087
"""`EVP_PKEY_ED25519` (obj_mac.h), the same in OpenSSL 1.1.1 and 3."""
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
FALLBACKS = ("libcrypto.so.3", "libcrypto.so.1.1")


class OpenSslError(EdgedError):
    """OpenSSL could not be used to check a signature (not: the signature is wrong)."""


def _linked_libcrypto() -> str | None:
    """The path of the libcrypto this process mapped for `ssl`, if any."""
    import _ssl  # noqa: F401  (asyncio has imported it already: maps libcrypto)

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").partition("/")[2]
                if path and "/libcrypto.so" in "/" + path:
                    return "/" + path
    except OSError:
        return None
    return None


def _prototypes() -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """name: (restype, argtypes), as evp.h declares them; OpenSSL's own types are opaque.

    ctypes is imported here, with the first signature checked, not at start-up (0.4 MB and
    2 ms of a start here, for a node whose drivers do not load it)."""
    import ctypes

    ptr, size = ctypes.c_void_p, ctypes.c_size_t
    return {
        "EVP_PKEY_new_raw_public_key": (ptr, (ctypes.c_int, ptr, ctypes.c_char_p, size)),
        "EVP_PKEY_free": (None, (ptr,)),
        "EVP_MD_CTX_new": (ptr, ()),
        "EVP_MD_CTX_free": (None, (ptr,)),
        "EVP_DigestVerifyInit": (ctypes.c_int, (ptr, ptr, ptr, ptr, ptr)),
        "EVP_DigestVerify": (ctypes.c_int, (ptr, ctypes.c_char_p, size, ctypes.c_char_p, size)),
    }


@functools.cache
def libcrypto() -> Any:
    """OpenSSL's libcrypto with the prototypes of `_prototypes`, loaded once."""
    import ctypes

    names = [n for n in (_linked_libcrypto(), *FALLBACKS) if n]
    errors = []
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            for fn, (restype, argtypes) in _prototypes().items():
                call = getattr(lib, fn)
                call.restype, call.argtypes = restype, argtypes
            return lib
        except (OSError, AttributeError) as exc:
            errors.append(f"{name}: {exc}")
    raise OpenSslError(
        "cannot check Ed25519 signatures: no usable OpenSSL libcrypto (>= 1.1.1) "
        f"({'; '.join(errors)}); install the Debian package libssl3"
    )


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is `public_key`'s Ed25519 signature of `message` (RFC 8032).

    False for a wrong signature, key or message, and for a key or signature of the wrong
    length; `OpenSslError` only when OpenSSL itself cannot be used."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    lib = libcrypto()
    pkey = lib.EVP_PKEY_new_raw_public_key(NID_ED25519, None, public_key, PUBLIC_KEY_BYTES)
    if not pkey:
        return False  # OpenSSL refused the key's bytes
    ctx = lib.EVP_MD_CTX_new()
    try:
        if not ctx:
            raise OpenSslError("OpenSSL could not allocate a digest context (out of memory?)")
        if lib.EVP_DigestVerifyInit(ctx, None, None, None, pkey) != 1:
            raise OpenSslError("OpenSSL refused to verify Ed25519 (EVP_DigestVerifyInit)")
        # 1: valid; 0: not; < 0: an error, which is not a valid signature either
        return bool(
            lib.EVP_DigestVerify(ctx, signature, SIGNATURE_BYTES, message, len(message)) == 1
        )
    finally:
        lib.EVP_MD_CTX_free(ctx)
        lib.EVP_PKEY_free(pkey)
