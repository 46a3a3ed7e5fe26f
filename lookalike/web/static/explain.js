// lookalike web page: "Why this?" on each search hit (`explain`) and "Hide copies" (`collapse`).
// Loaded after app.js and plugged into its hooks: every search asks for `explain`, and for
// `collapse` while "Hide copies" is ticked; cards get a "Why this?" box, a frame on the
// thumbnail where a copy of the query lies, and a "+N copies" note.
"use strict";

(function () {
  const HOW = {
    exact: "the same picture",
    whole: "a copy (resized, re-compressed or edited)",
    mirrored: "a mirrored copy",
    rotated: "a rotated copy",
    window: "a copy of part of it",
    crop: "your picture is a crop of it",
  };
  const PART = { visual: "looks", text: "text", color: "colour", negative: "unlike the “not like” picks",
                 boosts: "boost rules", other: "index approximation" };

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function signed(x) {
    return (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(3);
  }

  function swatch(color) {
    const s = el("span", "swatch");
    s.style.backgroundColor = color;  // CSSOM, allowed by the page's style-src policy
    s.title = color;
    return s;
  }

  function whyBox(item) {
    const why = item._explain;
    const box = el("details", "why");
    box.append(el("summary", "", "Why this?"));
    const parts = el("ul", "parts");
    parts.setAttribute("aria-label", "Parts of the score");
    for (const [name, value] of Object.entries(why.parts || {})) {
      if (name === "boosts") continue;  // listed rule by rule below
      const li = el("li", "part", (PART[name] || name) + " " + signed(value));
      li.dataset.part = name;
      parts.append(li);
    }
    for (const rule of why.boosts || []) {
      const li = el("li", "part boost", "boost " + JSON.stringify(rule.filter) + " " + signed(rule.effect));
      li.dataset.part = "boost";
      li.title = rule.source + " rule " + rule.rule;
      parts.append(li);
    }
    box.append(parts);
    if (why.labels && why.labels.length) {
      box.append(el("p", "shared-labels", "Same label: " + why.labels.map((l) => l.label).join(", ")));
    }
    if (why.colors && why.colors.length) {
      const p = el("p", "shared-colors", "Same colours: ");
      for (const c of why.colors) {
        const pair = el("span", "pair");
        pair.append(swatch(c.query), swatch(c.hit));
        pair.setAttribute("aria-label", c.query + " like " + c.hit);
        p.append(pair);
      }
      box.append(p);
    }
    if (why.duplicate) {
      const d = why.duplicate;
      box.append(el("p", "copy", "A copy of your picture: " + (HOW[d.how] || d.how) + " (" + d.score.toFixed(2) + ")"));
    }
    return box;
  }

  // The frame of `region` ([x0, y0, x1, y1] of the hit) over the thumbnail, which is shown
  // whole (object-fit: contain) in a square: placed once the image is there and its shape known.
  function frameRegion(node, region) {
    const button = node.querySelector(".thumb");
    const place = () => {
      const img = button.querySelector("img");
      if (!img || button.querySelector(".region")) return;
      const draw = () => {
        const r = img.naturalWidth / img.naturalHeight || 1;
        const [dw, dh] = r >= 1 ? [1, 1 / r] : [r, 1];
        const [ox, oy] = [(1 - dw) / 2, (1 - dh) / 2];
        const frame = el("span", "region");
        frame.setAttribute("aria-hidden", "true");
        frame.style.left = 100 * (ox + region[0] * dw) + "%";
        frame.style.top = 100 * (oy + region[1] * dh) + "%";
        frame.style.width = 100 * (region[2] - region[0]) * dw + "%";
        frame.style.height = 100 * (region[3] - region[1]) * dh + "%";
        button.append(frame);
      };
      if (img.complete && img.naturalWidth) draw(); else img.addEventListener("load", draw, { once: true });
    };
    new MutationObserver(place).observe(button, { childList: true });
    place();
  }

  hooks.params.push((params) => {
    params.explain = true;
    if ($("#collapse").checked) params.collapse = { ids: true };
  });

  hooks.card.push((node, item) => {
    $("#collapse-label").hidden = !state.query;
    if (item._explain) {
      node.querySelector(".meta").insertBefore(whyBox(item), node.querySelector(".marks"));
      const d = item._explain.duplicate;
      if (d && d.region && d.how !== "exact" && d.how !== "whole" && d.how !== "mirrored") frameRegion(node, d.region);
    }
    if (item._collapsed) {
      const note = el("p", "copies", "+" + item._collapsed + " cop" + (item._collapsed === 1 ? "y" : "ies") + " hidden");
      if (item._collapsed_ids) note.title = item._collapsed_ids.join(", ");
      (node.querySelector(".score") || node.querySelector(".rid")).after(note);
    }
  });

  $("#collapse").addEventListener("change", () => { state.offset = 0; refresh(); });
})();
