"""How a scenario's report counts an attack: held, not held, or not held and fixed elsewhere."""

from hil.rig.report import Report


def test_a_held_attack_passes() -> None:
    r = Report("t", verbose=False)
    assert r.held("x", True) and r.ok
    assert r.checks[0].name == "x: held"


def test_an_attack_not_held_fails_the_run() -> None:
    r = Report("t", verbose=False)
    r.held("x", False, "the door opened")
    assert not r.ok and r.checks[0].name == "x: NOT HELD" and len(r.failed) == 1


def test_an_attack_fixed_elsewhere_is_shown_open_and_does_not_fail_the_run() -> None:
    r = Report("t", verbose=False)
    r.held("x", True)
    r.held("y", False, "a reply landed", open_in="i13u")
    assert r.ok and r.failed == [] and [c.name for c in r.open] == ["y: NOT HELD"]
    assert "1 open (i13u)" in r.summary()
    assert r.as_dict()["checks"][1]["open_in"] == "i13u"


def test_a_held_attack_marked_open_elsewhere_is_just_held() -> None:
    r = Report("t", verbose=False)
    r.held("y", True, open_in="i13u")
    assert r.ok and r.open == [] and r.checks[0].open_in == ""
