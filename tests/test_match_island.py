"""`match` on Oxygen icons that share one small drawing (query/verify.py `island`): a held-out
panel applet or chart icon is no copy of a stored one that shows a few of the same small
icons or the same pie, while edited copies of the stored icons are still found."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

import lookalike
from lookalike.testing.copies import COPY_TRANSFORMS
from lookalike.testing.photos import jpeg_base64, oxygen_icon, require_pictures

ICONS = Path("/usr/share/icons/oxygen/base/256x256")
STORED = ["applets/org.kde.plasma.taskmanager", "applets/org.kde.plasma.windowlist", "applets/org.kde.plasma.kicker",
          "apps/partitionmanager", "devices/drive-harddisk", "apps/kformula"]
#: more panel applets made of the same small icons, stored
NEIGHBOURS = ["applets/org.kde.plasma.quicklaunch", "applets/org.kde.plasma.icontasks"]
#: held-out icons: each shares a drawing (small icons, a pie) with a stored one, copies of none
OUTSIDE = ["applets/org.kde.plasma.kickerdash", "applets/org.kde.plasma.kickoff", "apps/kdf"]

require_pictures(ICONS / "apps" / "kdf.png", package="oxygen-icon-theme")

b64 = partial(jpeg_base64, quality=92)


icon = oxygen_icon  # the tests name icons by "folder/stem"


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("island"))
    c = db.collection("icons", create=True)
    c.upsert([{"_id": n, "_base64": b64(icon(n))} for n in STORED + NEIGHBOURS])
    yield c
    db.close()


@pytest.mark.parametrize("name", OUTSIDE)
@pytest.mark.parametrize("edit", ["none", "border", "letterbox", "jpeg", "logo", "contrast", "caption"])
def test_an_icon_sharing_a_small_drawing_is_no_copy(col, name, edit):
    im = icon(name) if edit == "none" else COPY_TRANSFORMS[edit](icon(name), 3)
    assert col.match({"base64": b64(im)})["hits"] == [], (name, edit)


@pytest.mark.parametrize("name", STORED[:4])
@pytest.mark.parametrize("edit", ["border", "mirror", "brightness", "caption", "jpeg", "letterbox"])
def test_copies_of_the_stored_icons_are_found(col, name, edit):
    hits = col.match({"base64": b64(COPY_TRANSFORMS[edit](icon(name), 5))})["hits"]
    assert hits and hits[0]["_id"] == name, (name, edit, hits[:2])
