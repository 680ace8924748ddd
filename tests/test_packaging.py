"""Packaging metadata that build backends accept without deprecation warnings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_expression_and_the_backend_can_read_it():
    """PEP 639: ``license = "MIT"``; the table form is deprecated by setuptools 77, which is also the first
    version that reads the string form, hence the build requirement's minimum."""
    config = tomllib.loads(PYPROJECT.read_text())
    assert config["project"]["license"] == "MIT"
    assert not any(c.startswith("License ::") for c in config["project"].get("classifiers", [])), \
        "license classifiers are refused beside an SPDX expression"
    [setuptools] = [r for r in config["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert minimum and int(minimum.group(1)) >= 77, setuptools
    assert all((PYPROJECT.parent / name).is_file() for name in config["project"]["license-files"]), \
        "the licence text ships with the package"
