/* epp dashboard: polls the analytics API and draws two uPlot charts.
 * Everything it loads comes from this service (no CDN). When the service has API keys, the
 * page asks for one and keeps it in sessionStorage for this tab. */
(function () {
  "use strict";

  var KEY_STORE = "epp-analytics-key";
  var $ = function (id) { return document.getElementById(id); };
  var state = {
    total: null, windowCount: null, uniqueUsers: null, series: null, top: null, dau: null,
    updatedAt: null, refreshes: 0, errors: 0
  };
  /* For tests and for the curious: the latest data and the chart objects. */
  window.eppDashboard = state;

  function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

  function NeedKey() { this.name = "NeedKey"; }

  function api(path, params) {
    var qs = Object.keys(params).map(function (k) {
      return encodeURIComponent(k) + "=" + encodeURIComponent(params[k]);
    }).join("&");
    var headers = { "Accept": "application/json" };
    if (apiKey()) headers["X-API-Key"] = apiKey();
    return fetch(path + "?" + qs, { headers: headers, cache: "no-store" }).then(function (r) {
      if (r.status === 401) throw new NeedKey();
      return r.json().then(function (body) {
        if (!r.ok) {
          var e = body && body.error ? body.error : {};
          throw new Error((e.code || r.status) + ": " + (e.message || r.statusText));
        }
        return body;
      });
    });
  }

  function fmt(n) { return n === null || n === undefined ? "–" : n.toLocaleString("en-US"); }

  function setNumber(id, n) {
    var el = $(id);
    el.textContent = fmt(n);
    el.setAttribute("data-value", n === null ? "" : String(n));
  }

  function chooseInterval(windowS) {
    var v = $("interval").value;
    if (v === "minute" && windowS / 60 > 10000) v = "hour";
    if (v === "auto") v = windowS <= 6 * 3600 ? "minute" : "hour";
    return v;
  }

  var seriesPlot = null, topPlot = null, dauPlot = null;

  function chartWidth(el) { return Math.max(300, el.clientWidth || 600); }

  /* A line chart of points ({ts, [key]}): updated in place when plot exists, else created. */
  function lineChart(plot, elId, points, key, label, rgb, height) {
    var xs = points.map(function (p) { return Date.parse(p.ts) / 1000; });
    var ys = points.map(function (p) { return p[key]; });
    if (plot) {
      plot.setData([xs, ys]);
      return plot;
    }
    var el = $(elId);
    return new uPlot({
      width: chartWidth(el), height: height,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
      series: [{}, { label: label, stroke: "rgb(" + rgb + ")", width: 2, fill: "rgba(" + rgb + ",0.12)" }],
      axes: [{}, { size: 60 }],
      legend: { show: true }
    }, [xs, ys], el);
  }

  function drawSeries(points, interval) {
    $("series-title").textContent = "Events per " + interval;
    seriesPlot = state.seriesPlot = lineChart(seriesPlot, "series-chart", points, "count", "events",
                                              "37,99,235", 260);
  }

  /* Daily active users: one exact point per UTC day (interval=day). */
  function drawDau(points) {
    dauPlot = state.dauPlot = lineChart(dauPlot, "dau-chart", points, "unique_users", "users",
                                        "124,58,237", 200);
  }

  function drawTop(items) {
    var names = items.map(function (it) { return it.event_name; });
    var xs = items.map(function (_, i) { return i; });
    var ys = items.map(function (it) { return it.count; });
    var el = $("top-chart");
    var list = $("top-list");
    list.textContent = "";
    items.forEach(function (it) {
      var li = document.createElement("li");
      li.textContent = it.event_name + " — " + fmt(it.count);
      list.appendChild(li);
    });
    if (topPlot) topPlot.destroy();
    if (!items.length) { topPlot = null; state.topPlot = null; return; }
    topPlot = new uPlot({
      width: chartWidth(el), height: 260,
      scales: { x: { time: false, range: [-0.5, Math.max(items.length, 1) - 0.5] },
                y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
      series: [{ label: "type", value: function (u, v) { return v === null ? "" : names[v]; } },
               { label: "events", fill: "#0d9488", stroke: "#0f766e",
                 paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }],
      axes: [{ values: function (u, splits) { return splits.map(function (s) { return names[s] || ""; }); },
               splits: function () { return xs; }, rotate: 0 },
             { size: 60 }],
      legend: { show: false }
    }, [xs, ys], el);
    state.topPlot = topPlot;
  }

  var timer = null, inflight = false;

  function refresh() {
    if (inflight) return;
    inflight = true;
    var windowS = parseInt($("window").value, 10);
    var interval = chooseInterval(windowS);
    var step = interval === "minute" ? 60 : 3600;
    var now = Date.now() / 1000;
    /* The window ends at the end of the current bucket, so every point is a whole bucket. */
    var to = Math.ceil((now + 0.001) / step) * step;
    var from = to - Math.ceil(windowS / step) * step;
    var range = { from_ts: from, to_ts: to };
    /* The last 30 UTC days, today included. */
    var dauTo = Math.ceil((now + 0.001) / 86400) * 86400;
    $("window-label").textContent = "last " + $("window").selectedOptions[0].textContent;
    Promise.all([
      api("/analytics/events/count", { from_ts: "0001-01-01T00:00:00Z", to_ts: Math.ceil(now) + 86400 }),
      api("/analytics/events/count", range),
      api("/analytics/users/active", range),
      api("/analytics/events/timeseries", { from_ts: from, to_ts: to, interval: interval }),
      api("/analytics/events/top", { from_ts: from, to_ts: to, limit: 10 }),
      api("/analytics/users/active", { from_ts: dauTo - 30 * 86400, to_ts: dauTo, interval: "day" })
    ]).then(function (r) {
      state.total = r[0].count;
      state.windowCount = r[1].count;
      state.uniqueUsers = r[2].unique_users;
      state.series = r[3];
      state.top = r[4];
      state.dau = r[5];
      setNumber("total", state.total);
      setNumber("window-count", state.windowCount);
      setNumber("unique-users", state.uniqueUsers);
      drawSeries(r[3].points, interval);
      drawTop(r[4].items);
      drawDau(r[5].points);
      state.updatedAt = new Date();
      state.refreshes++;
      $("status").textContent = "updated " + state.updatedAt.toLocaleTimeString();
      $("status").className = "";
      $("keyform").hidden = true;
    }).catch(function (e) {
      state.errors++;
      if (e instanceof NeedKey) {
        $("keyform").hidden = false;
        $("status").textContent = "API key required";
      } else {
        $("status").textContent = "error: " + e.message;
      }
      $("status").className = "error";
    }).then(function () { inflight = false; });
  }

  function schedule() {
    if (timer) clearInterval(timer);
    var s = parseInt($("refresh").value, 10);
    timer = s > 0 ? setInterval(refresh, s * 1000) : null;
  }

  $("keyform").addEventListener("submit", function (ev) {
    ev.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("key").value);
    $("key").value = "";
    refresh();
  });
  ["window", "interval"].forEach(function (id) {
    $(id).addEventListener("change", function () {
      if (seriesPlot) { seriesPlot.destroy(); seriesPlot = null; }
      refresh();
    });
  });
  $("refresh").addEventListener("change", schedule);
  $("controls").addEventListener("submit", function (ev) { ev.preventDefault(); });
  window.addEventListener("resize", function () {
    [[seriesPlot, "series-chart", 260], [topPlot, "top-chart", 260], [dauPlot, "dau-chart", 200]].forEach(function (p) {
      if (p[0]) p[0].setSize({ width: chartWidth($(p[1])), height: p[2] });
    });
  });

  refresh();
  schedule();
})();
