"""The web page's filters and grouping option as a new user meets them (issue 19): the
catalogue's own fields come first and the automatic labels are collapsed below them; the
"One per <group_field>" option is offered only where it applies (searches, not browsing)."""
from __future__ import annotations

import pytest

from test_web import Page, browser, server, served_db, web_data  # noqa: F401 (fixtures)


@pytest.fixture
def tab(browser, server):  # noqa: F811
    page = Page(browser, server)
    yield page
    page.close()


def test_own_fields_first_and_labels_collapsed(tab, served_db):  # noqa: F811
    tab.open("patterns")
    page = tab.page
    legends = page.locator("#filters > fieldset.facet > legend").all_inner_texts()
    assert legends[:3] == ["color", "pattern", "price"] and "Automatic label" not in legends
    first = page.locator("#filters > fieldset.facet").first.bounding_box()
    assert first is not None and first["y"] < 400  # in view on arrival, not below a list of labels
    more = page.locator("#filters details.facet-more")
    assert more.count() == 1 and more.get_attribute("open") is None
    assert more.locator("summary").inner_text().startswith("Automatic labels (")
    boxes = more.locator("input.facet-value")
    assert boxes.count() > 0 and not boxes.first.is_visible()

    more.locator("summary").click()  # opened on demand, and its filter still applies
    assert boxes.first.is_visible()
    label = more.locator("label").first.locator("span").first.inner_text()
    boxes.first.check()
    expected = served_db.collection("patterns").records(filter={"_labels.label": label}, limit=100)["total"]
    tab.page.wait_for_function("n => document.querySelector('#mode').textContent.includes('(filtered)') && "
                               "document.querySelectorAll('#results .card').length === n && "
                               "!document.querySelector('#results').hasAttribute('aria-busy')", arg=expected)
    assert 0 < expected < 24 and tab.errors == []


def test_group_option_only_where_it_applies(tab):
    tab.open("grouped")
    page = tab.page
    assert page.locator("#group-label").is_hidden()  # browsing lists every record: nothing to group
    assert len(tab.ids()) == 24
    page.focus("#results .card .thumb")
    page.keyboard.press("Enter")
    tab.wait_mode("more like")
    assert page.locator("#group-label").is_visible() and page.is_checked("#group")
    assert len(tab.ids()) == 4  # applied: one per product_id
    page.click("#clear-query")
    tab.wait_mode("Browsing")
    assert page.locator("#group-label").is_hidden() and tab.errors == []
