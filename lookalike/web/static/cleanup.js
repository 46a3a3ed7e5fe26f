// lookalike web page, duplicate clean-up: the copy clusters with the server's suggested keeper
// (GET .../duplicates/report), and resolving one: keep a record, delete or tag the others
// (POST .../duplicates/resolve, which needs the admin key). Loaded after app.js; it owns the
// "Find duplicates" view.
"use strict";

(function () {
  async function showClusters() {
    const box = $("#dups");
    const status = $("#dups-status");
    const list = $("#clusters");
    box.hidden = false;
    list.replaceChildren();
    status.classList.remove("error");
    status.textContent = "Looking for duplicates…";
    try {
      const data = await api("GET", colPath("/duplicates/report"));
      const clusters = data.clusters || [];
      for (const cluster of clusters) list.append(await renderCluster(cluster));
      status.textContent = clusters.length
        ? clusters.length + " group" + (clusters.length === 1 ? "" : "s") + " of copies. The suggested keeper of each is ticked."
        : "No duplicates found.";
    } catch (err) {
      status.textContent = explain(err);
      status.classList.add("error");
    }
    box.scrollIntoView({ block: "nearest" });
  }

  async function renderCluster(cluster) {
    const ids = cluster.members.map((m) => m._id).sort();  // as the plain duplicates list orders them
    const docs = await Promise.all(ids.map((id) => api("GET", colPath("/records/" + encodeURIComponent(id))).then(
      (d) => Object.assign({ _id: id }, d), () => ({ _id: id }))));
    const li = document.createElement("li");
    li.className = "dup-cluster";
    li.dataset.keeper = cluster.keeper;
    const row = document.createElement("ul");
    row.className = "cluster";
    row.setAttribute("aria-label", "Copies: " + ids.join(", "));
    renderGrid(row, docs);
    const group = "keep-" + cluster.cluster;
    for (const card of row.querySelectorAll(".card")) {
      const member = cluster.members.find((m) => m._id === card.dataset.id);
      const label = document.createElement("label");
      label.className = "keep";
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = group;
      radio.value = card.dataset.id;
      radio.checked = card.dataset.id === cluster.keeper;
      radio.setAttribute("aria-label", "Keep " + card.dataset.id);
      label.append(radio, " Keep");
      const size = document.createElement("p");
      size.className = "size";
      size.textContent = member && member.width ? member.width + "×" + member.height + " · " + Math.round(member.bytes / 1024) + " KB" : "size unknown";
      card.querySelector(".meta").prepend(label, size);
    }
    const why = document.createElement("p");
    why.className = "muted";
    why.textContent = "Suggested keeper: " + cluster.keeper + " (" + cluster.reason + ").";
    const actions = document.createElement("div");
    actions.className = "dup-actions";
    const del = document.createElement("button");
    del.type = "button";
    del.className = "dup-delete";
    del.textContent = "Keep the ticked one, delete the others";
    const tag = document.createElement("button");
    tag.type = "button";
    tag.className = "dup-tag";
    tag.textContent = "Keep the ticked one, tag the others “duplicate_of”";
    const result = document.createElement("p");
    result.className = "dup-result";
    result.setAttribute("role", "status");
    actions.append(del, tag);
    li.append(why, row, actions, result);
    const resolve = async (action) => {
      const keep = li.querySelector("input[type=radio]:checked").value;
      const others = ids.filter((id) => id !== keep);
      if (action === "delete" && !confirm("Delete " + others.length + " record(s) for good, keeping " + keep + "?")) return;
      del.disabled = tag.disabled = true;
      result.classList.remove("error");
      try {
        const done = await api("POST", colPath("/duplicates/resolve"), { keep, others, action });
        result.textContent = "Kept " + keep + "; " + (action === "delete" ? "deleted " + done.deleted : "tagged " + done.tagged) + ".";
        li.classList.add("resolved");
        if (action === "delete") for (const card of row.querySelectorAll(".card")) if (card.dataset.id !== keep) card.remove();
        for (const radio of li.querySelectorAll("input[type=radio]")) radio.disabled = true;
      } catch (err) {
        result.textContent = explain(err);
        result.classList.add("error");
        del.disabled = tag.disabled = false;
      }
    };
    del.addEventListener("click", () => resolve("delete"));
    tag.addEventListener("click", () => resolve("tag"));
    return li;
  }

  $("#dups-go").addEventListener("click", showClusters);
})();
