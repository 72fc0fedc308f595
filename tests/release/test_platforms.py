"""Which wheels a node accepts: PEP 425/600 tags against the machine it is."""

import pytest

from edged.release.platforms import TARGETS, Target, glibc_needed, wheel_fits

PI64, PI32 = TARGETS["aarch64"], TARGETS["armv7l"]


@pytest.mark.parametrize(
    ("wheel", "target", "fits"),
    [
        ("pydantic-2.14.4-py3-none-any.whl", PI32, True),
        ("pyserial-3.5-py2.py3-none-any.whl", PI64, True),
        ("cryptography-50.0.2-cp311-abi3-manylinux_2_34_aarch64.whl", PI64, True),
        ("cryptography-50.0.2-cp37-abi3-manylinux_2_28_aarch64.whl", PI64, True),
        ("cryptography-50.0.2-cp311-abi3-manylinux_2_34_x86_64.whl", PI64, False),
        ("cryptography-50.0.2-cp311-abi3-manylinux_2_39_aarch64.whl", PI64, False),  # glibc
        ("cryptography-50.0.2-cp311-abi3-manylinux_2_31_armv7l.whl", PI32, True),
        ("cryptography-50.0.2-cp311-abi3-manylinux_2_31_armv7l.whl", PI64, False),
        ("cffi-2.1.1-cp311-cp311-linux_armv7l.whl", PI32, True),  # a wheel built on a Pi
        ("cffi-2.1.1-cp312-cp312-manylinux_2_17_aarch64.whl", PI64, False),  # another Python
        ("cffi-2.1.1-cp311-cp311-musllinux_1_2_aarch64.whl", PI64, False),
        (
            "aiohttp-3.14.5-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
            PI64,
            True,
        ),
        ("frozenlist-1.8.0-cp311-cp311-manylinux1_x86_64.whl", PI64, False),
        ("not a wheel.whl", PI64, False),
        ("edged-0.1.0-py3-none-any.tar.gz", PI64, False),
    ],
)
def test_a_wheel_fits_only_the_machines_its_tags_name(
    wheel: str, target: Target, fits: bool
) -> None:
    assert wheel_fits(wheel, target) is fits


def test_platform_tags_for_pip_go_down_to_manylinux2014() -> None:
    tags = PI64.platform_tags()
    assert tags[0] == "manylinux_2_36_aarch64"
    assert "manylinux_2_17_aarch64" in tags and "linux_aarch64" in tags


def test_the_glibc_a_wheel_needs_is_its_oldest_manylinux_tag() -> None:
    wheel = "x-1-cp311-cp311-manylinux2014_aarch64.manylinux_2_28_aarch64.whl"
    assert glibc_needed(wheel, "aarch64") == (2, 17)
    assert glibc_needed("x-1-py3-none-any.whl", "aarch64") is None
