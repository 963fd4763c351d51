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
  // "0.712 (0.650–0.770)": the figure with its bootstrap 95% interval where it has one.
  function withInterval(x, low, high, metric) {
    var text = fmt(x, metric);
    if (low === null || low === undefined || high === null || high === undefined) return text;
    return text + " (" + fmt(low, metric) + (low < 0 ? " to " : "–") + fmt(high, metric) + ")";  // "-0.24 to -0.10", not "-0.24–-0.10"
  }
  function pct(x) { return (x === null || x === undefined) ? "—" : Math.round(100 * x) + "%"; }
  function reasons(byReason) {
    var keys = Object.keys(byReason || {});
    if (!keys.length) return "—";
    return keys.sort(function (a, b) { return byReason[b] - byReason[a]; })
      .map(function (k) { return k.replace(/_/g, " ") + " " + pct(byReason[k]); }).join(", ");
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
    var measured = v.calibration.some(function (t) { return !t.estimate; });
    status.textContent = v.encounters + " encounters in the window, " + v.with_outcome + " with their outcome. " +
      (withOutcomes ? "Groups with enough outcomes are measured on them; the others are CBPE estimates (they assume the model is calibrated), marked as such. " : "No outcome yet: figures are CBPE estimates (they assume the model is calibrated). ") +
      "Alert burden and clinician actions count every encounter." +
      (v.not_monitored || []).map(function (u) { return " " + u.label + " (declared in the bundle) is not monitored: " + u.reason + "."; }).join("");
    var flags = document.getElementById("subgroup-flags");
    flags.textContent = "";
    v.flags.forEach(function (f) { var li = document.createElement("li"); li.textContent = f.message; flags.appendChild(li); });
    if (!v.flags.length) { var li = document.createElement("li"); li.textContent = "No disparity flag in this window."; flags.appendChild(li); }
    var body = document.querySelector("#subgroup-table tbody");
    body.textContent = "";
    v.sorted.slice(0, 25).forEach(function (r) {
      var tr = document.createElement("tr");
      td(tr, r.subgroup); td(tr, r.group); td(tr, label(r.metric) + (r.estimate ? " (estimate)" : ""));
      td(tr, withInterval(r.value, r.ci_low, r.ci_high, r.metric));
      td(tr, withInterval(r.overall, r.overall_ci_low, r.overall_ci_high, r.metric));
      td(tr, (r.difference > 0 ? "+" : "") + fmt(r.difference, r.metric));
      body.appendChild(tr);
    });
    renderBurden(v);
    var traces = [{ type: "scatter", mode: "lines", x: [0, 1], y: [0, 1], name: "perfect calibration", line: { dash: "dot", color: "#9aa5b1" }, hoverinfo: "skip" }];
    v.calibration.forEach(function (t) {
      traces.push({
        type: "scatter", mode: "markers", name: t.subgroup + (t.estimate ? " (estimate)" : ""),
        // hollow: a group judged on its CBPE estimate (too few outcomes yet)
        marker: { size: 9, symbol: t.points.map(function (p) { return p.estimate ? "circle-open" : "circle"; }) },
        x: t.points.map(function (p) { return p.mean_risk; }), y: t.points.map(function (p) { return p.rate; }),
        text: t.points.map(function (p) { return t.subgroup + ": " + p.group + " (n = " + p.n + (p.estimate ? ", estimate" : "") + ")"; }),
        hovertemplate: "%{text}<br>mean risk %{x:.3f}<br>rate %{y:.3f}<extra></extra>",
        error_y: { type: "data", visible: t.points.some(function (p) { return p.high !== null; }),
          array: t.points.map(function (p) { return p.high === null ? null : p.high - p.rate; }),
          arrayminus: t.points.map(function (p) { return p.low === null ? null : p.rate - p.low; }) }
      });
    });
    Plotly.react("subgroup-calibration-figure", traces, {
      title: { text: measured ? "Calibration per subgroup: observed against predicted (hollow: estimate)" : "Expected event rate per subgroup (estimate, too few outcomes yet)" },
      xaxis: { title: { text: "mean predicted risk" }, range: [0, 1] }, yaxis: { title: { text: measured ? "observed event rate" : "expected event rate" }, range: [0, 1] },
      margin: { t: 40, r: 10 }, legend: { orientation: "h" }
    }, { displaylogo: false, responsive: true });
  }

  function renderBurden(v) {
    var body = document.querySelector("#subgroup-burden-table tbody");
    if (!body) return;
    body.textContent = "";
    var tiers = Object.keys(v.thresholds || {}).sort(function (a, b) { return v.thresholds[b] - v.thresholds[a]; });
    (v.burden || []).forEach(function (r) {
      var tr = document.createElement("tr");
      td(tr, r.subgroup); td(tr, r.group); td(tr, String(r.n));
      if (r.too_few) {
        td(tr, "too few to judge").colSpan = 5;
      } else {
        td(tr, r.alerts === null || r.alerts === undefined ? "—" : String(r.alerts));
        td(tr, tiers.map(function (t) { return t + " " + fmt(r.alerts_per_100[t], "alerts_per_100"); }).join(" · "));
        td(tr, pct(r.acted_on_share)); td(tr, pct(r.override_rate)); td(tr, reasons(r.override_rate_by_reason));
      }
      body.appendChild(tr);
    });
  }

  function load() {
    status.textContent = "Computing the subgroup figures (a bootstrap per subgroup)…";
    var query = params();
    fetchView(query).then(render).catch(function (err) { status.textContent = "Could not load the subgroup figures: " + err.message; });
  }
  form.addEventListener("submit", function () { load(); });
  load();
})();
