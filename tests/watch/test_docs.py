"""The monitoring guide's defaults are the rules' defaults, and it names every rule."""

from __future__ import annotations

import re
from pathlib import Path

from marketlab.watch import DEFAULTS, RULES

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "monitoring.md"


def test_the_guide_gives_every_default_as_the_code_has_it():
    text = GUIDE.read_text()
    given = re.findall(r"`(\w+)` \((\d+(?:\.\d+)?)\)", text)
    assert len(given) >= 20
    for name, value in given:
        assert getattr(DEFAULTS, name) == float(value), name
    named = {name for name, _ in given}
    numeric = {k for k, v in DEFAULTS.as_dict().items() if isinstance(v, int | float)}
    assert numeric - named == {"recent"}  # (how many resolved alerts lab.alerts() keeps)


def test_the_readme_gives_every_rule_and_its_defaults_as_the_code_has_them():
    text = (GUIDE.parents[2] / "README.md").read_text()
    section = text.split("### Monitoring and alerts")[1].split("\n## ")[0]
    assert all(f"| `{rule}` |" in section for rule in RULES)
    given = re.findall(r"`(\w+)` \((\d+(?:\.\d+)?)\)", section)
    assert len(given) >= 20
    for name, value in given:
        assert getattr(DEFAULTS, name) == float(value), name


def test_the_guide_names_every_rule():
    text = GUIDE.read_text()
    assert all(f"| `{rule}` |" in text for rule in RULES)
