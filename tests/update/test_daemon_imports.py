"""A node at rest has not loaded the code that reads, verifies and downloads a release
bundle (its pydantic manifest, the platform tables, the HTTP download): it loads on the
first `update.apply` (tests/integration/updates run that path in a real daemon). Nor the
code that installs, checks and removes a release (`edged.update.install`): on an update's
install, or at a start that finds a release to remove."""

from tests.helpers.daemon_imports import loaded_of

BUNDLE_CODE = (
    "edged.release.bundle",
    "edged.release.manifest",
    "edged.release.platforms",
    "edged.update.download",
    "packaging.version",  # the downgrade check's, at an update.apply
)


def test_a_node_at_rest_has_not_loaded_the_release_bundle_code() -> None:
    assert loaded_of(BUNDLE_CODE) == []


def test_a_node_at_rest_has_not_loaded_the_code_that_installs_a_release() -> None:
    assert loaded_of(("edged.update.install",)) == []


def test_a_node_at_rest_has_loaded_the_update_manager_that_reports_its_state() -> None:
    assert loaded_of(("edged.update.manager", "edged.update.wiring")) == [
        "edged.update.manager",
        "edged.update.wiring",
    ]
