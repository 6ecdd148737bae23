"""The root conftest's rule for not importing test modules that ``-m`` deselects entirely."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
_spec = importlib.util.spec_from_file_location("root_conftest_rule", ROOT_CONFTEST)
rule = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rule)

FAST = "not slow and not integration and not notebook"


def _module(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "test_probe.py"
    path.write_text(source, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "source, marks",
    [
        ("import pytest\npytestmark = pytest.mark.integration\n", {"integration"}),
        ("import pytest\npytestmark = [pytest.mark.integration, pytest.mark.slow]\n", {"integration", "slow"}),
        ("from pytest import mark\npytestmark = mark.notebook\n", {"notebook"}),
        ("import pytest\npytestmark: list = [pytest.mark.skipif(True, reason='x')]\n", {"skipif"}),
        ("import pytest\nneeds = pytest.mark.integration\npytestmark = needs\n", set()),  # built from a variable
        ("import pytest\n\n@pytest.mark.integration\ndef test_x():\n    pass\n", set()),  # per-test marks only
        ("pytestmark = (\n", set()),  # a syntax error: left to pytest
    ],
)
def test_module_level_marks_are_read_without_importing(tmp_path, source, marks):
    assert rule._module_marks(_module(tmp_path, source)) == marks


@pytest.mark.parametrize(
    "expression, marks, skipped",
    [
        (FAST, {"integration"}, True),
        (FAST, {"slow", "filterwarnings"}, True),
        (FAST, {"skipif"}, False),
        ("integration", {"integration"}, False),
        ("integration", {"slow"}, False),  # a test of the module may still carry integration
        ("not slow", {"integration"}, False),
        ("not integration or slow", {"integration"}, False),  # a test may add slow
        ("not (integration or notebook)", {"notebook"}, True),
        ("slow(reason='x')", {"integration"}, False),  # keyword matching: left to pytest
        ("not integration and", {"integration"}, False),  # invalid: pytest reports it
    ],
)
def test_a_module_is_skipped_only_when_no_test_of_it_can_match(expression, marks, skipped):
    assert rule._never_selected(expression, marks) is skipped
