// The alert page's what-if panel: posts the changed inputs as JSON to
// /api/v1/predictions/{id}/what-if/ (session + CSRF) and shows the hypothetical risk, tier and
// the contributions that changed. Only fields the clinician changed are sent; errors the API
// names ("changes.<feature>") are shown next to that field. Everything shown comes from the
// API's JSON and is inserted as text, never as HTML.
//
// Figures read as the page prints them: a risk rounds as engine.headline.shown_percent (Python's
// round, halves to even), and every difference is taken between the figures shown, so 90% -> 65%
// reads "-25 percentage points" whatever the unrounded risks were. The log-odds columns show only
// when the clinician asks for exact log-odds (static/js/waterfall.js's units toggle).
(function () {
  "use strict";

  // A risk as the page prints it (static/js/figures.js, engine.headline).
  var shownPercent = window.SightlineFigures.shownPercent;
  var percent = window.SightlineFigures.shownPercentText;

  // Probability points as the inputs table prints them (the `points` filter, one decimal): 0.1234 -> 12.3.
  function shownPoints(points) {
    return Number((points * 100).toFixed(1));
  }

  function signedPoints(value) {
    var text = Math.abs(value).toFixed(1);
    return (value > 0 ? "+" : value < 0 ? "\u2212" : "\u00b1") + text;
  }

  function signed(value) {
    var text = Math.abs(value).toFixed(2);
    return (value > 0 ? "+" : value < 0 ? "\u2212" : "\u00b1") + text;
  }

  function tierText(tier) {
    var shapes = {high: "\u25b2", medium: "\u25c6", low: "\u25cb"};
    return (shapes[tier] || "") + " " + tier.charAt(0).toUpperCase() + tier.slice(1) + " tier";
  }

  function valueOf(input) {
    var raw = input.value;
    var kind = input.getAttribute("data-kind");
    if (kind === "binary") { return raw === "true"; }
    if (kind === "numeric") { return raw.trim() === "" ? NaN : Number(raw); }
    return raw;
  }

  function changedInputs(form) {
    var changes = {};
    Array.prototype.forEach.call(form.querySelectorAll("[data-kind]"), function (input) {
      if (input.value === input.getAttribute("data-original")) { return; }
      if (input.value === "") { return; }  // left as "not measured"
      changes[input.name] = valueOf(input);
    });
    return changes;
  }

  function clearErrors(form) {
    Array.prototype.forEach.call(form.querySelectorAll(".field-error"), function (el) { el.textContent = ""; });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (el) {
      el.removeAttribute("aria-invalid");
    });
  }

  function showFieldError(form, name, message) {
    var input = form.querySelector('[data-kind][name="' + (window.CSS && CSS.escape ? CSS.escape(name) : name) + '"]');
    var error = document.getElementById("wi-" + name + "-error");
    if (!input || !error) { return false; }
    error.textContent = message;
    input.setAttribute("aria-invalid", "true");
    return true;
  }

  // Each input's kind ({"name": "binary" | "numeric" | "categorical"}), from the page.
  var kinds = {};
  // Each input's contribution in probability points as the inputs table shows it, from the page.
  var pointsBefore = {};

  // A value as the clinician reads it: a binary input is yes/no whether the score stored it as
  // 1/0 or the what-if sent true/false.
  function valueText(name, value) {
    if (value === null || value === undefined) { return "not measured"; }
    if (kinds[name] === "binary") {
      return (value === true || value === 1 || value === "1" || value === "true") ? "yes" : "no";
    }
    return String(value);
  }

  function cell(row, text, className) {
    var td = document.createElement(row.children.length ? "td" : "th");
    if (!row.children.length) { td.setAttribute("scope", "row"); }
    td.textContent = text;
    if (className) { td.className = className; }
    row.appendChild(td);
  }

  function showResult(body) {
    var result = document.getElementById("whatif-result");
    var line = document.getElementById("whatif-risk");
    // The difference of the two risks as shown, never the rounding of their unrounded difference.
    var delta = shownPercent(body.risk) - shownPercent(body.original.risk);
    line.textContent = "";
    var strong = document.createElement("strong");
    strong.textContent = "Hypothetical risk " + percent(body.risk) + ", " + tierText(body.tier);
    line.appendChild(strong);
    line.appendChild(document.createTextNode(
      " (this score: " + percent(body.original.risk) + ", " + tierText(body.original.tier) + "; " +
      (delta === 0 ? "no change" : (delta > 0 ? "+" : "\u2212") + Math.abs(delta) + " percentage points") + ")."
    ));
    var rows = document.getElementById("whatif-rows");
    rows.textContent = "";
    var moved = body.features.filter(function (f) { return f.changed || Math.abs(f.shap_delta) >= 0.005; });
    moved.sort(function (a, b) { return Math.abs(b.shap_delta) - Math.abs(a.shap_delta); });
    moved.slice(0, 10).forEach(function (f) {
      var tr = document.createElement("tr");
      if (f.changed) { tr.className = "whatif-changed"; }
      cell(tr, f.label);
      var value = valueText(f.name, f.value);
      cell(tr, f.changed ? valueText(f.name, f.original_value) + " \u2192 " + value : value);
      var now = shownPoints(f.points);
      cell(tr, signedPoints(now), "num");
      if (pointsBefore.hasOwnProperty(f.name)) {
        var change = Math.round(10 * (now - shownPoints(pointsBefore[f.name]))) / 10;
        cell(tr, (change > 0 ? "\u2191 " : change < 0 ? "\u2193 " : "") + signedPoints(change), "num");
      } else {
        cell(tr, "", "num");
      }
      cell(tr, signed(f.shap), "num log-odds");
      cell(tr, (f.shap_delta > 0 ? "\u2191 " : f.shap_delta < 0 ? "\u2193 " : "") + signed(f.shap_delta),
        "num log-odds");
      rows.appendChild(tr);
    });
    result.hidden = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("whatif-form");
    if (!form) { return; }
    var kindsElement = document.getElementById("whatif-kinds");
    if (kindsElement) { kinds = JSON.parse(kindsElement.textContent); }
    var pointsElement = document.getElementById("whatif-points");
    if (pointsElement) { pointsBefore = JSON.parse(pointsElement.textContent); }
    var status = document.getElementById("whatif-status");
    var button = form.querySelector("button[type=submit]");

    form.addEventListener("reset", function () {
      clearErrors(form);
      status.textContent = "";
      document.getElementById("whatif-result").hidden = true;
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      clearErrors(form);
      var changes = changedInputs(form);
      var names = Object.keys(changes);
      if (!names.length) {
        status.textContent = "Change at least one value, then recompute.";
        return;
      }
      var invalid = names.filter(function (name) {
        return typeof changes[name] === "number" && !isFinite(changes[name]);
      });
      if (invalid.length) {
        invalid.forEach(function (name) { showFieldError(form, name, "Enter a number."); });
        status.textContent = "Correct the marked value.";
        return;
      }
      button.disabled = true;
      status.textContent = "Recomputing\u2026";
      fetch(form.getAttribute("data-url"), {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          "Accept": "application/json",
          "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value
        },
        body: JSON.stringify({changes: changes})
      })
        .then(function (response) {
          return response.json().then(function (body) { return {ok: response.ok, body: body}; },
            function () { return {ok: false, body: {detail: "HTTP " + response.status}}; });
        })
        .then(function (answer) {
          button.disabled = false;
          if (answer.ok) {
            status.textContent = "Recomputed (hypothetical).";
            showResult(answer.body);
            return;
          }
          var fields = answer.body.fields || {};
          var placed = 0;
          Object.keys(fields).forEach(function (key) {
            var name = key.indexOf("changes.") === 0 ? key.slice(8) : key;
            if (showFieldError(form, name, fields[key].join(" "))) { placed += 1; }
          });
          status.textContent = placed ? "Correct the marked value." : (answer.body.detail || "Could not recompute.");
        })
        .catch(function () {
          button.disabled = false;
          status.textContent = "Could not reach the server; try again.";
        });
    });
  });
})();
