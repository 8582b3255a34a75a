// Draws the dashboard's charts with Chart.js (served from /static, no CDN).
// Data never goes into script code: each <canvas data-chart="ID"> reads the JSON of
// <script type="application/json" id="ID">, which the server wrote with Jinja's tojson.
(function () {
  "use strict";
  if (typeof Chart === "undefined") return;

  var MAIN = "#1f3a5f";
  var BAND = "rgba(74, 120, 168, 0.22)";
  var COMPARE = "#888888";

  function pct(v) { return v === null || v === undefined ? "—" : v.toFixed(1) + " %"; }

  function trend(canvas, d) {
    var datasets = [];
    d.series.forEach(function (s) {
      if (s.main) {
        datasets.push({ label: s.label + " low", data: s.low, borderWidth: 0, pointRadius: 0, fill: false,
          band: true, spanGaps: false });
        datasets.push({ label: s.label + " 95 % interval", data: s.high, borderWidth: 0, pointRadius: 0,
          backgroundColor: BAND, fill: "-1", band: true, spanGaps: false });
        datasets.push({ label: s.label, data: s.value, borderColor: MAIN, backgroundColor: MAIN, borderWidth: 2,
          pointRadius: 3, spanGaps: false, series: s, order: 0 });
        // Answers per period, faint, on their own axis: why a point is missing (too few answers).
        datasets.push({ type: "bar", label: "answers", data: s.n, yAxisID: "n", order: 9,
          backgroundColor: "rgba(31, 58, 95, 0.10)", counts: true });
      } else {
        datasets.push({ label: s.label, data: s.value, borderColor: COMPARE, backgroundColor: COMPARE,
          borderWidth: 1.5, borderDash: [6, 4], pointRadius: 2, spanGaps: true, series: s });
      }
    });
    if (d.target !== null && d.target !== undefined) {
      datasets.push({ label: "target " + d.target + " %", data: d.labels.map(function () { return d.target; }),
        borderColor: "#555555", borderWidth: 1, borderDash: [2, 3], pointRadius: 0 });
    }
    return new Chart(canvas, {
      type: "line",
      data: { labels: d.labels, datasets: datasets },
      options: {
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          y: { min: 0, max: 100, ticks: { callback: function (v) { return v + " %"; } } },
          n: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
               ticks: { precision: 0 }, title: { display: true, text: "answers" } }
        },
        plugins: {
          legend: { labels: { filter: function (item, data) { return !data.datasets[item.datasetIndex].band; } } },
          tooltip: {
            filter: function (item) { return !item.dataset.band && !item.dataset.counts; },
            callbacks: {
              label: function (ctx) {
                var s = ctx.dataset.series;
                if (!s) return ctx.dataset.label;
                var i = ctx.dataIndex, n = s.n[i];
                var text = s.label + ": " + pct(s.value[i]);
                if (s.low && s.value[i] !== null) text += " (" + pct(s.low[i]) + " – " + pct(s.high[i]) + ")";
                if (s.value[i] === null && n) text += " " + d.min_responses_note;
                return text + ", n = " + n;
              }
            }
          }
        }
      }
    });
  }

  function distribution(canvas, d) {
    return new Chart(canvas, {
      type: "bar",
      data: { labels: d.labels, datasets: [{ label: "answers", data: d.counts, backgroundColor: d.colours }] },
      options: {
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }
      }
    });
  }

  var KINDS = { trend: trend, distribution: distribution };
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var source = document.getElementById(canvas.getAttribute("data-chart"));
    if (!source) return;
    var d = JSON.parse(source.textContent);
    if (KINDS[d.kind]) KINDS[d.kind](canvas, d);
  });
})();
