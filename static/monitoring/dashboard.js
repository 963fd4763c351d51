/* Monitoring dashboard: reads the chart-data JSON views (each returns what one figure needs). */
(function () {
  "use strict";
  var form = document.getElementById("monitoring-form");
  if (!form) return;
  var statusEl = document.getElementById("monitoring-status");
  var results = document.getElementById("monitoring-results");
  var poll = (parseInt(form.dataset.pollSeconds, 10) || 2) * 1000;
  var PLOT = { responsive: true, displaylogo: false };
  var current = null;

  function params() {
    var data = new FormData(form);
    var out = new URLSearchParams();
    ["version", "from", "to", "reference", "ref_from", "ref_to", "slice"].forEach(function (k) {
      var v = data.get(k);
      if (v) out.set(k, (k === "from" || k === "to" || k === "ref_from" || k === "ref_to") ? v + ":00Z" : v);
    });
    if (data.get("reference") !== "window") { out.delete("ref_from"); out.delete("ref_to"); }
    return out;
  }

  function fetchJson(url, query) {
    return fetch(url + "?" + query.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.json().then(function (body) { return { status: r.status, body: body }; });
      })
      .then(function (res) {
        if (res.status === 202) {
          statusEl.textContent = "Computing… (the figures appear when ready)";
          return new Promise(function (resolve) { setTimeout(resolve, poll); }).then(function () { return fetchJson(url, query); });
        }
        if (res.status !== 200) throw new Error(res.body.detail || ("HTTP " + res.status));
        return res.body;
      });
  }

  function fmt(x, digits) {
    if (x === null || x === undefined) return "—";
    return Number(x).toFixed(digits === undefined ? 3 : digits);
  }
  function pct(x) { return x === null || x === undefined ? "—" : (100 * x).toFixed(1) + " %"; }
  function cell(row, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function renderFeatures(summary, query) {
    var body = document.querySelector("#feature-table tbody");
    body.textContent = "";
    summary.features.forEach(function (f, i) {
      var tr = document.createElement("tr");
      tr.className = "selectable";
      tr.tabIndex = 0;
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = f.label + (f.unit ? " (" + f.unit + ")" : "");
      tr.appendChild(th);
      var sev = cell(tr, "");
      var badge = document.createElement("span");
      badge.className = "severity severity-" + f.severity;
      badge.textContent = f.severity + (f.reasons && f.reasons.length ? " · " + f.reasons.join(", ") : "");
      sev.appendChild(badge);
      // A statistic past its threshold that did not count says why, beside the badge.
      var noise = (f.notes || []).filter(function (n) { return n.indexOf("within sampling noise") >= 0; });
      if (noise.length) {
        var why = document.createElement("span");
        why.className = "muted small drift-noise";
        why.textContent = " " + noise.join("; ");
        sev.appendChild(why);
      }
      var psi = cell(tr, fmt(f.psi), "num");
      if (f.psi !== null && f.psi_judged === false) {
        psi.textContent = fmt(f.psi) + " · too few rows to judge";
        psi.title = (f.notes || []).join("; ");
      }
      cell(tr, f.ks === null ? "—" : fmt(f.ks) + " (" + fmt(f.ks_p, 4) + ")", "num");
      cell(tr, f.chi2 === null ? "—" : fmt(f.chi2, 1) + " (" + fmt(f.chi2_p, 4) + ")", "num");
      cell(tr, fmt(f.wasserstein), "num");
      cell(tr, pct(f.missing_reference) + " → " + pct(f.missing_current), "num");
      function select() {
        body.querySelectorAll("tr").forEach(function (r) { r.removeAttribute("aria-selected"); });
        tr.setAttribute("aria-selected", "true");
        showFeature(f.feature, query);
      }
      tr.addEventListener("click", select);
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(); } });
      body.appendChild(tr);
      if (i === 0) select();
    });
  }

  function showFeature(name, query) {
    var q = new URLSearchParams(query);
    q.set("feature", name);
    fetchJson(form.dataset.featureUrl, q).then(function (d) {
      var x, traces;
      if (d.kind === "levels") {
        x = d.levels;
      } else {
        x = d.edges.slice(0, -1).map(function (e, i) { return (e + d.edges[i + 1]) / 2; });
      }
      traces = [
        { type: "bar", name: "Reference", x: x, y: d.reference, opacity: 0.6, marker: { color: "#52606d" } },
        { type: "bar", name: "Current", x: x, y: d.current, opacity: 0.6, marker: { color: "#1f5f99" } }
      ];
      Plotly.react("feature-figure", traces, {
        title: { text: d.label + (d.unit ? " (" + d.unit + ")" : "") + " · not measured: " + pct(d.missing.reference) + " → " + pct(d.missing.current) },
        barmode: "overlay", yaxis: { title: { text: "share of measured values" } }, margin: { t: 50 }
      }, PLOT);
    });
  }

  function renderAttribution(a) {
    var el = document.getElementById("attribution-summary");
    if (!a.available) {
      el.textContent = a.note;
      Plotly.purge("attribution-figure");
      return;
    }
    el.textContent = "Ranking agreement: Spearman " + fmt(a.spearman, 2) + ", Kendall " + fmt(a.kendall, 2) +
      "; top " + a.top_k + " overlap " + pct(a.top_k_overlap) + " (" + a.n_reference + " reference, " + a.n_current + " current explanations).";
    var rows = a.features.slice().reverse();
    Plotly.react("attribution-figure", [
      { type: "bar", orientation: "h", name: "Reference", y: rows.map(function (r) { return r.label || r.feature; }), x: rows.map(function (r) { return r.reference; }), marker: { color: "#52606d" } },
      { type: "bar", orientation: "h", name: "Current", y: rows.map(function (r) { return r.label || r.feature; }), x: rows.map(function (r) { return r.current; }), marker: { color: "#1f5f99" } }
    ], { barmode: "group", height: 40 + 22 * rows.length, margin: { l: 140, t: 10 }, yaxis: { automargin: true }, xaxis: { title: { text: "mean |SHAP| (log-odds)" } } }, PLOT);
  }

  function renderPrediction(summary, query) {
    var p = summary.prediction;
    document.getElementById("prediction-summary").textContent =
      "Risk PSI " + fmt(p.psi) + ", KS D " + fmt(p.ks) + ". Tier mix high/medium/low: reference " +
      pct(p.tier_mix.reference.high) + " / " + pct(p.tier_mix.reference.medium) + " / " + pct(p.tier_mix.reference.low) +
      ", current " + pct(p.tier_mix.current.high) + " / " + pct(p.tier_mix.current.medium) + " / " + pct(p.tier_mix.current.low) + ".";
    fetchJson(form.dataset.predictionUrl, query).then(function (d) {
      var mids = d.histogram.edges.slice(0, -1).map(function (e, i) { return (e + d.histogram.edges[i + 1]) / 2; });
      Plotly.react("risk-figure", [
        { type: "bar", name: "Reference", x: mids, y: d.histogram.reference, opacity: 0.6, marker: { color: "#52606d" } },
        { type: "bar", name: "Current", x: mids, y: d.histogram.current, opacity: 0.6, marker: { color: "#1f5f99" } }
      ], { barmode: "overlay", title: { text: "Risk distribution" }, xaxis: { title: { text: "risk" } }, margin: { t: 40 } }, PLOT);
      Plotly.react("tier-figure", [
        { type: "bar", name: "high", x: d.x, y: d.tiers.high, marker: { color: "#a4262c" } },
        { type: "bar", name: "medium", x: d.x, y: d.tiers.medium, marker: { color: "#c98a1b" } },
        { type: "bar", name: "low", x: d.x, y: d.tiers.low, marker: { color: "#aab4be" } },
        { type: "scatter", mode: "lines+markers", name: "risk PSI", x: d.x, y: d.psi, yaxis: "y2", line: { color: "#1f2933" } }
      ], { barmode: "stack", title: { text: "Tier mix and risk PSI per " + d.bucket }, xaxis: { type: "category", automargin: true }, yaxis: { title: { text: "share" } },
           yaxis2: { overlaying: "y", side: "right", rangemode: "tozero", title: { text: "PSI" } }, legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" }, margin: { t: 70 } }, PLOT);
    });
  }

  function renderPerformance(query) {
    fetchJson(form.dataset.performanceUrl, query).then(function (d) {
      var o = d.overall, r = o.realised, e = o.estimate;
      var text = r.auroc !== null
        ? "Realised on " + r.n + " encounters with known outcome: AUROC " + fmt(r.auroc) + " (95% CI " + fmt(r.ci.auroc && r.ci.auroc[0]) + "–" + fmt(r.ci.auroc && r.ci.auroc[1]) + "), AUPRC " + fmt(r.auprc) + ", Brier " + fmt(r.brier) + ", ECE " + fmt(r.ece) + ". "
        : "No realised performance yet (" + r.n + " encounters with a known outcome). ";
      var el = document.getElementById("performance-summary");
      el.textContent = text;
      var est = document.createElement("span");
      est.className = "estimate-label";
      est.textContent = "Estimate (CBPE, no outcomes used): ";
      el.appendChild(est);
      el.appendChild(document.createTextNode("AUROC " + fmt(e.auroc) + ", AUPRC " + fmt(e.auprc) + ", Brier " + fmt(e.brier) + ", ECE " + fmt(e.ece) + " over " + e.n + " encounters (unit of analysis: " + d.unit_of_analysis + ")."));
      // A gap in the AUROC chart says why: a window with too few encounters (or of one class only).
      var gaps = d.x.map(function (x, i) {
        return d.auroc[i] === null && d.estimated_auroc[i] === null ? x + " (" + d.encounters[i] + " encounters)" : null;
      }).filter(Boolean);
      if (gaps.length) {
        el.appendChild(document.createTextNode(" No AUROC for " + gaps.join(", ") + ": too few encounters, or all of one class, to compute or estimate it."));
      }
      Plotly.react("performance-figure", [
        { type: "scatter", mode: "lines+markers", name: "AUROC (realised)", x: d.x, y: d.auroc, error_y: { type: "data", symmetric: false,
          array: d.auroc.map(function (v, i) { return v === null || d.auroc_high[i] === null ? null : d.auroc_high[i] - v; }),
          arrayminus: d.auroc.map(function (v, i) { return v === null || d.auroc_low[i] === null ? null : v - d.auroc_low[i]; }) } },
        { type: "scatter", mode: "lines+markers", name: "AUROC (estimate, CBPE)", x: d.x, y: d.estimated_auroc, line: { dash: "dash" } }
      ], { title: { text: "AUROC per window" }, xaxis: { type: "category" }, yaxis: { range: [0.4, 1] }, margin: { t: 40 } }, PLOT);
      Plotly.react("calibration-figure", !d.calibration.length ? [] : [
        { type: "scatter", mode: "lines", name: "perfect", x: [0, 1], y: [0, 1], line: { dash: "dot", color: "#aab4be" } },
        { type: "scatter", mode: "lines+markers", name: "observed", x: d.calibration.map(function (c) { return c.predicted; }),
          y: d.calibration.map(function (c) { return c.observed; }), text: d.calibration.map(function (c) { return "n = " + c.n; }) }
      ], ifEmpty(!d.calibration.length,
        { title: { text: "Calibration (realised)" }, xaxis: { title: { text: "predicted risk" }, range: [0, 1] }, yaxis: { title: { text: "observed rate" }, range: [0, 1] }, margin: { t: 40 } },
        "No outcome has arrived for this window's encounters yet"), PLOT);
    });
  }

  // A chart with nothing to show says why in its plot area, instead of bare axes.
  function ifEmpty(isEmpty, layout, text) {
    if (!isEmpty) return layout;
    return Object.assign({}, layout, {
      xaxis: { visible: false }, yaxis: { visible: false }, showlegend: false,
      annotations: [{ text: text, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5, font: { size: 14, color: "#52606d" } }]
    });
  }

  var BURDEN_STATES = ["accepted", "escalated", "dismissed", "acknowledged", "new"];

  function renderBurden(query) {
    fetchJson(form.dataset.burdenUrl, query).then(function (b) {
      var body = document.querySelector("#burden-table tbody");
      body.textContent = "";
      b.units.concat([Object.assign({ unit: "All" }, b.overall)]).forEach(function (u) {
        var tr = document.createElement("tr");
        var th = document.createElement("th");
        th.scope = "row";
        th.textContent = u.unit;
        tr.appendChild(th);
        cell(tr, u.patient_days, "num");
        cell(tr, u.alerts, "num");
        cell(tr, fmt(u.alerts_per_100_patient_days, 1), "num");
        // One column per alert state (engine.decisions), shares rounded so a row adds up to 100%.
        BURDEN_STATES.forEach(function (state) {
          var shown = u.percent_by_state ? u.percent_by_state[state].toFixed(1) + "%" : "—";
          cell(tr, shown + " (" + u.by_state[state] + ")", "num");
        });
        body.appendChild(tr);
      });
      var reasons = Object.keys(b.overrides_by_reason);
      var labels = b.reason_labels || {};
      Plotly.react("overrides-figure", [{ type: "bar", x: reasons.map(function (k) { return labels[k] || k; }), y: reasons.map(function (k) { return b.overrides_by_reason[k]; }), marker: { color: "#8a5300" } }],
        ifEmpty(!reasons.length, { title: { text: "Overrides (dismissals) by reason" }, margin: { t: 40 } },
          "No alert was dismissed in this window"), PLOT);
      var t = b.time_to_decision;
      Plotly.react("decision-figure", [{ type: "bar", x: t.labels, y: t.counts, marker: { color: "#1f5f99" } }],
        ifEmpty(!t.n, { title: { text: "Time to decision (median " + (t.median === undefined ? "—" : Math.round(t.median) + " s") + ", n = " + t.n + ")" }, margin: { t: 40 } },
          "No alert was acted on in this window"), PLOT);
    });
  }

  function load() {
    var query = params();
    current = query.toString();
    statusEl.hidden = false;
    statusEl.classList.remove("notice-error");
    statusEl.textContent = "Loading…";
    fetchJson(form.dataset.summaryUrl, query).then(function (s) {
      if (query.toString() !== current) return;
      statusEl.hidden = true;
      results.hidden = false;
      document.getElementById("monitoring-meta").textContent =
        s.version.name + " v" + s.version.version + " · " + s.slice + " · " + s.n_current + " current scores against " +
        s.n_reference + " (" + s.reference_label + ")" + (s.sampled.current || s.sampled.reference ? " · statistics on a uniform sample of " + s.sampled.sample_size + " rows" : "") +
        " · computed " + String(s.computed_at).slice(0, 16).replace("T", " ") + " UTC in " + fmt(s.seconds, 2) + " s";
      document.getElementById("monitoring-simulated").hidden = !s.simulated_current;
      var empty = document.getElementById("monitoring-empty");
      empty.hidden = !s.empty_note;
      empty.textContent = s.empty_note || "";
      renderFeatures(s, query);
      renderAttribution(s.attribution);
      renderPrediction(s, query);
      renderPerformance(query);
      renderBurden(query);
    }).catch(function (err) {
      statusEl.hidden = false;
      statusEl.classList.add("notice-error");
      statusEl.textContent = "Could not load the monitoring figures: " + err.message;
    });
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); load(); });
  form.elements.reference.addEventListener("change", function () {
    form.querySelector(".reference-window").hidden = form.elements.reference.value !== "window";
  });
  document.getElementById("monitoring-refresh").addEventListener("click", function () {
    var body = params();
    fetch(form.dataset.refreshUrl, { method: "POST", credentials: "same-origin", body: body,
      headers: { "X-CSRFToken": form.elements.csrfmiddlewaretoken.value } }).then(load);
  });
  load();
})();
