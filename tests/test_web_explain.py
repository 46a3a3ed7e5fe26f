"""The web page's "Why this?" box (explain) and "Hide copies" toggle (collapse), issue 20, in
headless Chromium (see test_web.py): what the page shows is what the engine answers."""
from __future__ import annotations

import base64

import pytest
from PIL import Image

from lookalike.testing.copies import crop60, down5, encode, jpeg10, mirror
from test_web import Page, browser, server, served_db, web_data  # noqa: F401 (fixtures)

data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos(served_db):  # noqa: F811
    """Collection 'photos': three photographs, each with three copies, and the stereo pair."""
    col = served_db.collection("photos", create=True)
    records = []
    for name in ("coffee", "chelsea", "rocket"):
        original = Image.fromarray(getattr(data, name)()).convert("RGB")
        for suffix, image in (("", original), ("-small", down5(original, 1)), ("-q10", jpeg10(original, 1)),
                              ("-mirror", mirror(original, 1))):
            records.append({"_id": name + suffix, "_base64": base64.b64encode(encode(image)).decode(),
                            "photo": name})
    left, right, _ = data.stereo_motorcycle()
    for rid, pixels in (("stereo-left", left), ("stereo-right", right)):
        records.append({"_id": rid, "_base64": base64.b64encode(encode(Image.fromarray(pixels))).decode(),
                        "photo": "stereo"})
    assert {r["status"] for r in col.upsert(records)} == {"inserted"}
    return col


@pytest.fixture
def tab(browser, server):  # noqa: F811
    page = Page(browser, server)
    yield page
    page.close()


def test_why_this_shows_the_engine_explanation(tab, photos):
    tab.open("photos")
    assert tab.page.is_hidden("#collapse-label")  # browsing: nothing to collapse
    tab.page.locator('#results .card[data-id="coffee"] .thumb').click()
    tab.wait_mode("more like “coffee”")
    expected = {h["_id"]: h for h in photos.search({"id": "coffee"}, k=24, explain=True)["hits"]}
    assert tab.ids() == list(expected)
    card = tab.page.locator('#results .card[data-id="coffee-q10"]')
    why = card.locator("details.why")
    assert why.count() == 1 and why.get_attribute("open") is None
    why.locator("summary").click()
    parts = why.locator("li.part").all_inner_texts()
    looks = expected["coffee-q10"]["_explain"]["parts"]["visual"]
    assert parts == [f"looks +{looks:.3f}"]
    labels = [x["label"] for x in expected["coffee-q10"]["_explain"]["labels"]]
    assert why.locator(".shared-labels").inner_text() == "Same label: " + ", ".join(labels)
    assert why.locator(".shared-colors .pair").count() == len(expected["coffee-q10"]["_explain"]["colors"]) > 0
    assert "A copy of your picture" in why.locator(".copy").inner_text()
    assert tab.page.locator('#results .card[data-id="stereo-left"] details.why .copy').count() == 0
    tab.shot("11-why-this")
    assert tab.errors == []


def test_a_crop_is_framed_where_it_lies_in_the_original(tab, photos, tmp_path):
    original = Image.fromarray(data.coffee()).convert("RGB")
    query = tmp_path / "crop.jpg"
    query.write_bytes(encode(crop60(original, 3)))
    tab.open("photos")
    tab.page.set_input_files("#file", str(query))
    tab.wait_mode("crop.jpg")
    engine = {h["_id"]: h for h in photos.search({"image": query.read_bytes()}, k=24, explain=True)["hits"]}
    region = engine["coffee"]["_explain"]["duplicate"]["region"]
    frame = tab.page.locator('#results .card[data-id="coffee"] .thumb .region')
    frame.wait_for()
    square = tab.page.locator('#results .card[data-id="coffee"] .thumb img').bounding_box()
    shown = square["width"] * original.height / original.width  # shown whole: letterboxed top and bottom
    top = square["y"] + (square["height"] - shown) / 2
    box = frame.bounding_box()
    assert box["x"] == pytest.approx(square["x"] + region[0] * square["width"], abs=3)
    assert box["y"] == pytest.approx(top + region[1] * shown, abs=3)
    assert box["width"] == pytest.approx((region[2] - region[0]) * square["width"], abs=3)
    assert box["height"] == pytest.approx((region[3] - region[1]) * shown, abs=3)
    tab.page.locator('#results .card[data-id="coffee"] details.why summary').click()
    assert "crop of it" in tab.page.locator('#results .card[data-id="coffee"] .why .copy').inner_text()
    tab.shot("12-crop-framed")
    assert tab.errors == []


def test_hide_copies_shows_one_card_per_picture(tab, photos):
    tab.open("photos")
    tab.page.locator('#results .card[data-id="chelsea"] .thumb').click()
    tab.wait_mode("more like “chelsea”")
    assert tab.page.is_visible("#collapse-label") and len(tab.ids()) == 13
    tab.page.check("#collapse")
    tab.page.wait_for_function("document.querySelectorAll('#results .card').length < 13 && "
                               "!document.querySelector('#results').hasAttribute('aria-busy')")
    expected = photos.search({"id": "chelsea"}, k=24, collapse={"ids": True})["hits"]
    # 3 photos and the stereo pair, one card or two (its views verify as copies: issue 16's known gap)
    assert tab.ids() == [h["_id"] for h in expected] and 4 <= len(expected) <= 5
    for hit in expected:
        note = tab.page.locator(f'#results .card[data-id="{hit["_id"]}"] .copies')
        if hit["_collapsed"]:
            assert note.inner_text() == f"+{hit['_collapsed']} cop{'y' if hit['_collapsed'] == 1 else 'ies'} hidden"
            assert note.get_attribute("title") == ", ".join(hit["_collapsed_ids"])
        else:
            assert note.count() == 0
    tab.shot("13-hide-copies")
    tab.page.uncheck("#collapse")
    tab.page.wait_for_function("document.querySelectorAll('#results .card').length === 13")
    tab.page.click("#clear-query")
    tab.page.wait_for_function("document.querySelector('#mode').textContent.startsWith('Browsing')")
    assert tab.page.is_hidden("#collapse-label")
    assert tab.errors == []
