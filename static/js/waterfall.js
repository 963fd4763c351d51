// Draws the SHAP waterfall of one score from its JSON view (clinician_ui.views.explanation_json).
// Values are log-odds; the hover also shows approximate risk points, labelled approximate.
(function () {
  "use strict";

  var RAISES = "#a4262c";
  var LOWERS = "#1f5f99";
  var TOTAL = "#5b6670";

  function signed(value, digits) {
    return (value >= 0 ? "+" : "\u2212") + Math.abs(value).toFixed(digits === undefined ? 2 : digits);
  }

  function pct(value) {
    return (value * 100).toFixed(0) + "%";
  }

  function draw(container, data) {
    if (data.status !== "ready") {
      container.textContent = "The explanation is not available.";
      return;
    }
    var labels = ["Background average"];
    var values = [data.base_value];
    var measures = ["absolute"];
    var texts = [data.base_value.toFixed(2)];
    var hovers = ["Average over " + data.background_size + " background patients<br>" +
                  data.base_value.toFixed(3) + " log-odds (\u2248 " + pct(data.base_probability) + ")"];
    data.contributions.forEach(function (step) {
      labels.push(step.value ? step.label + " = " + step.value : step.label);
      values.push(step.shap);
      measures.push("relative");
      texts.push((step.shap >= 0 ? "\u2191 " : "\u2193 ") + signed(step.shap));
      hovers.push(step.label + (step.value ? " (" + step.value + ")" : "") + "<br>" + signed(step.shap) +
                  " log-odds<br>\u2248 " + signed(step.probability_points * 100, 1) +
                  " risk points (approximate)");
    });
    labels.push("This patient");
    values.push(0);
    measures.push("total");
    texts.push(data.output.toFixed(2) + " (risk " + pct(data.risk) + ")");
    hovers.push("Model output " + data.output.toFixed(3) + " log-odds<br>risk " + pct(data.risk));

    // Pad the axis so the labels outside the bars never run into the feature names.
    var running = data.base_value;
    var low = Math.min(0, running);
    var high = Math.max(0, running);
    data.contributions.forEach(function (step) {
      running += step.shap;
      low = Math.min(low, running);
      high = Math.max(high, running);
    });
    var pad = 0.22 * (high - low || 1);

    var trace = {
      type: "waterfall",
      orientation: "h",
      y: labels,
      x: values,
      measure: measures,
      text: texts,
      textposition: "outside",
      cliponaxis: false,
      hovertext: hovers,
      hoverinfo: "text",
      increasing: {marker: {color: RAISES}},
      decreasing: {marker: {color: LOWERS}},
      totals: {marker: {color: TOTAL}},
      connector: {line: {color: "#9aa5b1", width: 1, dash: "dot"}}
    };
    var layout = {
      height: 90 + 30 * labels.length,
      margin: {l: 230, r: 110, t: 10, b: 50},
      font: {family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 13, color: "#1f2933"},
      xaxis: {title: {text: "log-odds (SHAP contribution)"}, zeroline: true, zerolinecolor: "#9aa5b1",
              gridcolor: "#e4e7eb", automargin: true, range: [low - pad, high + pad]},
      yaxis: {autorange: "reversed", automargin: true},
      showlegend: false,
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)"
    };
    container.textContent = "";
    window.Plotly.newPlot(container, [trace], layout, {displayModeBar: false, responsive: true});
  }

  function load(container) {
    fetch(container.getAttribute("data-url"), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) { draw(container, data); })
      .catch(function () {
        container.textContent = "The chart could not be loaded; the table below has the same numbers.";
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var container = document.getElementById("waterfall");
    if (container && window.Plotly) { load(container); }
  });
})();
