// lookalike web page, query extras: keywords beside the picture searched, a box drawn on the
// query picture, and object regions the server proposes in it ("box", "keywords" and "regions"
// of POST .../search, docs/search.md). Loaded after app.js, whose state and helpers it uses.
"use strict";

(function () {
  const MIN_SIDE = 0.05;  // the server refuses smaller boxes
  const view = { key: null, url: "", ownUrl: false };

  // The picture query a box, keywords or regions go with: the query itself, or the one it came from.
  function sourceOf(query) {
    if (!query) return null;
    const base = query.base || query;
    if (base.image) return base;
    if (base.body && (typeof base.body.id === "string" || typeof base.body.url === "string" || base.body.ids)) return base;
    return null;
  }

  function derived(source, label, extra, options) {
    return Object.assign({}, source, { label, base: source, extra: extra || {}, options: options || {} });
  }

  function keywordsOf(query) {
    return query && query.extra && query.extra.keywords ? { keywords: query.extra.keywords } : {};
  }

  // -- the query picture -------------------------------------------------------------------
  async function showPicture(source) {
    const key = source.image || source.body.id || null;
    if (!key || (source.body && typeof source.body.id !== "string" && !source.image)) { hidePicture(); return; }
    if (view.key !== key) {
      if (view.ownUrl && view.url) URL.revokeObjectURL(view.url);
      view.key = key;
      view.ownUrl = !!source.image;
      view.url = source.image ? URL.createObjectURL(source.image)
        : state.thumbs.get(source.body.id) || await fetchThumb(state.collection, source.body.id);
      if (view.key !== key) return;
    }
    if (!view.url) { hidePicture(); return; }
    const img = $("#qv-img");
    if (img.getAttribute("src") !== view.url) img.src = view.url;
    img.alt = "The query picture: " + source.label;
    $("#query-view").hidden = false;
  }

  function hidePicture() {
    $("#query-view").hidden = true;
    $("#qv-box").hidden = true;
    $("#qv-marks").replaceChildren();
  }

  function place(el, box) {
    el.style.left = box[0] * 100 + "%";
    el.style.top = box[1] * 100 + "%";
    el.style.width = (box[2] - box[0]) * 100 + "%";
    el.style.height = (box[3] - box[1]) * 100 + "%";
  }

  function boxLabel(box) {
    return box.map((v) => Math.round(v * 100) + "%").join(", ");
  }

  function searchBox(source, box) {
    const label = "part (" + boxLabel(box) + ") of " + source.label;
    startQuery(derived(source, label, Object.assign(keywordsOf(state.query), { box })));
  }

  // -- regions -----------------------------------------------------------------------------
  function showRegions(source, regions) {
    const list = $("#region-list");
    const marks = $("#qv-marks");
    list.replaceChildren();
    marks.replaceChildren();
    regions.forEach((region, i) => {
      const n = i + 1;
      const mark = document.createElement("div");  // the outline; only its number is a button
      mark.className = "qv-mark";
      mark.dataset.n = n;
      mark.style.zIndex = String(100 - Math.round((region.box[2] - region.box[0]) * (region.box[3] - region.box[1]) * 99));
      const tag = document.createElement("button");
      tag.type = "button";
      tag.className = "qv-tag";
      tag.textContent = n;
      tag.setAttribute("aria-label", "Search object " + n + " only");
      tag.addEventListener("pointerdown", (e) => e.stopPropagation());
      tag.addEventListener("click", () => searchBox(source, region.box));
      mark.append(tag);
      place(mark, region.box);
      marks.append(mark);
      const li = document.createElement("li");
      li.className = "region";
      li.dataset.box = JSON.stringify(region.box);
      const head = document.createElement("p");
      head.textContent = "Object " + n + " (" + boxLabel(region.box) + "): " + region.hits.length + " hits ";
      const go = document.createElement("button");
      go.type = "button";
      go.textContent = "Search this part";
      go.setAttribute("aria-label", "Search object " + n + " only");
      go.addEventListener("click", () => searchBox(source, region.box));
      head.append(go);
      const row = document.createElement("ul");
      row.className = "cluster";
      row.setAttribute("aria-label", "Hits for object " + n);
      li.append(head, row);
      list.append(li);
      renderGrid(row, region.hits);
    });
    $("#regions").hidden = false;
    if (!regions.length) {
      const li = document.createElement("li");
      li.textContent = "No separate objects found in this picture.";
      list.append(li);
    }
  }

  function hideRegions() {
    $("#regions").hidden = true;
    $("#region-list").replaceChildren();
  }

  // Called by app.js's runSearch with each answer and the query it was for.
  function afterSearch(data, query) {
    if (query !== state.query) return;
    const source = sourceOf(query);
    if (!source) { hidePicture(); hideRegions(); return; }
    showPicture(source);
    const box = query.extra && query.extra.box;
    $("#qv-box").hidden = !box;
    if (box) place($("#qv-box"), box);
    if (data.regions) showRegions(source, data.regions);
    else { hideRegions(); $("#qv-marks").replaceChildren(); }
  }

  // -- drawing a box -----------------------------------------------------------------------
  function wireDrawing() {
    const frame = $("#qv-frame");
    const box = $("#qv-box");
    let start = null;
    const at = (e) => {
      const r = $("#qv-img").getBoundingClientRect();
      return [Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (e.clientY - r.top) / r.height))];
    };
    const current = (e) => {
      const p = at(e);
      return [Math.min(start[0], p[0]), Math.min(start[1], p[1]), Math.max(start[0], p[0]), Math.max(start[1], p[1])];
    };
    frame.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      e.preventDefault();
      start = at(e);
      frame.setPointerCapture(e.pointerId);
      place(box, [start[0], start[1], start[0], start[1]]);
      box.hidden = false;
    });
    frame.addEventListener("pointermove", (e) => { if (start) place(box, current(e)); });
    frame.addEventListener("pointerup", (e) => {
      if (!start) return;
      const b = current(e).map((v) => Math.round(v * 10000) / 10000);
      start = null;
      const source = sourceOf(state.query);
      if (!source) return;
      if (b[2] - b[0] < MIN_SIDE || b[3] - b[1] < MIN_SIDE) {
        box.hidden = true;
        setStatus("Draw a larger box: at least 5% of the picture wide and high.", true);
        return;
      }
      searchBox(source, b);
    });
    frame.addEventListener("pointercancel", () => { start = null; box.hidden = true; });
  }

  function wire() {
    wireDrawing();
    $("#qv-regions-go").addEventListener("click", () => {
      const source = sourceOf(state.query);
      if (source) startQuery(derived(source, "objects in " + source.label, keywordsOf(state.query), { regions: 4 }));
    });
    $("#qv-whole").addEventListener("click", () => {
      const source = sourceOf(state.query);
      if (source) startQuery(source);
    });
    const byKeywords = () => {
      const words = $("#keywords").value.trim();
      if (!words) { setStatus("Type the words to match: a SKU, a brand…", true); return; }
      const source = sourceOf(state.query);
      if (source) {
        const extra = { keywords: words };
        if (state.query.extra && state.query.extra.box) extra.box = state.query.extra.box;
        startQuery(derived(source, source.label + " with keywords “" + words + "”", extra));
      } else {
        startQuery({ label: "keywords “" + words + "”", body: {}, extra: { keywords: words } });
      }
    };
    $("#keywords-go").addEventListener("click", byKeywords);
    $("#keywords").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); byKeywords(); } });
    const reset = () => { hidePicture(); hideRegions(); };
    $("#clear-query").addEventListener("click", reset);
    $("#collection").addEventListener("change", reset);
  }

  window.lookalikeExtras = { afterSearch };
  wire();
})();
