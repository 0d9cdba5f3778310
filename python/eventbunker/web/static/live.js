// Live figures of a project page, every 2 s: today's billed writes (and the
// totals that include them), the events per second (from the change of that
// counter between polls) and the latest events. Plain DOM, text only (never
// HTML from the server).
(function () {
  "use strict";
  var POLL_MS = 2000;
  var WINDOW_MS = 10000; // rate over the samples of the last 10 s
  var COLUMNS = ["timestamp", "event_name", "ua_browser", "ua_os", "ua_device_type",
    "geo_country", "geo_city", "url_path", "utm_source", "referrer_host", "customer_identifier"];
  var samples = [];

  function number(n) { return n.toLocaleString("en-US"); }

  function cell(row, value, name) {
    var td = document.createElement("td");
    if (name === "timestamp") {
      td.className = "nowrap";
      value = value ? value.replace("T", " ").slice(0, 19) : "";
    }
    if (name === "event_name") {
      var strong = document.createElement("strong");
      strong.textContent = value;
      td.appendChild(strong);
    } else {
      td.textContent = value === null || value === undefined ? "" : String(value);
    }
    row.appendChild(td);
  }

  function renderEvents(events) {
    var body = document.getElementById("events");
    if (!body || events.length === 0) return;
    var rows = document.createDocumentFragment();
    events.forEach(function (event) {
      var tr = document.createElement("tr");
      COLUMNS.forEach(function (name) { cell(tr, event[name], name); });
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
  }

  function renderRate(data) {
    samples.push({ at: data.at_ms, n: data.billed_today });
    while (samples.length > 2 && data.at_ms - samples[0].at > WINDOW_MS) samples.shift();
    var first = samples[0];
    var eps = document.getElementById("eps");
    if (samples.length < 2 || data.billed_today < first.n) {
      if (data.billed_today < first.n) samples = [samples[samples.length - 1]]; // new UTC day
      return;
    }
    var seconds = (data.at_ms - first.at) / 1000;
    if (seconds > 0) {
      var rate = (data.billed_today - first.n) / seconds;
      eps.textContent = rate >= 10 ? number(Math.round(rate)) : rate.toFixed(1);
    }
  }

  function poll(url) {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/login"); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (!data) return;
        // Every figure that includes today's billed writes: its other days + today.
        document.querySelectorAll("[data-live-offset]").forEach(function (el) {
          el.textContent = number(Number(el.dataset.liveOffset) + data.billed_today);
        });
        renderRate(data);
        renderEvents(data.events);
      })
      .catch(function () { /* next poll */ })
      .finally(function () { window.setTimeout(function () { poll(url); }, POLL_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    if (live) poll(live.dataset.url);
  });
})();
