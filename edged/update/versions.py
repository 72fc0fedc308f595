"""The order of release versions, for the downgrade check of `update.apply`.

A release's version is its wheel's (setuptools writes the PEP 440 normal form of
`edged.__version__`), so versions compare as PEP 440 says: `1.2.0.dev1 < 1.2.0a1 <
1.2.0b2 < 1.2.0rc1 < 1.2.0 < 1.2.0.post1 < 1.2.1`, `1.2 == 1.2.0`, and a local label
(`1.2.0+pi`) after the release it labels, before its post-release. Comparing only the
leading numbers took `1.2.0rc1` for `1.2.0`, so a node on 1.2.0 took its own release
candidate without `allow_downgrade`.

`packaging` (the PyPA's implementation of PEP 440, a dependency of python-can and so on
every node) does the parsing and the order; it is imported with the first comparison, at an
`update.apply`, not by a node that never updates.

A name the launcher takes as a release but that is no PEP 440 version (`nightly`) sorts
before every version: a node never takes it for newer, only with `allow_downgrade`.
"""

from typing import Any

NOT_A_VERSION: tuple[Any, ...] = (0,)
"""The key of a name that is no PEP 440 version: before every version's."""


def release_key(version: str) -> tuple[Any, ...]:
    """A key that sorts versions as PEP 440 does (module docstring); never raises."""
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version))
    except InvalidVersion:
        return NOT_A_VERSION
