/* Aura Orchestrator dashboards: charts (Chart.js, served from our static files) and small
   conveniences. Pages work without JavaScript; only the charts need it. */
(function () {
  "use strict";

  // Filters: a changed select submits its form (the Apply button stays for no-JS use).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  var dataNode = document.getElementById("chart-data");
  if (!dataNode || typeof window.Chart === "undefined") return;
  var data = JSON.parse(dataNode.textContent);
  var Chart = window.Chart;

  var colors = {
    accent: "#6366f1",
    accentSoft: "rgba(99, 102, 241, 0.14)",
    teal: "#0ea5a4",
    tealSoft: "rgba(14, 165, 164, 0.16)",
    sky: "#38bdf8",
    amber: "#f59e0b",
    red: "#e5484d",
    grid: "#eef0f5",
    text: "#5b6274",
  };

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = colors.text;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.usePointStyle = true;
  Chart.defaults.plugins.legend.labels.boxWidth = 8;
  Chart.defaults.plugins.tooltip.backgroundColor = "#161a26";
  Chart.defaults.plugins.tooltip.padding = 10;
  Chart.defaults.plugins.tooltip.cornerRadius = 8;

  var months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function label(iso) {
    var d = new Date(iso);
    var day = months[d.getUTCMonth()] + " " + d.getUTCDate();
    return data.bucket === "day" ? day : day + " " + two(d.getUTCHours()) + ":00";
  }
  var labels = data.labels.map(label);
  var cost = data.cost.map(Number);

  function usd(v) {
    if (v === 0) return "$0";
    return "$" + (Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2));
  }
  function ms(v) { return v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms"; }

  var timeAxis = {
    grid: { display: false },
    ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 18 },
  };
  function valueAxis(format) {
    return {
      beginAtZero: true,
      grid: { color: colors.grid },
      border: { display: false },
      ticks: { maxTicksLimit: 5, callback: format },
    };
  }

  var charts = [];

  function make(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    charts.push(new Chart(canvas, config));
  }

  make("chart-operations", {
    type: "bar",
    data: {
      labels: labels,
      datasets: [
        { label: "Succeeded", data: data.succeeded, backgroundColor: colors.accent, borderRadius: 3, stack: "ops" },
        { label: "Cache hits", data: data.cached, backgroundColor: colors.sky, borderRadius: 3, stack: "ops" },
        { label: "Failed", data: data.failed, backgroundColor: colors.red, borderRadius: 3, stack: "ops" },
      ],
    },
    options: {
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "top", align: "end" } },
      scales: { x: Object.assign({ stacked: true }, timeAxis), y: Object.assign({ stacked: true }, valueAxis()) },
    },
  });

  make("chart-cost", {
    type: "line",
    data: {
      labels: labels,
      datasets: [{
        label: "Cost", data: cost, borderColor: colors.teal, backgroundColor: colors.tealSoft,
        fill: true, tension: 0.35, cubicInterpolationMode: "monotone", pointRadius: 0, pointHoverRadius: 4, borderWidth: 2,
      }],
    },
    options: {
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { label: function (c) { return " " + usd(c.parsed.y); } } },
      },
      scales: { x: timeAxis, y: valueAxis(usd) },
    },
  });

  make("chart-latency", {
    type: "line",
    data: {
      labels: labels,
      datasets: [
        {
          label: "p95", data: data.p95, borderColor: colors.amber, backgroundColor: "rgba(245, 158, 11, 0.12)",
          fill: true, tension: 0.35, cubicInterpolationMode: "monotone", pointRadius: 0, pointHoverRadius: 4, borderWidth: 2,
        },
        {
          label: "average", data: data.avg, borderColor: colors.accent, borderDash: [5, 4],
          tension: 0.35, cubicInterpolationMode: "monotone", pointRadius: 0, pointHoverRadius: 4, borderWidth: 1.5,
        },
      ],
    },
    options: {
      interaction: { mode: "index", intersect: false },
      spanGaps: true,
      plugins: {
        legend: { position: "top", align: "end" },
        tooltip: { callbacks: { label: function (c) { return " " + c.dataset.label + ": " + ms(c.parsed.y); } } },
      },
      scales: { x: timeAxis, y: valueAxis(ms) },
    },
  });

  function pretty(key) { var s = key.replace(/_/g, " "); return s.charAt(0).toUpperCase() + s.slice(1); }
  make("chart-types", {
    type: "bar",
    data: {
      labels: data.types.labels.map(pretty),
      datasets: [{
        label: "Operations", data: data.types.operations, backgroundColor: colors.accent,
        borderRadius: 4, barThickness: 14,
      }],
    },
    options: {
      indexAxis: "y",
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            afterLabel: function (c) { return " cost " + usd(Number(data.types.cost[c.dataIndex])); },
          },
        },
      },
      scales: {
        x: valueAxis(),
        y: { grid: { display: false }, border: { display: false } },
      },
    },
  });

  // For people poking around in the console, and for the browser tests.
  window.auraCharts = charts;
})();
