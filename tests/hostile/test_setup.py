"""Issue 10, point 9: installing mlbench prints no warnings from its own packaging metadata."""

from __future__ import annotations

import pytest

from support import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_license_is_an_spdx_string_and_the_build_backend_supports_it():
    # setuptools >= 77 warns (three times per install) about `project.license` as a table; the SPDX string
    # form is what it asks for, and it needs setuptools >= 77 to be understood.
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    requires = meta["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=") and int(r.split(">=")[1].split(".")[0]) >= 77
               for r in requires), requires
