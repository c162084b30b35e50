"""Release files: license, typing marker, changelog, docs, version."""

from __future__ import annotations

import tomllib
from pathlib import Path

import thinkonce

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_matches_pyproject() -> None:
    assert thinkonce.__version__ == _pyproject()["project"]["version"]


def test_license_is_the_apache_2_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert _pyproject()["project"]["license"] == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "9. Accepting Warranty or Additional Liability" in text
    assert "Copyright 2026 the thinkonce authors" in text


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "src" / "thinkonce" / "py.typed").exists()
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["thinkonce"]


def test_changelog_and_docs() -> None:
    log = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in log and f"## [{thinkonce.__version__}]" in log
    index = (ROOT / "docs" / "README.md").read_text()
    assert "architecture.md" in index and (ROOT / "docs" / "architecture.md").exists()
    readme = (ROOT / "README.md").read_text()
    assert "docs/architecture.md" in readme and "../shared" not in readme
