"""The order of release versions, for the downgrade check of `update.apply`.

A release's version is its wheel's (setuptools writes the PEP 440 normal form of
`edged.__version__`), so versions compare as PEP 440 says: `1.2.0.dev1 < 1.2.0a1 <
1.2.0b2 < 1.2.0rc1 < 1.2.0 < 1.2.0.post1 < 1.2.1`, `1.2 == 1.2.0`, and a local label
(`1.2.0+pi`) after the release it labels, before its post-release. Comparing only the
leading numbers took `1.2.0rc1` for `1.2.0`, so a node on 1.2.0 took its own release
candidate without `allow_downgrade`.

`packaging` does this, but is no runtime dependency of edged (the daemon would carry it
for one comparison): this is PEP 440's grammar (its appendix B, every spelling it
normalises) and its ordering (packaging's `_cmpkey`), and tests/update/test_versions.py
holds it to `packaging` on generated and hostile input.

A name the launcher takes as a release but that is no PEP 440 version (`nightly`) sorts
before every version: a node never takes it for newer, only with `allow_downgrade`.
"""

import re

_VERSION = re.compile(
    r"""
    v?
    (?:(?P<epoch>[0-9]+)!)?
    (?P<release>[0-9]+(?:\.[0-9]+)*)
    (?:[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?:-(?P<post_n1>[0-9]+)|[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?)?
    (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)
_PRE = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
_SEPARATORS = re.compile(r"[-_.]")

NOT_A_VERSION: tuple[object, ...] = (0,)
"""The key of a name that is no PEP 440 version: before every version's."""


def release_key(version: str) -> tuple[object, ...]:
    """A key that sorts versions as PEP 440 does (module docstring); never raises."""
    m = _VERSION.fullmatch(version.strip())
    if m is None:
        return NOT_A_VERSION
    release = [int(x) for x in m["release"].split(".")]
    while release and release[-1] == 0:  # 1.2 == 1.2.0
        release.pop()
    post = m["post_l"] is not None or m["post_n1"] is not None
    dev = m["dev_l"] is not None
    # each part as a tuple whose first item says "absent" or "present" in the order PEP 440
    # gives absence (a release's missing pre sorts after its pre-releases, and so on)
    if m["pre_l"] is not None:
        pre: tuple[int, ...] = (1, _PRE[m["pre_l"].lower()], int(m["pre_n"] or 0))
    else:  # 1.0.dev1 sorts before 1.0a1: a dev release of the release itself
        pre = (0,) if dev and not post else (2,)
    post_key = (1, int(m["post_n1"] or m["post_n2"] or 0)) if post else (0,)
    dev_key = (0, int(m["dev_n"] or 0)) if dev else (1,)
    local: tuple[object, ...] = (0,)
    if m["local"] is not None:  # numbers after words; more segments after a prefix of them
        local = (1, tuple(
            (1, int(s)) if s.isdigit() else (0, s.lower())
            for s in _SEPARATORS.split(m["local"])
        ))  # fmt: skip
    epoch = int(m["epoch"] or 0)
    return (1, epoch, tuple(release), pre, post_key, dev_key, local)
