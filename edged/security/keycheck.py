"""Which 32 bytes may be an Ed25519 public key in a config.

RFC 8032 asks nothing of a key before it verifies, and OpenSSL and `cryptography` check
nothing: a key of small order (the identity point, or one of the seven other points whose
multiple by the cofactor 8 is the identity) verifies a forged signature of any message, as
R = identity, S = 0 (checked here: `tests/edged/security/test_keycheck.py`). A config is the
operator's, but a copy-paste slip, a key that a compromised tool wrote, or a test key left in
a config would then accept every command and every access list from anyone. So a config's
key must decode to a point of the curve (RFC 8032 5.1.3) whose multiple by 8 is not the
identity. Done once per key, at config load, in pure Python: two modular exponentiations
and three point doublings, ~0.1 ms.
"""

P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z


def decode(raw: bytes) -> Point | None:
    """The point `raw` encodes (RFC 8032 5.1.3), or None: not 32 bytes, y not below p,
    x^2 with no square root, or x = 0 with the sign bit set."""
    if len(raw) != 32:
        return None
    y = int.from_bytes(raw, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else (0, y, 1, 0)
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def double(point: Point) -> Point:
    """point + point (RFC 8032 5.1.4's addition, which holds for equal points)."""
    x, y, z, t = point
    a = (y - x) * (y - x) % P
    b = (y + x) * (y + x) % P
    c = 2 * t * t * D % P
    d = 2 * z * z % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def is_identity(point: Point) -> bool:
    x, y, z, _ = point
    return x % P == 0 and (y - z) % P == 0


def problem(raw: bytes) -> str | None:
    """Why `raw` cannot be a config's Ed25519 public key, or None when it can."""
    point = decode(raw)
    if point is None:
        return "it is not a point of the Ed25519 curve"
    for _ in range(3):
        point = double(point)
    if is_identity(point):
        return "it is a point of small order, which verifies forged signatures"
    return None
