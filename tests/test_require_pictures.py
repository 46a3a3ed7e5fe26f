"""lookalike/testing/photos.py `require_pictures`: a test on installed pictures skips where they
are missing, and fails where LOOKALIKE_REQUIRE_PICTURES says they must be there (.ci/run)."""
from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.testing.photos import require_pictures


def test_present_pictures_pass(tmp_path: Path):
    (tmp_path / "a.png").write_bytes(b"x")
    require_pictures(tmp_path / "a.png", tmp_path, package="some-package")


def test_a_missing_picture_skips(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("LOOKALIKE_REQUIRE_PICTURES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="some-package not installed"):
        require_pictures(tmp_path, tmp_path / "missing.png", package="some-package")


def test_a_missing_picture_fails_where_required(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_REQUIRE_PICTURES", "1")
    with pytest.raises(pytest.fail.Exception, match="missing.png missing"):
        require_pictures(tmp_path / "missing.png", package="some-package")
