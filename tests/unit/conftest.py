"""Fixtures shared by the dashboard tests (test_dashboards, test_dashboard_lint, test_dashboard_schema):
the three dashboards rendered once per session with the default thresholds and with a day-2 override
(CHANGED_LEAF), instead of once per test module."""
import pytest
from test_dashboards import CHANGED_LEAF, render


@pytest.fixture(scope="session")
def rendered_dashboards(tmp_path_factory):
    """{"default": {uid: dashboard}, "day-2": {uid: dashboard}}"""
    return {"default": render(tmp_path_factory.mktemp("dashboards-default"), {}),
            "day-2": render(tmp_path_factory.mktemp("dashboards-day2"), CHANGED_LEAF)}
