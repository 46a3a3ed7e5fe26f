"""bench/copyset.py's pixel rule for one artwork in another geometry (`copy_of`), on Oxygen's real
icons: a held-out icon that is a crop of a stored one, or a stored one inside a plain border, is
left out of the set; icons that only share a motif stay."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from PIL import Image

from lookalike.testing.copies import COPY_TRANSFORMS, compose, crop60
from lookalike.testing.photos import require_pictures

ICONS = Path("/usr/share/icons/oxygen/base/256x256")
require_pictures(ICONS, package="oxygen-icon-theme")

_spec = importlib.util.spec_from_file_location("copyset", Path(__file__).parent.parent / "bench" / "copyset.py")
copyset = importlib.util.module_from_spec(_spec)
sys.modules["copyset"] = copyset
_spec.loader.exec_module(copyset)


def icon(name: str) -> Image.Image:
    folder, stem = name.split("/")
    return copyset._flatten(Image.open(ICONS / folder / f"{stem}.png"))


@pytest.mark.parametrize(("copy", "original"), [
    ("apps/clock", "apps/planner"),                  # the planner's clock: a 55 % crop, calendar behind
    ("places/network-workgroup", "categories/applications-internet"),  # the globe framed, a stand over it
    ("applets/org.kde.plasma.taskmanager", "applets/org.kde.plasma.windowlist"),  # the list less its header
])
def test_an_icon_drawn_from_another_icons_artwork_is_a_copy_of_it(copy, original):
    # (devices/media-optical-audio is actions/tools-rip-audio-cd less two pages that, with the
    # disc redrawn a few pixels larger, make 0.22 of the drawn pixels: past a fifth, not a copy)
    assert copyset.copy_of(icon(copy), icon(original))


@pytest.mark.parametrize(("a", "b"), [
    ("apps/internet-web-browser", "places/network-workgroup"),  # the globe inside a detailed window
    ("apps/kbruch", "apps/kformula"),                          # one chalkboard, other writing
    ("apps/kmag", "devices/input-keyboard"),
    ("apps/konqueror", "devices/computer-laptop"),
    ("apps/kgpg", "status/user-trash-full"),
    ("devices/printer-laser", "apps/clock"),
    ("categories/applications-office", "devices/drive-removable-media-usb"),
    ("apps/kdf", "apps/system-diagnosis"),
])
def test_icons_sharing_a_motif_or_a_white_background_are_not_copies(a, b):
    assert not copyset.copy_of(icon(a), icon(b))


@pytest.mark.parametrize("name", ["apps/kmag", "devices/tablet", "actions/tools-rip-audio-cd"])
def test_a_transformed_copy_of_an_icon_is_a_copy(name):
    original = icon(name)
    assert copyset.copy_of(compose(crop60, COPY_TRANSFORMS["logo"])(original, 3), original)
    assert copyset.copy_of(COPY_TRANSFORMS["border"](original, 5), original)
    assert not copyset.copy_of(original.rotate(90), original)


def test_the_set_leaves_out_a_held_out_icon_that_is_a_crop_of_a_stored_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_COPYSET_CACHE", str(tmp_path))
    stored = [("apps-planner", icon("apps/planner")), ("places-network-workgroup", icon("places/network-workgroup"))]
    held = [("apps-clock", icon("apps/clock")), ("apps-kbruch", icon("apps/kbruch"))]
    why: dict[str, tuple[str, str]] = {}
    kept_stored, kept_held = copyset._distinct([stored, held], why)
    assert [n for n, _ in kept_stored] == ["apps-planner", "places-network-workgroup"]
    assert [n for n, _ in kept_held] == ["apps-kbruch"]
    assert why == {"apps-clock": ("copy_of", "apps-planner")}
    # the verdicts are cached under the names: a second build reads them
    assert list(tmp_path.glob("artwork-*.json"))
    assert copyset._distinct([stored, held]) == [kept_stored, kept_held]


def test_the_set_leaves_out_a_held_out_icon_of_which_a_stored_one_is_a_crop(tmp_path, monkeypatch):
    # one artwork either way round: the stored clock is the held-out planner's lower-left
    # 55 %, so the planner has a copy in the collection and is no non-copy
    monkeypatch.setenv("LOOKALIKE_COPYSET_CACHE", str(tmp_path))
    stored = [("apps-clock", icon("apps/clock")), ("apps-internet-web-browser", icon("apps/internet-web-browser"))]
    held = [("apps-planner", icon("apps/planner")), ("places-network-workgroup", icon("places/network-workgroup")),
            ("apps-kformula", icon("apps/kformula"))]
    why: dict[str, tuple[str, str]] = {}
    kept_stored, kept_held = copyset._distinct([stored, held], why)
    assert [n for n, _ in kept_stored] == ["apps-clock", "apps-internet-web-browser"]
    # the workgroup globe is the browser's globe (a crop) with a stand over it: left out too
    assert [n for n, _ in kept_held] == ["apps-kformula"]
    assert why == {"apps-planner": ("copy_of", "apps-clock"),
                   "places-network-workgroup": ("copy_of", "apps-internet-web-browser")}
