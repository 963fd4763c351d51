/* The monitoring page's subgroup view: flags, the rows sorted by disparity, and calibration per subgroup. */
(function () {
  "use strict";
  var form = document.getElementById("monitoring-form");
  var section = document.getElementById("subgroups-section");
  if (!form || !section) return;
  var poll = (parseInt(form.dataset.pollSeconds, 10) || 2) * 1000;
  var status = document.getElementById("subgroups-status");
  var names = {
    auroc: "AUROC", auprc: "AUPRC", brier: "Brier", ece: "ECE", calibration_in_large: "mean risk - event rate",
    expected_event_rate: "expected event rate", acted_on_share: "share accepted or escalated", override_rate: "share dismissed (override rate)"
  };

  function label(metric) {
    if (names[metric]) return names[metric];
    var m = metric.match(/^(sensitivity|ppv|alerts_per_100)_(.+)$/);
    if (!m) return metric;
    return ({ sensitivity: "sensitivity", ppv: "PPV", alerts_per_100: "alerts per 100" })[m[1]] + " (" + m[2] + ")";
  }
  function fmt(x, metric) {
    if (x === null || x === undefined) return "—";
    return metric.indexOf("alerts_per_100") === 0 ? x.toFixed(1) : x.toFixed(3);
  }
  function params() {
    var data = new FormData(form);
    var out = new URLSearchParams();
    // As the dashboard sends them: the form's times are UTC (dashboard.js params()).
    ["version", "from", "to", "slice"].forEach(function (k) {
      var v = data.get(k);
      if (v) out.set(k, (k === "from" || k === "to") ? v + ":00Z" : v);
    });
    return out;
  }
  function fetchView(query) {
    return fetch(form.dataset.subgroupsUrl + "?" + query.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json().then(function (b) { return { status: r.status, body: b }; }); })
      .then(function (res) {
        if (res.status === 202) return new Promise(function (ok) { setTimeout(ok, poll); }).then(function () { return fetchView(query); });
        if (res.status !== 200) throw new Error(res.body.detail || "HTTP " + res.status);
        return res.body;
      });
  }
  function td(tr, text) { var c = document.createElement("td"); c.textContent = text; tr.appendChild(c); return c; }

  function render(v) {
    var withOutcomes = v.with_outcome > 0;
    status.textContent = v.encounters + " encounters in the window, " + v.with_outcome + " with their outcome. " +
      (withOutcomes ? "Figures on the encounters whose outcome is known." : "No outcome yet: figures are CBPE estimates (they assume the model is calibrated).") +
      (v.not_monitored || []).map(function (u) { return " " + u.label + " (declared in the bundle) is not monitored: " + u.reason + "."; }).join("");
    var flags = document.getElementById("subgroup-flags");
    flags.textContent = "";
    v.flags.forEach(function (f) { var li = document.createElement("li"); li.textContent = f.message; flags.appendChild(li); });
    if (!v.flags.length) { var li = document.createElement("li"); li.textContent = "No disparity flag in this window."; flags.appendChild(li); }
    var body = document.querySelector("#subgroup-table tbody");
    body.textContent = "";
    v.sorted.slice(0, 25).forEach(function (r) {
      var tr = document.createElement("tr");
      td(tr, r.subgroup); td(tr, r.group); td(tr, label(r.metric) + (withOutcomes ? "" : " (estimate)"));
      td(tr, fmt(r.value, r.metric)); td(tr, fmt(r.overall, r.metric));
      td(tr, (r.difference > 0 ? "+" : "") + fmt(r.difference, r.metric));
      body.appendChild(tr);
    });
    var traces = [{ type: "scatter", mode: "lines", x: [0, 1], y: [0, 1], name: "perfect calibration", line: { dash: "dot", color: "#9aa5b1" }, hoverinfo: "skip" }];
    v.calibration.forEach(function (t) {
      traces.push({
        type: "scatter", mode: "markers", name: t.subgroup + (t.estimate ? " (estimate)" : ""),
        x: t.points.map(function (p) { return p.mean_risk; }), y: t.points.map(function (p) { return p.rate; }),
        text: t.points.map(function (p) { return t.subgroup + ": " + p.group + " (n = " + p.n + ")"; }),
        hovertemplate: "%{text}<br>mean risk %{x:.3f}<br>rate %{y:.3f}<extra></extra>",
        error_y: { type: "data", visible: !t.estimate,
          array: t.points.map(function (p) { return p.high === null ? null : p.high - p.rate; }),
          arrayminus: t.points.map(function (p) { return p.low === null ? null : p.rate - p.low; }) }
      });
    });
    Plotly.react("subgroup-calibration-figure", traces, {
      title: { text: withOutcomes ? "Calibration per subgroup: observed against predicted" : "Expected event rate per subgroup (estimate, no outcomes yet)" },
      xaxis: { title: { text: "mean predicted risk" }, range: [0, 1] }, yaxis: { title: { text: withOutcomes ? "observed event rate" : "expected event rate" }, range: [0, 1] },
      margin: { t: 40, r: 10 }, legend: { orientation: "h" }
    }, { displaylogo: false, responsive: true });
  }

  function load() {
    status.textContent = "Computing the subgroup figures (a bootstrap per subgroup)…";
    var query = params();
    fetchView(query).then(render).catch(function (err) { status.textContent = "Could not load the subgroup figures: " + err.message; });
  }
  form.addEventListener("submit", function () { load(); });
  load();
})();
