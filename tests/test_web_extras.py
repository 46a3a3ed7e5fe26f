"""The page's query extras in headless Chromium: keywords (alone and beside the picture), a box
drawn on the query picture, and the object regions the server proposes (web/static/extras.js).
Uses test_web.py's server, browser and Page; screenshots go to test-artifacts/web/."""
from __future__ import annotations


from PIL import Image

from lookalike.sample import COLORS, draw_item

from test_web import Page, browser, server, served_db, web_data  # noqa: F401  (fixtures)

LEFT_ITEM, RIGHT_ITEM = ("stripes", "red", 101, "square"), ("dots", "green", 115, "circle")


def composite_file(tmp_path) -> str:
    """A catalogue item (as drawn for the catalogue) on each half of one picture."""
    out = Image.new("RGB", (600, 300), "white")
    for n, (pattern, color, seed, shape) in enumerate((LEFT_ITEM, RIGHT_ITEM)):
        out.paste(draw_item(pattern, COLORS[color], seed=seed, size=300, shape=shape).convert("RGB"), (300 * n, 0))
    path = tmp_path / "two items.png"
    out.save(path)
    return str(path)


def engine_ids(db, query: dict, **options) -> list[str]:
    return [h["_id"] for h in db.collection("patterns").search(query, k=24, **options)["hits"]]


def drag(page, x0: float, y0: float, x1: float, y1: float) -> None:
    """Drag on the query picture from (x0, y0) to (x1, y1), fractions of its size."""
    r = page.locator("#qv-img").bounding_box()
    page.mouse.move(r["x"] + x0 * r["width"], r["y"] + y0 * r["height"])
    page.mouse.down()
    page.mouse.move(r["x"] + (x0 + x1) / 2 * r["width"], r["y"] + (y0 + y1) / 2 * r["height"], steps=4)
    page.mouse.move(r["x"] + x1 * r["width"], r["y"] + y1 * r["height"], steps=4)
    page.mouse.up()


def test_draw_a_box_on_the_query_picture_then_find_objects(browser, server, served_db, tmp_path):  # noqa: F811
    tab = Page(browser, server)
    try:
        tab.open()
        path = composite_file(tmp_path)
        data = open(path, "rb").read()
        tab.page.set_input_files("#file", path)
        tab.wait_mode("two items.png")
        tab.page.wait_for_function("!document.querySelector('#query-view').hidden && "
                                   "document.querySelector('#qv-img').naturalWidth > 0")
        drag(tab.page, 0.02, 0.03, 0.48, 0.97)
        tab.wait_mode("part (")
        box = tab.page.evaluate("state.query.extra.box")
        assert abs(box[0] - 0.02) < 0.02 and abs(box[2] - 0.48) < 0.02 and abs(box[3] - 0.97) < 0.02
        ids = tab.ids()
        assert ids == engine_ids(served_db, {"image": data, "box": box})  # exactly the engine's ranking
        assert ids[0].startswith("stripes-red"), ids
        assert tab.page.locator("#qv-box").is_visible()
        tab.shot("20-region-box")

        drag(tab.page, 0.52, 0.03, 0.98, 0.97)  # the other half
        tab.page.wait_for_function("state.query.extra && state.query.extra.box && state.query.extra.box[0] > 0.5 "
                                   "&& !document.querySelector('#results').hasAttribute('aria-busy')")
        right = tab.ids()
        assert right[0].startswith("dots-green"), right
        assert right == engine_ids(served_db, {"image": data, "box": tab.page.evaluate("state.query.extra.box")})

        drag(tab.page, 0.1, 0.1, 0.12, 0.9)  # too thin: refused on the page, the results stay
        assert "larger box" in tab.page.inner_text("#status") and tab.ids() == right

        tab.page.click("#qv-regions-go")
        tab.page.wait_for_function("!document.querySelector('#regions').hidden && "
                                   "document.querySelectorAll('#region-list .region').length > 0 && "
                                   "!document.querySelector('#results').hasAttribute('aria-busy')")
        expected = served_db.collection("patterns").search({"image": data}, k=24, regions=4)["regions"]
        shown = tab.page.locator("#region-list .region").evaluate_all(
            "els => els.map(e => [JSON.parse(e.dataset.box), [...e.querySelectorAll('.card')].map(c => c.dataset.id)])")
        assert shown == [[r["box"], [h["_id"] for h in r["hits"]]] for r in expected]
        assert tab.page.locator("#qv-marks .qv-mark").count() == len(expected)
        # a proposal on each item, each finding the item's pattern (the whole picture is both)
        assert any(ids_[0].startswith("stripes") for box_, ids_ in shown if box_[2] <= 0.55)
        assert any(ids_[0].startswith("dots") for box_, ids_ in shown if box_[0] >= 0.45)
        tab.shot("21-regions")
        tab.page.locator('#qv-marks .qv-mark[data-n="1"] .qv-tag').click()  # a proposed box searched on its own
        tab.wait_mode("part (")
        assert tab.page.evaluate("state.query.extra.box") == expected[0]["box"]
        assert tab.errors == []
    finally:
        tab.close()


def test_keywords_alone_and_beside_the_picture(browser, server, served_db):  # noqa: F811
    tab = Page(browser, server)
    try:
        tab.open()
        tab.page.fill("#keywords", "purple")
        tab.page.click("#keywords-go")
        tab.wait_mode("keywords “purple”")
        assert sorted(tab.ids()) == sorted(engine_ids(served_db, {"keywords": "purple"})) and len(tab.ids()) == 4
        assert tab.page.locator("#query-view").is_hidden()  # no picture in a keywords-only query
        tab.page.locator('#results .card[data-id="dots-purple-circle"] .thumb').click()
        tab.wait_mode("more like “dots-purple-circle”")
        tab.page.wait_for_function("!document.querySelector('#query-view').hidden")
        tab.page.fill("#keywords", "square")
        tab.page.press("#keywords", "Enter")
        tab.wait_mode("with keywords “square”")
        assert tab.ids() == engine_ids(served_db, {"id": "dots-purple-circle", "keywords": "square"})
        assert all(i.endswith("square") for i in tab.ids()[:12])  # the keyword matches first
        tab.page.fill("#keywords", "***")
        tab.page.click("#keywords-go")
        tab.page.wait_for_function("document.querySelector('#status').classList.contains('error')")
        assert "no word" in tab.page.inner_text("#status")
        assert tab.errors == [] or all("400" in e for e in tab.errors)
    finally:
        tab.close()
