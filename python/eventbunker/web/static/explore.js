// The Explore page: fetches the answer to the form's query every 5 s and draws
// it: one number, or bars (geometry computed by the server, web/chart.py) and
// a table. Plain DOM, text only (never HTML from the server). Changing a
// choice reruns the page's form (a GET: the query's choices stay in the URL).
(function () {
  "use strict";
  var POLL_MS = 5000;
  var SVG = "http://www.w3.org/2000/svg";

  function svg(name, attrs, text) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function show(el, visible) { el.hidden = !visible; }

  function format(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number") return value.toLocaleString("en-US", { maximumFractionDigits: 3 });
    return String(value);
  }

  function drawChart(chart) {
    var el = document.getElementById("explore-chart");
    show(el, Boolean(chart));
    if (!chart) return;
    var parts = [];
    chart.ticks.forEach(function (t) {
      var y = t.y.toFixed(1);
      parts.push(svg("line", { "class": "grid", x1: chart.left, x2: chart.width, y1: y, y2: y }));
      parts.push(svg("text", { "class": "tick", x: chart.left - 8, y: y, "text-anchor": "end",
        "dominant-baseline": "middle" }, t.label));
    });
    chart.bars.forEach(function (b) {
      var rect = svg("rect", { "class": "bar", x: b.x.toFixed(1), y: b.y.toFixed(1),
        width: b.width.toFixed(1), height: b.height.toFixed(1) });
      rect.appendChild(svg("title", {}, b.name + ": " + format(b.value)));
      parts.push(rect);
    });
    chart.labels.forEach(function (l) {
      parts.push(svg("text", { "class": "xlabel", x: l.x.toFixed(1), y: chart.height - 8,
        "text-anchor": l.anchor }, l.text));
    });
    if (chart.bars.length === 0) {
      parts.push(svg("text", { "class": "empty", x: (chart.left + chart.width) / 2,
        y: chart.plot_bottom / 2, "text-anchor": "middle" }, "Nothing in this timeframe"));
    }
    el.replaceChildren.apply(el, parts);
  }

  function drawTable(table) {
    var head = document.querySelector("#explore-table thead tr");
    var body = document.querySelector("#explore-table tbody");
    var cells = table.columns.map(function (c) {
      var th = document.createElement("th");
      th.textContent = c;
      return th;
    });
    head.replaceChildren.apply(head, cells);
    var rows = table.rows.map(function (row) {
      var tr = document.createElement("tr");
      row.forEach(function (value) {
        var td = document.createElement("td");
        if (typeof value === "number") td.className = "num";
        td.textContent = format(value);
        tr.appendChild(td);
      });
      return tr;
    });
    body.replaceChildren.apply(body, rows);
  }

  function draw(data) {
    show(document.getElementById("explore-error"), false);
    var number = document.getElementById("explore-number");
    var single = !Array.isArray(data.result);
    show(number, single);
    number.textContent = single ? format(data.result) : "";
    drawChart(data.chart);
    drawTable(data.table);
  }

  function refused(data) {
    var el = document.getElementById("explore-error");
    var error = (data && data.error) || { message: "the query failed" };
    el.textContent = error.message;
    show(el, true);
  }

  function poll(url) {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/login"); return null; }
        return response.json().then(function (data) { return { ok: response.ok, data: data }; });
      })
      .then(function (answer) {
        if (!answer) return;
        if (answer.ok) draw(answer.data); else refused(answer.data);
        document.getElementById("explore-updated").textContent =
          "updated " + new Date().toLocaleTimeString("en-GB");
      })
      .catch(function () { /* next poll */ })
      .finally(function () { window.setTimeout(function () { poll(url); }, POLL_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("explore");
    var form = document.getElementById("explore-form");
    if (!section || !form) return;
    form.querySelectorAll("select").forEach(function (select) {
      select.addEventListener("change", function () { form.requestSubmit(); });
    });
    document.getElementById("copy-query").addEventListener("click", function () {
      var text = document.getElementById("query-json").textContent;
      var status = document.getElementById("copy-status");
      navigator.clipboard.writeText(text).then(
        function () { status.textContent = "copied"; },
        function () { status.textContent = "select the text to copy it"; });
    });
    poll(section.dataset.url);
  });
})();
