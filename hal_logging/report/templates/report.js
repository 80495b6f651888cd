"use strict";
// hal-logging report: table sorting and filtering, task detail, log filtering and search.
// Data from the run is only ever put into the page as text (textContent), never as HTML.
(function () {
  var body = document.body;
  body.classList.add("js");
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  // --- task table -------------------------------------------------------------------
  var table = $("#task-table");
  if (table) {
    var tbody = table.tBodies[0];
    var rows = $$("tr", tbody);
    var search = $("#task-filter"), outcome = $("#outcome-filter"), errorsOnly = $("#errors-only");
    var shown = $("#task-shown");
    rows.forEach(function (r) { r._s = r.textContent.toLowerCase(); });
    var applyFilter = function () {
      var q = search.value.trim().toLowerCase(), o = outcome.value, e = errorsOnly.checked, n = 0;
      rows.forEach(function (r) {
        var ok = (!q || r._s.indexOf(q) >= 0) && (!o || r.getAttribute("data-outcome") === o) &&
          (!e || Number(r.getAttribute("data-errors")) > 0);
        r.hidden = !ok;
        if (ok) { n += 1; }
      });
      shown.textContent = n + " of " + rows.length + " tasks shown";
    };
    search.addEventListener("input", applyFilter);
    outcome.addEventListener("change", applyFilter);
    errorsOnly.addEventListener("change", applyFilter);
    $$("#outcomes a.tile").forEach(function (a) {
      a.addEventListener("click", function () {
        outcome.value = a.getAttribute("data-outcome");
        applyFilter();
      });
    });
    $$("th", table).forEach(function (th, col) {
      th.addEventListener("click", function () {
        var desc = th.classList.contains("sorted-asc");
        var num = th.getAttribute("data-type") === "num";
        $$("th", table).forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(desc ? "sorted-desc" : "sorted-asc");
        var key = function (r) {
          var v = r.cells[col].getAttribute("data-v") || "";
          return num ? Number(v) : v.toLowerCase();
        };
        rows.sort(function (a, b) {
          var x = key(a), y = key(b), c = x < y ? -1 : (x > y ? 1 : 0);
          return desc ? -c : c;
        });
        rows.forEach(function (r) { tbody.appendChild(r); });
      });
    });
    applyFilter();
  }

  // --- task detail ------------------------------------------------------------------
  var LONG = 2000, HEAD = 600;
  function shortTime(t) { return t.length >= 23 && t.charAt(10) === "T" ? t.slice(11, 23) : t; }

  function renderLog(article) {
    var box = $(".log", article);
    if (box.getAttribute("data-rendered") === "1") { return; }
    var data = JSON.parse($("script.log-data", article).textContent);
    var frag = document.createDocumentFragment();
    data.forEach(function (d) {
      // d: [time, level, logger, message, stream, [type, message, stacktrace] | null, claimed]
      var line = el("div", "line lv-" + d[1]);
      line._lv = d[1];
      var t = el("span", "t", shortTime(d[0])); t.title = d[0];
      var lg = el("span", "lg", d[2]); lg.title = d[2] + (d[4] ? " (" + d[4] + ")" : "");
      // A long message shows its start; the rest is folded (search still sees all of it).
      var long = d[3].length > LONG;
      var m = el("span", "m", long ? d[3].slice(0, HEAD) + " …" : d[3]);
      line.appendChild(t); line.appendChild(el("span", "lv", d[1])); line.appendChild(lg); line.appendChild(m);
      if (d[6]) { m.appendChild(el("span", "claimed", "  [claimed a context the VM side did not believe]")); }
      if (long) {
        var more = el("details", "more");
        more.appendChild(el("summary", null, "all " + d[3].length + " characters"));
        more.appendChild(el("pre", null, d[3]));
        line.appendChild(more);
      }
      var s = d[3] + " " + d[2];
      if (d[5]) {
        var det = el("details", "exc");
        det.appendChild(el("summary", null, d[5][0] + ": " + d[5][1]));
        det.appendChild(el("pre", null, d[5][2]));
        line.appendChild(det);
        s += " " + d[5][0] + " " + d[5][1] + " " + d[5][2];
      }
      line._s = s.toLowerCase();
      frag.appendChild(line);
    });
    box.appendChild(frag);
    box.setAttribute("data-rendered", "1");
    var apply = function () {
      var on = {};
      $$(".lv-toggle", article).forEach(function (c) { on[c.value] = c.checked; });
      var q = $(".log-search", article).value.trim().toLowerCase(), n = 0, lines = box.children;
      for (var i = 0; i < lines.length; i++) {
        var ok = on[lines[i]._lv] !== false && (!q || lines[i]._s.indexOf(q) >= 0);
        lines[i].hidden = !ok;
        if (ok) { n += 1; }
      }
      $(".log-shown", article).textContent = n + " of " + lines.length + " rows shown";
    };
    $$(".lv-toggle", article).forEach(function (c) { c.addEventListener("change", apply); });
    $(".log-search", article).addEventListener("input", apply);
    apply();
  }

  function openFromHash() {
    var m = /^#task-(\d+)$/.exec(location.hash);
    if (!m) { return; }
    var article = document.getElementById("task-" + m[1]);
    if (!article) { return; }
    $$("article.task.open").forEach(function (a) { a.classList.remove("open"); });
    article.classList.add("open");
    var note = $("#pick-note");
    if (note) { note.hidden = true; }
    renderLog(article);
    article.scrollIntoView();
  }
  window.addEventListener("hashchange", openFromHash);
  openFromHash();
})();
