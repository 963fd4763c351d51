// Model card charts: data from the card's charts.json view, drawn with the locally served plotly.js.
(function () {
  "use strict";
  var root = document.getElementById("card-charts");
  if (!root || typeof Plotly === "undefined") return;
  var colours = { model: "#1f5fa8", challenger: "#b35c00", recalibrated: "#2e7d32" };

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

      var metrics = ["model", "challenger", "recalibrated"].map(function (who) {
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

      if (data.curves_error) {
        root.insertAdjacentHTML("beforeend", '<p class="notice notice-error" id="curves-error"></p>');
        document.getElementById("curves-error").textContent = "ROC and precision-recall curves unavailable: " + data.curves_error;
      }
      var config = { displaylogo: false, responsive: true };
      var roc = data.curves.map(function (c) {
        return { name: c.name, x: c.roc.fpr, y: c.roc.tpr, mode: "lines", type: "scatter", line: { color: colours[c.name] },
          hovertemplate: "FPR %{x:.3f}<br>TPR %{y:.3f}<extra>%{fullData.name}</extra>" };
      });
      roc.push({ name: "chance", x: [0, 1], y: [0, 1], mode: "lines", line: { dash: "dot", color: "#888" } });
      Plotly.newPlot("roc-chart", roc, {
        title: { text: "ROC curve (reference set)" },
        xaxis: { title: { text: "False-positive rate" }, range: [0, 1] },
        yaxis: { title: { text: "True-positive rate" }, range: [0, 1] },
        height: 380, margin: { t: 50 }
      }, config);
      var pr = data.curves.map(function (c) {
        return { name: c.name, x: c.pr.recall, y: c.pr.precision, mode: "lines", type: "scatter", line: { color: colours[c.name], shape: "hv" },
          hovertemplate: "recall %{x:.3f}<br>precision %{y:.3f}<extra>%{fullData.name}</extra>" };
      });
      Plotly.newPlot("pr-chart", pr, {
        title: { text: "Precision-recall curve (reference set)" },
        xaxis: { title: { text: "Recall (sensitivity)" }, range: [0, 1] },
        yaxis: { title: { text: "Precision (PPV)" }, range: [0, 1] },
        height: 380, margin: { t: 50 }
      }, config);
    })
    .catch(function () {
      root.insertAdjacentHTML("beforeend", '<p class="notice notice-error">The charts could not be loaded; the tables above hold the same figures.</p>');
    });
})();
