/* modelport dashboard: confirmation dialogs and live charts. Everything works without this file (each
   action has a confirmation page, each figure is also in a table); it only makes the pages nicer. */
(function () {
  "use strict";

  /* ---- confirmation dialogs: a link with data-dialog="ID" opens <dialog id="ID"> instead of its page */
  document.addEventListener("click", function (event) {
    var opener = event.target.closest ? event.target.closest("[data-dialog]") : null;
    if (!opener) return;
    var dialog = document.getElementById(opener.getAttribute("data-dialog"));
    if (!dialog || typeof dialog.showModal !== "function") return; /* follow the link: the page */
    event.preventDefault();
    dialog.showModal();
    var first = dialog.querySelector("[autofocus], input:not([type=hidden]), button[type=submit]");
    if (first) first.focus();
  });

  /* ---- charts (uPlot): data-src answers {x, traffic: {labels, series}, latency: {...}, points} ------ */
  var PALETTE = ["#4f46e5", "#0891b2", "#d97706", "#db2777", "#16a34a", "#7c3aed", "#dc2626", "#0d9488"];
  var REFRESH_MS = 5000;
  var HEIGHT = 220;

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function fmt(unit, digits) {
    return function (u, v) {
      return v == null ? "—" : v.toFixed(digits) + " " + unit;
    };
  }

  function seriesOptions(name, labels) {
    return labels.map(function (label, i) {
      if (name === "latency") {
        var version = Math.floor(i / 2);
        var p50 = i % 2 === 0;
        return {
          label: label,
          stroke: PALETTE[version % PALETTE.length],
          width: p50 ? 1.5 : 2,
          dash: p50 ? [5, 4] : undefined,
          spanGaps: false,
          points: { show: true, size: 4, width: 1 }, /* a quiet stretch leaves single points */
          value: fmt("ms", 2),
        };
      }
      return {
        label: label,
        stroke: PALETTE[i % PALETTE.length],
        fill: PALETTE[i % PALETTE.length] + "1f",
        width: 2,
        spanGaps: false,
        points: { show: false },
        value: fmt("req/s", 2),
      };
    });
  }

  function countPoints(series) {
    var n = 0;
    series.forEach(function (values) {
      values.forEach(function (v) {
        if (v != null && v > 0) n += 1;
      });
    });
    return n;
  }

  function Chart(figure) {
    this.figure = figure;
    this.name = figure.getAttribute("data-chart");
    this.target = figure.querySelector(".plot");
    this.plot = null;
    this.labels = "";
  }

  Chart.prototype.options = function (labels) {
    var axis = cssVar("--muted", "#5a6472");
    var grid = cssVar("--border", "#e2e5ea");
    var unit = this.name === "latency" ? "ms" : "req/s";
    return {
      width: Math.max(240, this.target.clientWidth),
      height: HEIGHT,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      series: [{ value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}" }].concat(seriesOptions(this.name, labels)),
      axes: [
        { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
        { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 56, label: unit,
          labelSize: 18 },
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
  };

  Chart.prototype.update = function (x, part) {
    var labels = JSON.stringify(part.labels);
    var data = [x].concat(part.series);
    if (this.plot && labels === this.labels) {
      this.plot.setData(data);
    } else {
      if (this.plot) this.plot.destroy();
      this.target.textContent = "";
      this.plot = new uPlot(this.options(part.labels), data, this.target);
      this.labels = labels;
    }
    this.figure.setAttribute("data-points", String(countPoints(part.series)));
  };

  Chart.prototype.resize = function () {
    if (this.plot) this.plot.setSize({ width: Math.max(240, this.target.clientWidth), height: HEIGHT });
  };

  function LiveCharts(root) {
    this.root = root;
    this.src = root.getAttribute("data-src");
    this.charts = Array.prototype.map.call(root.querySelectorAll("[data-chart]"), function (f) {
      return new Chart(f);
    });
    this.last = null;
    var self = this;
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        self.charts.forEach(function (c) { c.resize(); });
      }).observe(root);
    }
  }

  LiveCharts.prototype.draw = function (payload) {
    this.last = payload;
    this.charts.forEach(function (chart) {
      var part = payload[chart.name];
      if (part) chart.update(payload.x, part);
    });
    this.root.setAttribute("data-updated", String(Date.now()));
    this.root.setAttribute("data-available", payload.available ? "true" : "false");
  };

  LiveCharts.prototype.refresh = function () {
    var self = this;
    if (document.hidden) return Promise.resolve();
    return fetch(this.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload(); /* the session ended: the page sends us to sign in */
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (payload) {
        if (payload) self.draw(payload);
      })
      .catch(function () { /* the next tick tries again */ });
  };

  LiveCharts.prototype.start = function () {
    var self = this;
    var loop = function () {
      self.refresh().then(function () {
        window.setTimeout(loop, REFRESH_MS);
      });
    };
    loop();
  };

  function start() {
    if (typeof uPlot === "undefined") return;
    window.modelportCharts = [];
    document.querySelectorAll("[data-live-charts]").forEach(function (root) {
      var live = new LiveCharts(root);
      window.modelportCharts.push(live);
      live.start();
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
