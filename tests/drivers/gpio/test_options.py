from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from pydantic import BaseModel, ValidationError

from drivers.gpio.board import GpioBoard
from drivers.gpio.options import GpioOptions
from drivers.gpio.pins import HEADER_TO_BCM, bcm
from drivers.registry import driver_class, options_model
from edged.config.loader import driver_options


def options(**kw: Any) -> GpioOptions:
    return GpioOptions.model_validate(kw)


def test_registry_name_gives_the_board_and_its_options() -> None:
    assert driver_class("gpio.gpiozero") is GpioBoard
    assert options_model("gpio.gpiozero") is GpioOptions


@pytest.mark.parametrize("spec", [17, "17", "GPIO17", "BCM17", "BOARD11", "J8:11", "gpio17"])
def test_every_gpiozero_spelling_of_a_pin_is_the_same_bcm_number(spec: object) -> None:
    assert bcm(spec) == 17


def test_header_table_matches_gpiozero_board_info() -> None:
    j8 = MockFactory().board_info.headers["J8"]
    from_gpiozero = {n: int(p.name[4:]) for n, p in j8.pins.items() if p.name.startswith("GPIO")}
    assert from_gpiozero == HEADER_TO_BCM


def test_same_pin_twice_under_two_spellings_names_both_uses() -> None:
    with pytest.raises(ValidationError, match=r"GPIO17 is used twice: doors\[0\].pin and lock.pin"):
        options(doors=[{"name": "front", "pin": 17}], lock={"pin": "BOARD11"})


def test_beam_pin_shared_with_the_panic_button_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"GPIO5 is used twice: beams\[0\].outer and panic"):
        options(beams=[{"door": "front", "outer": 5, "inner": 6}], panic={"pin": 5})


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("GPIO99", "GPIO0 to GPIO27"),
        (40, "GPIO0 to GPIO27"),
        ("BOARD1", "not a GPIO"),  # 3V3
        ("BOARD6", "not a GPIO"),  # ground
        ("WPI0", "not a pin name"),
        ("pin seventeen", "not a pin name"),
        (True, "not a pin"),
        (17.5, "not a pin"),
    ],
)
def test_bad_pin_says_what_is_accepted(spec: object, says: str) -> None:
    with pytest.raises(ValidationError, match=says) as err:
        options(lock={"pin": spec})
    assert "lock.pin" in str(err.value)


def test_pull_down_on_a_pin_with_a_fixed_pull_up_is_refused() -> None:
    with pytest.raises(ValidationError, match="GPIO2 has a fixed pull-up"):
        options(doors=[{"name": "rear", "pin": 2, "pull": "down"}])


def test_outer_and_inner_beam_on_one_pin_is_refused() -> None:
    with pytest.raises(ValidationError, match="same pin GPIO5"):
        options(beams=[{"door": "front", "outer": 5, "inner": "GPIO5"}])


def test_two_door_contacts_with_one_name_are_refused() -> None:
    with pytest.raises(ValidationError, match="front appear"):
        options(doors=[{"name": "front", "pin": 5}, {"name": "front", "pin": 6}])


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ValidationError, match="extra"):
        options(doors=[{"name": "front", "pin": 5, "debounce": 0.1}])


def test_control_socket_is_refused_on_real_pins() -> None:
    with pytest.raises(ValidationError, match="test rig only and needs pin_factory = 'mock'"):
        options(mock_control="/tmp/gpio.sock")


def test_relative_control_socket_is_under_the_config_folder(tmp_path: Any) -> None:
    o = driver_options("gpio.gpiozero", {"pin_factory": "mock", "mock_control": "g.sock"}, tmp_path)
    assert o.mock_control == tmp_path / "g.sock"


def test_pins_are_written_back_with_gpiozero_names() -> None:
    o = options(lock={"pin": "BOARD11"})
    assert o.model_dump(mode="json")["lock"]["pin"] == "GPIO17"
    assert GpioOptions.model_validate(o.model_dump(mode="json")) == o


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, field in model.model_fields.items():
        out.append((prefix + key, field))
        for arg in getattr(field.annotation, "__args__", ()) or (field.annotation,):
            inner = getattr(arg, "__args__", (arg,))
            for t in inner:
                if isinstance(t, type) and issubclass(t, BaseModel):
                    out.extend(_fields(t, f"{prefix}{key}."))
    return out


def test_every_option_is_described() -> None:
    fields = _fields(GpioOptions)
    assert len(fields) > 40  # the nested parts were walked
    missing = [name for name, field in fields if not field.description]
    assert missing == []
