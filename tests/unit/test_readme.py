"""The README stays true: every setting is documented with its variable name."""

from __future__ import annotations

from pathlib import Path

from okyaku.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme():
    missing = []
    for name, field in Settings.model_fields.items():
        variable = str(field.validation_alias or name).upper()
        if f"`{variable}`" not in README:
            missing.append(variable)
    assert missing == [], f"document these variables in README.md: {missing}"
