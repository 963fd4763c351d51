// Keeps the worklist current without a reload: every data-poll-seconds it fetches /worklist.json
// with the page's own filters and updates the rows in place. Rows are matched by key; only rows
// whose content changed are re-rendered (from the server's escaped HTML), the row holding the
// keyboard focus gets its focus back, the first row on screen stays where it was (so the
// clinician does not lose their place when an alert lands above it), the filter form is never
// touched, and new alerts are announced in an aria-live region.
(function () {
  "use strict";

  var root = document.getElementById("worklist");
  if (!root) { return; }
  var seconds = parseFloat(root.getAttribute("data-poll-seconds")) || 15;
  var url = root.getAttribute("data-url") + window.location.search;
  var announcer = document.getElementById("worklist-announcer");
  var error = document.getElementById("worklist-error");
  var timer = null;
  var inFlight = false;

  function rowsOf(container) {
    return Array.prototype.filter.call(container.children, function (el) { return el.hasAttribute("data-key"); });
  }

  // The first row whose top is on screen: the clinician's place.
  function anchorOf(containers) {
    for (var c = 0; c < containers.length; c++) {
      var rows = rowsOf(containers[c]);
      for (var i = 0; i < rows.length; i++) {
        var top = rows[i].getBoundingClientRect().top;
        if (top >= 0) { return {key: rows[i].getAttribute("data-key"), top: top}; }
      }
    }
    return null;
  }

  function focusOf() {
    var active = document.activeElement;
    var row = active && active.closest ? active.closest("[data-key]") : null;
    if (!row) { return null; }
    return {key: row.getAttribute("data-key"), focusKey: active.getAttribute("data-focus-key"), element: active};
  }

  function findRow(key) {
    return root.querySelector('[data-key="' + (window.CSS && CSS.escape ? CSS.escape(key) : key) + '"]');
  }

  // Brings `container`'s rows to `rows` (in order); returns the rows that were not there before.
  function reconcile(container, rows, tagName) {
    var existing = {};
    rowsOf(container).forEach(function (el) { existing[el.getAttribute("data-key")] = el; });
    var fresh = [];
    rows.forEach(function (row, index) {
      var el = existing[row.key];
      if (!el) {
        el = document.createElement(tagName);
        el.setAttribute("data-key", row.key);
        fresh.push(row);
      }
      delete existing[row.key];
      if (el.getAttribute("data-sig") !== row.sig) {
        // row.html is rendered by the server's templates, which escape every outside value.
        el.innerHTML = row.html;
        el.setAttribute("data-sig", row.sig);
        el.className = row.css;
      }
      var at = rowsOf(container)[index];
      if (at !== el) { container.insertBefore(el, at || null); }
    });
    Object.keys(existing).forEach(function (key) { existing[key].remove(); });
    return fresh;
  }

  function setCount(id, n) {
    var el = document.getElementById(id);
    if (el) { el.textContent = String(n); }
  }

  function toggle(listId, emptyId, n) {
    var list = document.getElementById(listId);
    var empty = document.getElementById(emptyId);
    if (list) { list.hidden = n === 0; }
    if (empty) { empty.hidden = n !== 0; }
  }

  function describe(row) {
    var who = row.patient.display_name || row.patient.id;
    var where = row.unit + (row.bed ? " bed " + row.bed : "");
    var risk = row.abstains ? "model abstains" : "risk " + Math.round(row.risk * 100) + "%";
    return row.tier + " tier, " + who + ", " + where + ", " + risk;
  }

  function apply(data) {
    var alertsBody = document.getElementById("alerts-body");
    var lowList = document.getElementById("low-list");
    var containers = [alertsBody, lowList].filter(Boolean);
    var place = anchorOf(containers);
    var focus = focusOf();

    var freshAlerts = [];
    if (alertsBody && data.shows_alerts) {
      freshAlerts = reconcile(alertsBody, data.alerts, "tr");
      // The count is over every page; this page's rows are what is shown.
      setCount("alerts-count", data.pages ? data.pages.alerts.total : data.alerts.length);
      toggle("alerts-table", "alerts-empty", data.alerts.length);
    }
    if (lowList && data.shows_low) {
      reconcile(lowList, data.low, "li");
      setCount("low-count", data.pages ? data.pages.low.total : data.low.length);
      toggle("low-list", "low-empty", data.low.length);
    }

    root.querySelectorAll(".row-fresh").forEach(function (el) { el.classList.remove("row-fresh"); });
    freshAlerts.forEach(function (row) {
      var el = findRow(row.key);
      if (el) { el.classList.add("row-fresh"); }
    });

    // Focus: moving or re-rendering a row drops the focus inside it; put it back without scrolling.
    if (focus && !document.body.contains(focus.element)) {
      var row = findRow(focus.key);
      var target = row && (row.querySelector('[data-focus-key="' + focus.focusKey + '"]') || row.querySelector("a"));
      if (target) { target.focus({preventScroll: true}); }
    }
    // Place: keep the row that was first on screen at the same height.
    if (place) {
      var anchor = findRow(place.key);
      if (anchor) {
        var shift = anchor.getBoundingClientRect().top - place.top;
        if (shift) { window.scrollBy(0, shift); }
      }
    }

    if (freshAlerts.length) {
      announcer.textContent = freshAlerts.length + (freshAlerts.length === 1 ? " new alert: " : " new alerts: ") +
        freshAlerts.map(describe).join("; ") + ".";
    }
    var updated = document.getElementById("worklist-updated");
    if (updated) {
      var when = new Date(data.generated_at);
      updated.setAttribute("datetime", data.generated_at);
      updated.textContent = when.toISOString().slice(11, 19) + " UTC";
    }
    error.textContent = "";
    root.setAttribute("data-last-poll", data.generated_at);
  }

  function failed(message) {
    error.textContent = message;
  }

  function poll() {
    if (inFlight) { return; }
    if (document.hidden) { schedule(); return; }
    inFlight = true;
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (response.redirected || type.indexOf("application/json") !== 0) {
          throw new Error("session");
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        inFlight = false;
        apply(data);
        schedule();
      })
      .catch(function (problem) {
        inFlight = false;
        if (problem.message === "session") {
          failed("Your session has ended: reload the page to log in again. This list is no longer updating.");
          return;
        }
        failed("Could not refresh the worklist; it may be out of date. Retrying\u2026");
        schedule();
      });
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(poll, seconds * 1000);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { poll(); }
  });
  schedule();
})();
