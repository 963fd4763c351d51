// Model card charts: data from the card's charts.json view, drawn with the locally served plotly.js.
(function () {
  "use strict";
  var root = document.getElementById("card-charts");
  if (!root || typeof Plotly === "undefined") return;
  var colours = { model: "#1f5fa8", challenger: "#b35c00" };

  fetch(root.dataset.url, { credentials: "same-origin" })
    .then(function (response) { return response.json(); })
    .then(function (data) {
      var reliability = data.reliability.map(function (s) {
        return {
          name: s.name, x: s.mean_predicted, y: s.observed_rate, mode: "lines+markers", type: "scatter",
          marker: { color: colours[s.name] },
          error_y: {
            type: "data", symmetric: false,
            array: s.observed_high.map(function (h, i) { return h - s.observed_rate[i]; }),
            arrayminus: s.observed_rate.map(function (o, i) { return o - s.observed_low[i]; })
          },
          text: s.count.map(function (c) { return c + " patients"; }),
          hovertemplate: "predicted %{x:.2f}<br>observed %{y:.2f}<br>%{text}<extra>%{fullData.name}</extra>"
        };
      });
      reliability.push({ name: "perfect calibration", x: [0, 1], y: [0, 1], mode: "lines", line: { dash: "dot", color: "#888" } });
      Plotly.newPlot("reliability-chart", reliability, {
        title: { text: "Reliability (10 risk bins, 95% CI of the observed rate)" },
        xaxis: { title: { text: "Mean predicted risk" }, range: [0, 1] },
        yaxis: { title: { text: "Observed outcome rate" }, range: [0, 1] },
        height: 380, margin: { t: 50 }
      }, { displaylogo: false, responsive: true });

      var metrics = ["model", "challenger"].map(function (who) {
        var rows = data.metrics.filter(function (m) { return m.who === who; });
        return {
          name: who, type: "scatter", mode: "markers", marker: { color: colours[who], size: 9 },
          x: rows.map(function (m) { return m.value; }),
          y: rows.map(function (m) { return m.metric.toUpperCase(); }),
          error_x: {
            type: "data", symmetric: false,
            array: rows.map(function (m) { return m.ci_high - m.value; }),
            arrayminus: rows.map(function (m) { return m.value - m.ci_low; })
          }
        };
      }).filter(function (t) { return t.x.length; });
      Plotly.newPlot("metrics-chart", metrics, {
        title: { text: "Reference-set metrics with 95% bootstrap intervals" },
        xaxis: { title: { text: "Value" } }, height: 320, margin: { t: 50, l: 80 }
      }, { displaylogo: false, responsive: true });
    })
    .catch(function () {
      root.insertAdjacentHTML("beforeend", '<p class="notice notice-error">The charts could not be loaded; the tables above hold the same figures.</p>');
    });
})();
