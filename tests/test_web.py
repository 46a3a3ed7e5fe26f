"""The web page and the read routes behind it.

Engine parts (thumbnails, listing, facets) are tested through the Python API and plain
HTTP; the page itself in Debian's headless Chromium driven by Playwright, against a real
server on loopback started here (never `playwright install`: no browser downloads).
Screenshots go to `test-artifacts/web/`.
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

import lookalike
from lookalike.errors import BadRequest, NotFound
from lookalike.sample import COLORS, draw_item
from lookalike.testing.servers import serving, serving_files

from conftest import jpeg_bytes, read_jsonl

CHROMIUM = Path(os.environ.get("LOOKALIKE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "web"
ADMIN, SEARCH = "admin-key-for-tests", "search-key-for-tests"


def b64_image(pattern: str, color: str, seed: int) -> str:
    return base64.b64encode(jpeg_bytes(draw_item(pattern, COLORS[color], seed=seed))).decode()


# -- engine: thumbnails, listing, facets ----------------------------------------------------
def test_thumbnail_kept_for_file_and_base64_replaced_and_deleted(db, tmp_path):
    col = db.collection("t", create=True)
    path = tmp_path / "a.png"
    draw_item("stripes", COLORS["red"], seed=1, size=600).save(path)
    col.upsert([{"_id": "a", "_file": str(path)}, {"_id": "b", "_base64": b64_image("dots", "blue", 2)}])
    for rid in ("a", "b"):
        thumb = Image.open(io.BytesIO(col.thumbnail(rid)))
        assert thumb.format == "JPEG" and max(thumb.size) == 160
        assert len(col.thumbnail(rid)) < 20_000
    first = col.thumbnail("a")
    col.upsert([{"_id": "a", "_file": str(path), "price": 3}])  # metadata only: the thumbnail stays
    assert col.thumbnail("a") == first
    col.upsert([{"_id": "a", "_base64": b64_image("dots", "green", 3)}])  # new image: a new thumbnail
    assert col.thumbnail("a") != first
    col.upsert([{"_id": "a", "_vector": [0.5] * col.settings.dim}])  # no image kept any more
    with pytest.raises(NotFound, match="no thumbnail"):
        col.thumbnail("a")
    col.delete(["b"])
    with pytest.raises(NotFound):
        col.thumbnail("b")


def test_store_reads_many_thumbnails_at_once_as_one_by_one(db):
    """The batch read `duplicates` uses (store `thumbnails`) returns what `thumbnail` does, and
    leaves out records without one and unknown ids, over more ids than one SQL block."""
    col = db.collection("many", create=True)
    col.upsert([{"_id": f"r{n}", "_base64": b64_image("dots", "blue", n)} for n in range(3)]
               + [{"_id": "v", "_vector": [0.5] * col.settings.dim}])
    store = col._store
    ids = [f"r{n}" for n in range(3)] + ["v", "unknown"] + [f"x{n}" for n in range(600)]
    assert store.thumbnails(ids) == {f"r{n}": store.thumbnail(f"r{n}") for n in range(3)}
    assert len({store.thumbnail(f"r{n}") for n in range(3)}) == 3


def test_thumbnails_off_keeps_none_and_drops_existing(db):
    col = db.collection("t", create=True)
    col.upsert([{"_id": "a", "_base64": b64_image("stripes", "red", 1)}])
    assert col.thumbnail("a")
    col, _ = db.ensure_collection("t", thumbnails=False)
    assert col.info()["thumbnails"] is False
    with pytest.raises(NotFound):
        col.thumbnail("a")
    col.upsert([{"_id": "b", "_base64": b64_image("dots", "red", 2)}])
    with pytest.raises(NotFound):
        col.thumbnail("b")
    with pytest.raises(BadRequest, match="thumbnails"):
        db.ensure_collection("t", thumbnails="no")


@pytest.fixture(scope="module")
def pattern_col(pattern_db_dir):
    database = lookalike.connect(pattern_db_dir, read_only=True)
    yield database.collection("patterns")
    database.close()


def test_records_pages_in_write_order_with_filter_and_fields(pattern_col, pattern_catalog):
    order = [r["_id"] for r in read_jsonl(pattern_catalog)]
    first = pattern_col.records(limit=10)
    second = pattern_col.records(offset=10, limit=10)
    assert first["total"] == second["total"] == 24
    assert [r["_id"] for r in first["records"] + second["records"]] == order[:20]
    reds = pattern_col.records(filter={"color": "red"}, fields=["price"], limit=100)
    assert reds["total"] == 4 and all(set(r) == {"_id", "price"} for r in reds["records"])
    assert {r["_id"] for r in reds["records"]} == {i for i in order if "-red-" in i}
    assert pattern_col.records(offset=30)["records"] == []
    with pytest.raises(BadRequest, match="limit"):
        pattern_col.records(limit=0)
    with pytest.raises(BadRequest, match="unknown operator|\\$bogus"):
        pattern_col.records(filter={"price": {"$bogus": 1}})


def test_facets_count_values_and_ranges(pattern_col):
    facets = {f["path"]: f for f in pattern_col.facets()["facets"]}
    assert facets["pattern"]["type"] == "string" and facets["pattern"]["count"] == 24
    assert {v["value"]: v["count"] for v in facets["pattern"]["values"]} == {"stripes": 12, "dots": 12}
    assert facets["color"]["distinct"] == 6 and all(v["count"] == 4 for v in facets["color"]["values"])
    assert facets["price"]["type"] == "number" and (facets["price"]["min"], facets["price"]["max"]) == (10, 36)
    tags = {v["value"]: v["count"] for v in facets["tags"]["values"]}  # list field: records containing the value
    assert tags["stripes"] == 12 and tags["red"] == 4
    assert "_colors.color" not in facets and "_labels.label" in facets
    narrowed = pattern_col.facets(filter={"pattern": "dots", "price": {"$lt": 20}})
    assert narrowed["count"] == 4
    by_path = {f["path"]: f for f in narrowed["facets"]}
    assert [v["value"] for v in by_path["pattern"]["values"]] == ["dots"]
    assert by_path["price"]["max"] < 20
    top2 = {f["path"]: f for f in pattern_col.facets(top=2)["facets"]}
    assert len(top2["color"]["values"]) == 2 and top2["color"]["distinct"] == 6


def test_group_by_false_turns_off_default_grouping(db):
    col = db.collection("g", create=True, model="none", dim=2, group_field="sku")
    col.upsert([{"_id": f"r{i}", "_vector": [1.0, i / 10], "sku": "same"} for i in range(4)])
    assert len(col.search({"vector": [1.0, 0.0]}, k=4)["hits"]) == 1
    assert len(col.search({"vector": [1.0, 0.0]}, k=4, group_by=False)["hits"]) == 4


# -- a real server on loopback --------------------------------------------------------------
@pytest.fixture(scope="module")
def web_data(tmp_path_factory, pattern_db_dir) -> Path:
    """A copy of the pattern data folder plus 'grouped': the same vectors, grouped by product_id."""
    folder = tmp_path_factory.mktemp("web-data")
    shutil.copytree(pattern_db_dir, folder, dirs_exist_ok=True)
    with lookalike.connect(folder) as database:
        src = database.collection("patterns")
        ids, vectors = src._store.all_vectors()
        docs = src._store.get(ids)
        grouped = database.collection("grouped", create=True, group_field="product_id")
        grouped.upsert([{"_id": i, "_vector": v.tolist(), **{k: x for k, x in d.items() if not k.startswith("_")}}
                        for i, v, d in zip(ids, vectors, docs)])
    return folder


@pytest.fixture(scope="module")
def served_db(web_data):
    """The Database the test server serves: the oracle the page's results are checked against."""
    database = lookalike.connect(web_data, allow_file=False)
    yield database
    database.close()


@pytest.fixture(scope="module")
def server(served_db):
    from lookalike.server import create_app
    with serving(create_app(served_db, admin_key=ADMIN, search_key=SEARCH)) as url:
        yield url


def test_browse_routes_over_http_need_a_key_and_answer_errors_in_shape(server):
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {SEARCH}"}) as http:
        page = http.get("/")
        assert page.status_code == 200 and "<title>lookalike</title>" in page.text
        assert http.get("/ui/app.js").status_code == 200
        assert "http" not in http.get("/ui/style.css").text  # nothing loaded from elsewhere
        listing = http.get("/v1/collections/patterns/records", params={"limit": 5, "filter": '{"shape": "circle"}'})
        assert listing.status_code == 200 and listing.json()["total"] == 12
        assert all(r["shape"] == "circle" for r in listing.json()["records"])
        assert http.get("/v1/collections/patterns/facets").json()["count"] == 24
        thumb = http.get("/v1/collections/patterns/records/stripes-red-square/thumbnail")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.content)).size == (160, 160)
        missing = http.get("/v1/collections/grouped/records/stripes-red-square/thumbnail")  # made from a vector
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert http.get("/v1/collections/grouped/records/stripes-red-square/thumbnail?optional=true").status_code == 204
        assert http.get("/v1/collections/grouped/records/nope/thumbnail?optional=true").status_code == 404
        assert http.get("/v1/collections/patterns/records/stripes-red-square").json()["color"] == "red"
        bad = http.get("/v1/collections/patterns/records", params={"filter": "{oops"})
        assert bad.status_code == 400 and "'filter' is not valid JSON" in bad.json()["error"]["message"]
        assert http.get("/v1/collections/nope/facets").status_code == 404
    assert httpx.get(f"{server}/v1/collections/patterns/facets").status_code == 401
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        made = admin.put("/v1/collections/no-thumbs", json={"thumbnails": False})
        assert made.status_code == 201 and made.json()["thumbnails"] is False
        admin.post("/v1/collections/no-thumbs/records", json={"records": [
            {"_id": "a", "_base64": b64_image("stripes", "red", 5)}]}).raise_for_status()
        assert admin.get("/v1/collections/no-thumbs/records/a/thumbnail").status_code == 404
        assert admin.delete("/v1/collections/no-thumbs").status_code == 200
    assert httpx.get(f"{server}/v1/collections/patterns/records/stripes-red-square/thumbnail").status_code == 401


# -- the page in headless Chromium ----------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not os.environ.get("LOOKALIKE_REQUIRE_BROWSER"):  # .ci/run sets it: there a missing browser fails
        if not CHROMIUM.exists():
            pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


class Page:
    """A browser tab on the server with the search key set, recording console errors."""

    def __init__(self, browser, server: str, *, width: int = 1280, height: int = 900, key: str | None = SEARCH,
                 bypass_csp: bool = True):
        # The page's Content-Security-Policy forbids eval, which Playwright's string predicates use;
        # the one test run under the real policy waits with selectors only.
        self.context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=bypass_csp)
        if key:
            self.context.add_init_script(f"sessionStorage.setItem('lookalike.key', {json.dumps(key)})")
        self.context.set_default_timeout(120_000)  # generous: CI machines can be busy; waits end early
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.server = server

    def open(self, collection: str = "patterns") -> None:
        self.page.goto(f"{self.server}/#c={collection}")
        self.wait_grid()

    def wait_grid(self) -> None:
        self.page.wait_for_function("document.querySelectorAll('#results .card').length > 0 && "
                                    "!document.querySelector('#results').hasAttribute('aria-busy')")

    def ids(self) -> list[str]:
        return self.page.locator("#results .card").evaluate_all("els => els.map(e => e.dataset.id)")

    def wait_mode(self, text: str) -> None:
        self.page.wait_for_function("t => document.querySelector('#mode').textContent.includes(t) && "
                                    "!document.querySelector('#results').hasAttribute('aria-busy')", arg=text)

    def shot(self, name: str, full_page: bool = True) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser, server):
    page = Page(browser, server)
    yield page
    page.close()


def loaded_thumbnails(page) -> int:
    return page.evaluate("[...document.querySelectorAll('#results .card img')]"
                         ".filter(i => i.complete && i.naturalWidth > 0).length")


def test_grid_shows_the_collection_with_thumbnails(tab):
    tab.open()
    ids = tab.ids()
    assert len(ids) == 24 and ids[0] == "stripes-red-square"
    assert "Browsing 24 records" in tab.page.inner_text("#mode")
    tab.page.wait_for_function("[...document.querySelectorAll('#results .card img')]"
                               ".filter(i => i.complete && i.naturalWidth > 0).length === 24")
    card = tab.page.locator("#results .card").first
    assert card.locator(".thumb").get_attribute("aria-label") == "More like stripes-red-square"
    assert card.locator("img").get_attribute("alt") == "stripes-red-square"
    assert "pattern" in card.inner_text() and "stripes" in card.inner_text()
    unnamed = tab.page.evaluate("""[...document.querySelectorAll('input, select, button')].filter(el => {
        const label = [...(el.labels || [])].map(l => l.textContent.trim()).join('');
        return !(el.getAttribute('aria-label') || label || el.textContent.trim() || el.title);
    }).map(el => el.outerHTML.slice(0, 120))""")
    assert unnamed == []  # every control has an accessible name
    assert tab.page.locator("img:not([alt])").count() == 0
    tab.shot("01-browse")
    assert tab.errors == []


def engine_ids(db, query: dict, **options) -> list[str]:
    return [h["_id"] for h in db.collection("patterns").search(query, k=24, **options)["hits"]]


def test_upload_an_image_then_more_like_this(tab, served_db, tmp_path):
    tab.open()
    query = tmp_path / "my stripes.jpg"
    # The catalogue's red striped square (seed 101), drawn again larger and saved at another quality.
    draw_item("stripes", COLORS["red"], seed=101, size=300, shape="square").save(query, quality=80)
    tab.page.set_input_files("#file", str(query))
    tab.wait_mode("my stripes.jpg")
    ids = tab.ids()
    assert ids[0] == "stripes-red-square" and [i.split("-")[0] for i in ids[:3]] == ["stripes"] * 3, ids
    assert ids == engine_ids(served_db, {"image": query.read_bytes()})  # exactly what the engine ranks
    scores = tab.page.locator("#results .card .score").all_inner_texts()
    values = [float(s.split()[-1]) for s in scores]
    assert values == sorted(values, reverse=True) and len(values) == 24 and values[0] > values[-1]
    tab.shot("02-upload-stripes")

    # "More like this": click a dotted result: the engine's ranking for it, without itself.
    dotted = next(i for i in ids if i.startswith("dots"))
    tab.page.locator(f'#results .card[data-id="{dotted}"] .thumb').click()
    tab.wait_mode(f"more like “{dotted}”")
    more = tab.ids()
    assert dotted not in more and more == engine_ids(served_db, {"id": dotted})
    tab.shot("03-more-like-this")
    assert tab.errors == []


def test_drop_an_image_file_searches_by_it(tab, served_db):
    tab.open()
    raw = jpeg_bytes(draw_item("dots", COLORS["blue"], seed=115, size=260, shape="square"))  # dots-blue-square again
    data = base64.b64encode(raw).decode()
    tab.page.evaluate("""b64 => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dropped.jpg", {type: "image/jpeg"}));
        document.querySelector('#drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", data)
    tab.wait_mode("dropped.jpg")
    assert tab.ids() == engine_ids(served_db, {"image": raw})
    # Pasting an image (Ctrl+V of a copied picture) does the same.
    raw2 = jpeg_bytes(draw_item("stripes", COLORS["green"], seed=105, size=250))
    tab.page.evaluate("""b64 => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "pasted.jpg", {type: "image/jpeg"}));
        document.body.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}));
    }""", base64.b64encode(raw2).decode())
    tab.wait_mode("pasted.jpg")
    assert tab.ids() == engine_ids(served_db, {"image": raw2})
    # From the keyboard: Enter or Space on the drop zone opens the file chooser (recorded, not opened:
    # waiting for a real chooser races with Chromium's interception on a busy machine).
    tab.page.evaluate("() => { window.chooserOpened = 0; "
                      "document.querySelector('#file').click = () => { window.chooserOpened += 1; }; }")
    tab.page.focus("#drop")
    tab.page.keyboard.press("Enter")
    tab.page.keyboard.press(" ")
    assert tab.page.evaluate("window.chooserOpened") == 2
    assert tab.errors == []


def test_facet_filters_narrow_browse_and_search(tab):
    tab.open()
    red = tab.page.locator('#filters fieldset[data-path="color"] label', has_text="red")
    assert red.locator(".count").inner_text() == "4"
    red.locator("input").check()
    tab.wait_mode("(filtered)")
    assert sorted(tab.ids()) == sorted(f"{p}-red-{s}" for p in ("stripes", "dots") for s in ("square", "circle"))
    tab.shot("04-filter-red")
    # The filter stays on for "more like this", and a number range narrows further.
    tab.page.locator('#results .card[data-id="stripes-red-square"] .thumb').click()
    tab.wait_mode("more like")
    assert set(tab.ids()) == {"stripes-red-circle", "dots-red-square", "dots-red-circle"}
    tab.page.fill('#filters fieldset[data-path="price"] input.facet-max', "10")
    tab.page.press('#filters fieldset[data-path="price"] input.facet-max', "Enter")
    tab.page.wait_for_function("document.querySelectorAll('#results .card').length === 1")
    assert tab.ids() == ["dots-red-square"]  # price 10; the anchor itself is never returned
    tab.page.click("#filters-clear")
    tab.page.wait_for_function("document.querySelectorAll('#results .card').length === 23")
    assert tab.errors == []


def test_like_and_not_like_marks_steer_the_search(tab, served_db):
    tab.open()
    for rid in ("stripes-blue-square", "stripes-green-circle"):
        tab.page.locator(f'#results .card[data-id="{rid}"] input.pos').check()
    tab.page.locator('#results .card[data-id="dots-red-square"] button.neg').click()
    assert "2 liked, 1 marked" in tab.page.inner_text("#selection")
    assert tab.page.locator('#results .card[data-id="dots-red-square"] button.neg').get_attribute("aria-pressed") == "true"
    tab.page.click("#search-selected")
    tab.wait_mode("2 liked, 1 not liked")
    ids = tab.ids()
    assert not {"stripes-blue-square", "stripes-green-circle", "dots-red-square"} & set(ids)
    assert ids == engine_ids(served_db, {"ids": ["stripes-blue-square", "stripes-green-circle"]},
                             negative=[{"id": "dots-red-square"}])
    tab.shot("05-like-not-like")
    assert tab.errors == []


def test_paging_grouping_and_keyboard(browser, server):
    tab = Page(browser, server)
    try:
        tab.open("grouped")  # vectors only: no thumbnails kept, the cards show placeholders
        tab.page.select_option("#k", "12")
        tab.page.wait_for_function("document.querySelector('#page').textContent === 'Page 1 of 2'")
        first = tab.ids()
        tab.page.click("#next")
        tab.page.wait_for_function("document.querySelector('#page').textContent === 'Page 2 of 2'")
        assert len(first) == len(tab.ids()) == 12 and not set(first) & set(tab.ids())
        assert tab.page.is_disabled("#next")
        # Keyboard: focus a result and press Enter for "more like this"; grouping gives one per product_id.
        tab.page.focus('#results .card .thumb')
        tab.page.keyboard.press("Enter")
        tab.wait_mode("more like")
        assert tab.page.is_visible("#group-label") and "product_id" in tab.page.inner_text("#group-label")
        groups = tab.page.locator("#results .card dd.group").all_inner_texts()
        assert len(tab.ids()) == 4 and sorted(groups) == ["dots-circle", "dots-square", "stripes-circle",
                                                          "stripes-square"]  # one per product_id
        tab.page.uncheck("#group")
        tab.page.wait_for_function("document.querySelectorAll('#results .card').length === 12")
        assert tab.page.locator("#results .card dd.group").count() == 0
        tab.shot("06-grouped-ungrouped")
        assert tab.page.locator("#results .card img").count() == 0
        assert tab.errors == []
    finally:
        tab.close()


def test_unavailable_features_show_a_message_not_a_crash(tab):
    tab.open()
    tab.page.fill("#text", "striped shirt")
    tab.page.press("#text", "Enter")
    tab.page.wait_for_function("document.querySelector('#status').textContent.length > 0 || "
                               "document.querySelector('#mode').textContent.includes('striped shirt')")
    status = tab.page.locator("#status")
    if status.inner_text():  # text search not built on this server: a readable message
        assert "error" in (status.get_attribute("class") or "") and len(status.inner_text()) > 10
        assert "Browsing 24 records" in tab.page.inner_text("#mode") and len(tab.ids()) == 24  # grid kept
    tab.page.click("#dups-go")
    tab.page.wait_for_function("!document.querySelector('#dups-status').textContent.startsWith('Looking')")
    dups = tab.page.inner_text("#dups-status")
    assert dups and ("key may not" in dups or "Not available" in dups or "duplicates" in dups.lower()
                     or "group" in dups), dups
    tab.page.fill("#url", "not a url")
    tab.page.click("#url-go")
    assert "http:// or https://" in tab.page.inner_text("#status")
    tab.shot("07-messages")
    assert [e for e in tab.errors if "Failed to load resource" not in e] == []  # no script errors


def test_page_shows_kept_thumbnails_and_never_loads_a_records_url(browser, server):
    body = jpeg_bytes(draw_item("dots", COLORS["green"], seed=41, size=300))
    with serving_files({"/far.jpg": body}) as (third_party, hits):
        with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            admin.put("/v1/collections/remote", json={}).raise_for_status()
            done = admin.post("/v1/collections/remote/records", json={"records": [
                {"_id": "far", "_url": f"{third_party}/far.jpg"}]}).json()["results"]
            assert done[0]["status"] == "inserted", done
        assert hits == ["/far.jpg"]  # the server fetched it once, at ingest
        tab = Page(browser, server, bypass_csp=False)  # under the page's real Content-Security-Policy
        seen: list[str] = []
        tab.page.on("request", lambda r: seen.append(r.url))
        try:
            tab.page.goto(f"{server}/#c=remote")
            tab.page.wait_for_selector("#results .card[data-id='far'] img[src^='blob:']")
            assert hits == ["/far.jpg"] and not [u for u in seen if u.startswith(third_party)], seen
            assert any("/records/far/thumbnail" in u for u in seen), seen
            assert tab.errors == []  # no CSP violation: the page runs under its own policy
        finally:
            tab.close()
            with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
                admin.delete("/v1/collections/remote")


def test_duplicates_view_shows_clusters_side_by_side(browser, server, served_db):
    original = draw_item("stripes", COLORS["purple"], seed=31, size=300)
    small = original.resize((200, 200))
    records = [{"_id": "orig", "_base64": base64.b64encode(jpeg_bytes(original)).decode()},
               {"_id": "same-bytes", "_base64": base64.b64encode(jpeg_bytes(original)).decode()},
               {"_id": "smaller", "_base64": base64.b64encode(jpeg_bytes(small, 70)).decode()},
               {"_id": "other", "_base64": b64_image("dots", "orange", 32)}]
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        admin.put("/v1/collections/copies", json={}).raise_for_status()
        admin.post("/v1/collections/copies/records", json={"records": records}).raise_for_status()
    expected = served_db.collection("copies").duplicates()["clusters"]
    assert any({"orig", "same-bytes"} <= set(c) for c in expected), expected
    tab = Page(browser, server, key=SEARCH)  # duplicates is a read: nobody pastes the admin key in a browser
    try:
        tab.open("copies")
        tab.page.click("#dups-go")
        tab.page.wait_for_function("!document.querySelector('#dups-status').textContent.startsWith('Looking')")
        shown = tab.page.locator("#clusters .cluster").evaluate_all(
            "rows => rows.map(r => [...r.querySelectorAll('.card')].map(c => c.dataset.id))")
        assert shown == expected
        tops = tab.page.locator("#clusters .cluster").first.locator(".card").evaluate_all(
            "cards => cards.map(c => Math.round(c.getBoundingClientRect().top))")
        assert len(set(tops)) == 1  # side by side
        tab.page.wait_for_function("[...document.querySelectorAll('#clusters img')].every(i => i.naturalWidth > 0)")
        tab.page.locator("#dups").scroll_into_view_if_needed()
        tab.shot("10-duplicates", full_page=False)
        assert tab.errors == []
    finally:
        tab.close()
        with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            admin.delete("/v1/collections/copies")


def test_key_form_when_the_key_is_missing(browser, server):
    tab = Page(browser, server, key=None)
    try:
        tab.page.goto(server + "/#c=patterns")
        tab.page.wait_for_function("document.querySelector('#status').textContent.includes('needs a key')")
        tab.page.click("#key-box summary")
        tab.page.fill("#key", SEARCH)
        tab.page.press("#key", "Enter")
        tab.wait_grid()
        assert len(tab.ids()) == 24
        assert tab.page.evaluate("sessionStorage.getItem('lookalike.key')") == SEARCH
        assert [e for e in tab.errors if "401" not in e] == []
    finally:
        tab.close()


def test_phone_width_layout(browser, server):
    tab = Page(browser, server, width=375, height=740)
    try:
        tab.open()
        overflow = tab.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone"
        columns = tab.page.evaluate("getComputedStyle(document.querySelector('#results'))"
                                    ".gridTemplateColumns.split(' ').length")
        assert columns == 2
        box = tab.page.locator("#results .card").first.bounding_box()
        assert box["width"] >= 140  # readable, not squeezed
        assert tab.page.locator("#filters-box").get_attribute("open") is None  # filters folded away
        tab.shot("08-phone-top", full_page=False)
        tab.page.click("#filters-box summary")
        assert tab.page.is_visible('#filters fieldset[data-path="color"]')
        tab.page.locator("#results").scroll_into_view_if_needed()
        tab.page.wait_for_function("[...document.querySelectorAll('#results .card img')].slice(0, 4)"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
        tab.shot("09-phone-results", full_page=False)
        assert tab.errors == []
    finally:
        tab.close()
