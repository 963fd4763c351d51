// Draws the waterfall of one score from its JSON view (clinician_ui.views.explanation_json): in
// percentage points of risk by default, in exact log-odds (SHAP) on request. The same toggle shows
// the tables' log-odds columns (class "log-odds", hidden by static/css/sightline.css unless the
// page has the class "show-log-odds"): by default the page reads in points and words.
(function () {
  "use strict";

  var RAISES = "#a4262c";
  var LOWERS = "#1f5f99";
  var TOTAL = "#5b6670";

  function signed(value, digits) {
    return (value >= 0 ? "+" : "\u2212") + Math.abs(value).toFixed(digits === undefined ? 2 : digits);
  }

  var pct = window.SightlineFigures.shownPercentText;  // static/js/figures.js

  // Two readings of the same explanation: percentage points of risk (the default, for the bedside:
  // from the background average risk, each factor's points largest first, to this patient's risk)
  // and the exact SHAP values in log-odds (on request).
  function steps(data, exact) {
    var base = exact ? data.base_value : data.base_probability * 100;
    var bars = [{
      label: exact ? "Background average" : "Comparison patients", value: base, measure: "absolute",
      text: exact ? base.toFixed(2) : pct(data.base_probability),
      hover: exact
        ? "Average over " + data.background_size + " background patients<br>" +
          data.base_value.toFixed(3) + " log-odds (\u2248 " + pct(data.base_probability) + " risk)"
        : "Average risk of the model's comparison patients: " + pct(data.base_probability)
    }];
    data.contributions.forEach(function (step) {
      var value = exact ? step.shap : step.probability_points * 100;
      var points = signed(step.probability_points * 100, 1);
      bars.push({
        label: step.value ? step.label + " = " + step.value : step.label, value: value, measure: "relative",
        text: (step.shap >= 0 ? "\u2191 " : "\u2193 ") + (exact ? signed(step.shap) : signed(value, 1) + " pts"),
        hover: step.label + (step.value ? ": " + step.value : "") + "<br>\u2248 " + points +
               " percentage points" + (exact ? "<br>" + signed(step.shap) + " log-odds (exact)" : "")
      });
    });
    bars.push({
      label: "This patient", value: 0, measure: "total",
      text: exact ? data.output.toFixed(2) + " (risk " + pct(data.risk) + ")" : "risk " + pct(data.risk),
      hover: "Risk " + pct(data.risk) + (exact ? "<br>model output " + data.output.toFixed(3) + " log-odds" : "")
    });
    return bars;
  }

  function draw(container, data, exact) {
    if (data.status !== "ready") {
      container.textContent = "The explanation is not available.";
      return;
    }
    var bars = steps(data, exact);
    // Pad the axis so the labels outside the bars never run into the feature names.
    var running = bars[0].value;
    var low = Math.min(0, running);
    var high = Math.max(0, running);
    bars.slice(1, -1).forEach(function (bar) {
      running += bar.value;
      low = Math.min(low, running);
      high = Math.max(high, running);
    });
    var pad = 0.22 * (high - low || 1);
    var pick = function (key) { return bars.map(function (bar) { return bar[key]; }); };
    var trace = {
      type: "waterfall",
      orientation: "h",
      y: pick("label"),
      x: pick("value"),
      measure: pick("measure"),
      text: pick("text"),
      textposition: "outside",
      cliponaxis: false,
      hovertext: pick("hover"),
      hoverinfo: "text",
      increasing: {marker: {color: RAISES}},
      decreasing: {marker: {color: LOWERS}},
      totals: {marker: {color: TOTAL}},
      connector: {line: {color: "#9aa5b1", width: 1, dash: "dot"}}
    };
    var layout = {
      height: 90 + 30 * bars.length,
      margin: {l: 230, r: 110, t: 10, b: 50},
      font: {family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 13, color: "#1f2933"},
      xaxis: {title: {text: exact ? "log-odds (exact SHAP contribution)" : "risk (%), from the comparison patients' average to this patient"},
              zeroline: true, zerolinecolor: "#9aa5b1", gridcolor: "#e4e7eb", automargin: true,
              range: [low - pad, high + pad], ticksuffix: exact ? "" : "%"},
      yaxis: {autorange: "reversed", automargin: true},
      showlegend: false,
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)"
    };
    container.textContent = "";
    container.setAttribute("data-units", exact ? "log-odds" : "points");
    container.setAttribute("aria-label", "Waterfall chart of feature contributions in " +
      (exact ? "log-odds" : "percentage points of risk") + "; the same numbers are in the table below.");
    window.Plotly.newPlot(container, [trace], layout, {displayModeBar: false, responsive: true});
  }

  // The chart's data once loaded, and the units the clinician chose (points unless asked).
  var loaded = null;
  var exact = false;

  function load(container) {
    fetch(container.getAttribute("data-url"), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        loaded = data;
        draw(container, data, exact);
      })
      .catch(function () {
        container.textContent = "The chart could not be loaded; the table below has the same numbers.";
      });
  }

  // The toggle works on the tables even when the chart could not be drawn.
  function wireToggle(toggle, container) {
    toggle.addEventListener("click", function () {
      exact = !exact;
      toggle.setAttribute("aria-pressed", exact ? "true" : "false");
      toggle.textContent = exact ? "Show percentage points" : "Show exact log-odds (SHAP)";
      document.body.classList.toggle("show-log-odds", exact);
      if (loaded && container) { draw(container, loaded, exact); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var container = document.getElementById("waterfall");
    var toggle = document.getElementById("waterfall-units");
    if (toggle) { wireToggle(toggle, container && window.Plotly ? container : null); }
    if (container && window.Plotly) { load(container); }
  });
})();
