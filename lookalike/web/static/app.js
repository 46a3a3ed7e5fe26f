// lookalike web page: browse a collection, search by example, filter by its metadata.
// Plain JavaScript, no framework and nothing loaded from elsewhere. It only calls read
// routes, so the search key is enough; the key stays in sessionStorage (this tab only).
"use strict";

const $ = (sel) => document.querySelector(sel);
const KEY_STORE = "lookalike.key";
const THUMB_CONCURRENCY = 6;

const state = {
  collection: null,    // name
  info: null,          // GET /v1/collections/{name}
  facets: [],          // GET .../facets
  query: null,         // null = browsing; else {label, body} or {label, image: Blob}
  positives: new Set(),
  negatives: new Set(),
  offset: 0,
  lastCount: 0,
  total: null,
  thumbs: new Map(),   // id -> object URL (or "" when none is kept)
  seq: 0,              // drops answers of superseded requests
};

// Extension points for the page's other scripts (explain.js): each `params` hook may add search
// parameters, each `card` hook decorates a result card with its hit.
const hooks = { params: [], card: [] };

// ---------------------------------------------------------------------------------------
// HTTP
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function api(method, path, body) {
  const init = { method, headers: headers() };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network", "The server could not be reached (" + err.message + ").");
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!res.ok) {
    const e = data && data.error ? data.error : {};
    throw new ApiError(res.status, e.code || "http_" + res.status, e.message || res.statusText || "request failed");
  }
  return data;
}

function colPath(suffix) {
  return "v1/collections/" + encodeURIComponent(state.collection) + suffix;
}

function explain(err) {
  if (!(err instanceof ApiError)) return "Something went wrong: " + err.message;
  switch (err.status) {
    case 401: return "The server needs a key: open “API key” at the top and paste your search key. (" + err.message + ")";
    case 403: return "This key may not do that. (" + err.message + ")";
    case 501: return "Not available on this server yet: " + err.message;
    case 404: return "Not found: " + err.message;
    case 0: return err.message;
    default: return err.message + " (" + err.status + " " + err.code + ")";
  }
}

// ---------------------------------------------------------------------------------------
// Status line
function setStatus(text, isError) {
  const el = $("#status");
  el.textContent = text || "";
  el.classList.toggle("error", !!isError);
}

// ---------------------------------------------------------------------------------------
// Collections
async function loadCollections() {
  const select = $("#collection");
  let data;
  try {
    data = await api("GET", "v1/collections");
  } catch (err) {
    setStatus(explain(err), true);
    return;
  }
  select.replaceChildren();
  for (const c of data.collections) {
    const opt = document.createElement("option");
    opt.value = c.name;
    opt.textContent = c.name + " (" + c.count + ")";
    select.append(opt);
  }
  if (!data.collections.length) {
    setStatus("No collections yet: ingest some images first (lookalike ingest PATH -c NAME).");
    return;
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("c");
  const names = data.collections.map((c) => c.name);
  select.value = names.includes(wanted) ? wanted : names[0];
  await openCollection(select.value);
}

async function openCollection(name) {
  state.collection = name;
  state.query = null;
  state.positives.clear();
  state.negatives.clear();
  state.offset = 0;
  for (const url of state.thumbs.values()) if (url) URL.revokeObjectURL(url);
  state.thumbs.clear();
  history.replaceState(null, "", "#c=" + encodeURIComponent(name));
  $("#dups").hidden = true;
  try {
    state.info = await api("GET", colPath(""));
  } catch (err) {
    setStatus(explain(err), true);
    return;
  }
  $("#collection-count").textContent = state.info.count + " records";
  const gf = state.info.group_field;
  $("#group-field").textContent = gf || "group";
  showGroupOption();
  await loadFacets();
  await refresh();
}

// ---------------------------------------------------------------------------------------
// Facets -> filter form
async function loadFacets() {
  const form = $("#filters");
  form.replaceChildren();
  try {
    const data = await api("GET", colPath("/facets"));
    state.facets = data.facets;
  } catch (err) {
    state.facets = [];
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "Filters unavailable: " + explain(err);
    form.append(p);
    return;
  }
  // The catalogue's own fields first; engine fields (the ~1000 ImageNet labels) after them,
  // collapsed, so they never push the user's fields below the fold.
  const own = state.facets.filter((f) => !f.path.startsWith("_"));
  const engine = state.facets.filter((f) => f.path.startsWith("_"));
  let n = 0;
  for (const facet of own) {
    const fs = renderFacet(facet, n++);
    if (fs) form.append(fs);
  }
  for (const facet of engine) {
    const fs = renderFacet(facet, n++);
    if (!fs) continue;
    const more = document.createElement("details");
    more.className = "facet-more";
    const summary = document.createElement("summary");
    summary.textContent = facetTitle(facet.path) + "s (" + (facet.distinct || (facet.values || []).length) + ")";
    more.append(summary, fs);
    form.append(more);
  }
  if (!form.children.length) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "This collection has no metadata to filter by.";
    form.append(p);
  }
}

function facetTitle(path) {
  return path === "_labels.label" ? "Automatic label" : path;
}

function renderFacet(facet, n) {
  const values = facet.values || [];
  // A field unique to each record (ids, titles, paths) makes a useless checklist.
  const usefulValues = values.length && !(facet.distinct > 12 && values[0].count <= 1);
  const hasRange = facet.min !== undefined && facet.max !== undefined && facet.min !== facet.max;
  if (!usefulValues && !hasRange) return null;
  const fs = document.createElement("fieldset");
  fs.className = "facet";
  fs.dataset.path = facet.path;
  const legend = document.createElement("legend");
  legend.textContent = facetTitle(facet.path);
  fs.append(legend);
  if (usefulValues) {
    values.forEach((v, i) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.className = "facet-value";
      box.id = "f" + n + "-" + i;
      box.dataset.value = JSON.stringify(v.value);
      const name = document.createElement("span");
      name.textContent = String(v.value);
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = v.count;
      count.setAttribute("aria-label", v.count + " records");
      label.append(box, name, count);
      fs.append(label);
    });
    if (facet.distinct > values.length) {
      const more = document.createElement("p");
      more.className = "muted";
      more.textContent = (facet.distinct - values.length) + " more values not shown";
      fs.append(more);
    }
  }
  if (hasRange) {
    const range = document.createElement("div");
    range.className = "range";
    for (const [which, value] of [["min", facet.min], ["max", facet.max]]) {
      const label = document.createElement("label");
      label.textContent = which === "min" ? "From" : "To";
      const input = document.createElement("input");
      input.type = "number";
      input.step = "any";
      input.className = "facet-" + which;
      input.placeholder = String(value);
      input.setAttribute("aria-label", facetTitle(facet.path) + (which === "min" ? " from" : " to"));
      label.append(input);
      range.append(label);
    }
    fs.append(range);
  }
  return fs;
}

function currentFilter() {
  const parts = [];
  for (const fs of document.querySelectorAll("#filters fieldset.facet")) {
    const path = fs.dataset.path;
    const picked = [...fs.querySelectorAll("input.facet-value:checked")].map((b) => JSON.parse(b.dataset.value));
    if (picked.length === 1) parts.push({ [path]: picked[0] });
    else if (picked.length > 1) parts.push({ [path]: { $in: picked } });
    const min = fs.querySelector("input.facet-min");
    const max = fs.querySelector("input.facet-max");
    const range = {};
    if (min && min.value !== "" && !Number.isNaN(min.valueAsNumber)) range.$gte = min.valueAsNumber;
    if (max && max.value !== "" && !Number.isNaN(max.valueAsNumber)) range.$lte = max.valueAsNumber;
    if (Object.keys(range).length) parts.push({ [path]: range });
  }
  if (!parts.length) return null;
  return parts.length === 1 ? parts[0] : { $and: parts };
}

// ---------------------------------------------------------------------------------------
// Browsing and searching
function pageSize() {
  return parseInt($("#k").value, 10);
}

// Re-reads the grid for the current query, filters and page: true when it worked, false when
// the server refused, null when a newer request superseded it.
async function refresh() {
  if (!state.collection) return false;
  const seq = ++state.seq;
  const filter = currentFilter();
  const k = pageSize();
  $("#results").setAttribute("aria-busy", "true");
  try {
    let items;
    if (!state.query) {
      const params = new URLSearchParams({ offset: state.offset, limit: k });
      if (filter) params.set("filter", JSON.stringify(filter));
      const data = await api("GET", colPath("/records?" + params));
      if (seq !== state.seq) return null;
      items = data.records;
      state.total = data.total;
      $("#mode").textContent = "Browsing " + data.total + " record" + (data.total === 1 ? "" : "s") + (filter ? " (filtered)" : "");
    } else {
      const data = await runSearch(filter, k);
      if (seq !== state.seq) return null;
      items = data.hits;
      state.total = null;
      $("#mode").textContent = "Results for " + state.query.label + (filter ? " (filtered)" : "");
    }
    state.lastCount = items.length;
    showGroupOption();
    renderGrid($("#results"), items);
    updatePager();
    setStatus(items.length ? "" : "Nothing matches: loosen the filters.");
    return true;
  } catch (err) {
    if (seq !== state.seq) return null;
    setStatus(explain(err), true);
    return false;
  } finally {
    if (seq === state.seq) $("#results").removeAttribute("aria-busy");
  }
}

// "One per <group_field>" applies to searches; browsing lists every record, so the option
// is shown only while a query is on the page (a ticked box that did nothing misled).
function showGroupOption() {
  const gf = state.info && state.info.group_field;
  $("#group-label").hidden = !gf || !state.query;
}

function searchParams(filter, k) {
  const params = { k, offset: state.offset };
  if (filter) params.filter = filter;
  if (state.info && state.info.group_field && !$("#group").checked) params.group_by = false;
  if (state.query.negative && state.query.negative.length) params.negative = state.query.negative;
  for (const hook of hooks.params) hook(params);
  return params;
}

async function runSearch(filter, k) {
  const params = searchParams(filter, k);
  // extra: query modifiers beside the anchor (box, keywords); options: more search options (regions); see extras.js
  const query = state.query;
  const extra = query.extra || {};
  Object.assign(params, query.options || {});
  let data;
  if (state.query.image) {
    const form = new FormData();
    form.append("image", state.query.image, state.query.image.name || "image");
    form.append("params", JSON.stringify(Object.assign({}, params, extra)));
    data = await api("POST", colPath("/search/image"), form);
  } else {
    data = await api("POST", colPath("/search"), Object.assign({ query: Object.assign({}, state.query.body, extra) }, params));
  }
  if (window.lookalikeExtras) window.lookalikeExtras.afterSearch(data, query);
  return data;
}

// Runs a new query; if the server refuses it, the grid and the previous query stay.
async function startQuery(query) {
  const previous = [state.query, state.offset];
  state.query = query;
  state.offset = 0;
  $("#dups").hidden = true;
  if ((await refresh()) === false && state.query === query) [state.query, state.offset] = previous;
}

function searchImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    setStatus("That is not an image file: choose a JPEG, PNG, WebP or GIF.", true);
    return;
  }
  startQuery({ label: "the image “" + (file.name || "pasted image") + "”", image: file });
}

function searchSelected() {
  const pos = [...state.positives];
  const neg = [...state.negatives].map((id) => ({ id }));
  if (pos.length) {
    startQuery({ label: pos.length + " liked, " + neg.length + " not liked", body: { ids: pos }, negative: neg });
  } else if (state.query && neg.length) {
    startQuery(Object.assign({}, state.query, { label: state.query.label.replace(/, minus .*$/, "") + ", minus " + neg.length + " not liked", negative: neg }));
  } else {
    setStatus("Mark at least one result as “Like” (or run a search first, then mark what is not like it).", true);
  }
}

function updatePager() {
  const k = pageSize();
  const pageNo = Math.floor(state.offset / k) + 1;
  $("#prev").disabled = state.offset === 0;
  const more = state.total === null ? state.lastCount === k : state.offset + k < state.total;
  $("#next").disabled = !more;
  $("#page").textContent = "Page " + pageNo + (state.total !== null ? " of " + Math.max(1, Math.ceil(state.total / k)) : "");
}

function updateSelection() {
  const p = state.positives.size, n = state.negatives.size;
  $("#search-selected").disabled = p === 0 && n === 0;
  $("#selection").textContent = p || n ? p + " liked, " + n + " marked “not like this”." : "";
}

// ---------------------------------------------------------------------------------------
// Result cards
function renderGrid(list, items) {
  list.replaceChildren(...items.map(renderCard));
  loadThumbs(list);
}

function shortValue(v) {
  if (Array.isArray(v)) return v.map(shortValue).join(", ");
  if (v && typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function renderCard(item) {
  const node = $("#card-tpl").content.firstElementChild.cloneNode(true);
  const id = item._id;
  node.dataset.id = id;
  const thumb = node.querySelector(".thumb");
  thumb.setAttribute("aria-label", "More like " + id);
  thumb.title = "More like this";
  thumb.addEventListener("click", () => startQuery({ label: "more like “" + id + "”", body: { id } }));
  node.querySelector(".rid").textContent = id;
  node.querySelector(".rid").title = id;
  const score = node.querySelector(".score");
  if (typeof item._score === "number") score.textContent = "score " + item._score.toFixed(3);
  else score.remove();
  const labels = Array.isArray(item._labels) ? item._labels.slice(0, 2).map((l) => l.label + " " + Math.round(l.score * 100) + "%") : [];
  const labelsEl = node.querySelector(".labels");
  if (labels.length) { labelsEl.textContent = labels.join(" · "); labelsEl.title = labelsEl.textContent; }
  else labelsEl.remove();
  const dl = node.querySelector(".fields-list");
  const shown = Object.keys(item).filter((k) => !k.startsWith("_")).slice(0, 4);
  if (item._group !== undefined && item._group !== null) shown.unshift("_group");
  for (const key of shown) {
    const dt = document.createElement("dt");
    dt.textContent = key === "_group" ? "group" : key;
    const dd = document.createElement("dd");
    dd.className = key === "_group" ? "group" : "";
    dd.textContent = shortValue(item[key]);
    dd.title = dd.textContent;
    dl.append(dt, dd);
  }
  const pos = node.querySelector(".pos");
  pos.checked = state.positives.has(id);
  pos.setAttribute("aria-label", "Like " + id);
  pos.addEventListener("change", () => {
    if (pos.checked) { state.positives.add(id); state.negatives.delete(id); } else state.positives.delete(id);
    syncMarks(node, id);
  });
  const neg = node.querySelector(".neg");
  neg.setAttribute("aria-label", "Not like " + id);
  neg.addEventListener("click", () => {
    if (state.negatives.has(id)) state.negatives.delete(id); else { state.negatives.add(id); state.positives.delete(id); }
    syncMarks(node, id);
  });
  syncMarks(node, id);
  for (const hook of hooks.card) hook(node, item);
  return node;
}

function syncMarks(node, id) {
  const isPos = state.positives.has(id), isNeg = state.negatives.has(id);
  node.classList.toggle("pos", isPos);
  node.classList.toggle("neg", isNeg);
  node.querySelector(".pos").checked = isPos;
  node.querySelector(".neg").setAttribute("aria-pressed", String(isNeg));
  updateSelection();
}

function showImage(button, src, id) {
  const img = document.createElement("img");
  img.alt = id;
  img.loading = "lazy";
  img.decoding = "async";
  img.src = src;
  img.addEventListener("error", () => img.replaceWith(placeholder()), { once: true });
  button.replaceChildren(img);
}

function placeholder() {
  const ph = document.createElement("span");
  ph.className = "ph";
  ph.setAttribute("aria-hidden", "true");
  return ph;
}

// Only thumbnails kept by the server are shown, never a record's _url: a viewer's browser
// contacts no other host. They need the key, so they are fetched and shown as blob URLs.
async function loadThumbs(list) {
  const queue = [];
  for (const card of list.querySelectorAll(".card")) {
    const button = card.querySelector(".thumb");
    const id = card.dataset.id;
    if (state.thumbs.has(id)) { if (state.thumbs.get(id)) showImage(button, state.thumbs.get(id), id); }
    else queue.push([button, id]);
  }
  const collection = state.collection;
  async function worker() {
    while (queue.length) {
      const [button, id] = queue.shift();
      const url = await fetchThumb(collection, id);
      if (collection !== state.collection) return;
      state.thumbs.set(id, url);
      if (url && button.isConnected) showImage(button, url, id);
    }
  }
  await Promise.all(Array.from({ length: THUMB_CONCURRENCY }, worker));
}

async function fetchThumb(collection, id) {
  try {
    const res = await fetch("v1/collections/" + encodeURIComponent(collection) + "/records/" + encodeURIComponent(id) + "/thumbnail?optional=true",
      { headers: headers() });
    if (!res.ok || res.status === 204) return "";
    return URL.createObjectURL(await res.blob());
  } catch (_) {
    return "";
  }
}

// Duplicates: cleanup.js (clusters with a suggested keeper, resolved through the API).

// ---------------------------------------------------------------------------------------
// Wiring
function firstImageFile(items) {
  for (const item of items || []) {
    const file = item instanceof File ? item : item.kind === "file" ? item.getAsFile() : null;
    if (file && file.type.startsWith("image/")) return file;
  }
  return null;
}

function wire() {
  $("#collection").addEventListener("change", (e) => openCollection(e.target.value));
  $("#key").value = sessionStorage.getItem(KEY_STORE) || "";
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("#key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
    $("#key-box").open = false;
    loadCollections();
  });
  $("#key-clear").addEventListener("click", () => { sessionStorage.removeItem(KEY_STORE); $("#key").value = ""; });

  $("#file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) searchImage(f); e.target.value = ""; });
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = firstImageFile(e.dataTransfer.files);
    if (file) return searchImage(file);
    const url = (e.dataTransfer.getData("text/uri-list") || e.dataTransfer.getData("text/plain") || "").split("\n")[0].trim();
    if (/^https?:\/\//i.test(url)) startQuery({ label: "the image at " + url, body: { url } });
    else setStatus("Drop an image file or an image's link.", true);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#file").click(); } });
  document.addEventListener("paste", (e) => {
    const file = firstImageFile(e.clipboardData && e.clipboardData.items);
    if (file) { e.preventDefault(); searchImage(file); return; }
    const text = e.clipboardData ? e.clipboardData.getData("text/plain").trim() : "";
    const target = e.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement;
    if (!typing && /^https?:\/\/\S+$/i.test(text)) { $("#url").value = text; startQuery({ label: "the image at " + text, body: { url: text } }); }
  });

  const byUrl = () => {
    const url = $("#url").value.trim();
    if (!/^https?:\/\//i.test(url)) { setStatus("Enter an http:// or https:// image URL.", true); return; }
    startQuery({ label: "the image at " + url, body: { url } });
  };
  const byText = () => {
    const text = $("#text").value.trim();
    if (!text) { setStatus("Type some words to search for.", true); return; }
    startQuery({ label: "“" + text + "”", body: { text } });
  };
  const byColor = () => startQuery({ label: "the colour " + $("#color").value, body: { color: $("#color").value } });
  $("#url-go").addEventListener("click", byUrl);
  $("#text-go").addEventListener("click", byText);
  $("#color-go").addEventListener("click", byColor);
  $("#url").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); byUrl(); } });
  $("#text").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); byText(); } });
  $("#query-form").addEventListener("submit", (e) => e.preventDefault());

  $("#filters").addEventListener("change", () => { state.offset = 0; refresh(); });
  $("#filters").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; refresh(); });
  $("#filters").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target.type === "number") { e.preventDefault(); e.target.dispatchEvent(new Event("change", { bubbles: true })); }
  });
  $("#filters-clear").addEventListener("click", () => { $("#filters").reset(); state.offset = 0; refresh(); });
  $("#k").addEventListener("change", () => { state.offset = 0; refresh(); });
  $("#group").addEventListener("change", () => { state.offset = 0; refresh(); });
  $("#search-selected").addEventListener("click", searchSelected);
  $("#clear-query").addEventListener("click", () => {
    state.query = null; state.offset = 0; state.positives.clear(); state.negatives.clear(); updateSelection();
    $("#dups").hidden = true; refresh();
  });
  $("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - pageSize()); refresh().then(() => $("#results").focus()); });
  $("#next").addEventListener("click", () => { state.offset += pageSize(); refresh().then(() => $("#results").focus()); });
  if (window.matchMedia("(max-width: 759px)").matches) $("#filters-box").open = false;
}

wire();
loadCollections();
