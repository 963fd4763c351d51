// Keeps the worklist current without a reload: every data-poll-seconds it fetches /worklist.json
// with the page's own filters and the version of the list it holds (If-None-Match). The server
// answers 304 when nothing changed, else the rows in order, with the HTML of only the rows that
// are new or changed (the others by key alone). Rows are matched by key; only rows whose content
// changed are re-rendered (from the server's escaped HTML), the row holding the
// keyboard focus gets its focus back, the first row on screen stays where it was (so the
// clinician does not lose their place when an alert lands above it), the filter form is never
// touched, and new alerts are announced in an aria-live region.
(function () {
  "use strict";

  var root = document.getElementById("worklist");
  if (!root) { return; }
  var seconds = parseFloat(root.getAttribute("data-poll-seconds")) || 15;
  var url = root.getAttribute("data-url") + window.location.search;
  // The list version this page holds; null asks for every row in full.
  var version = root.getAttribute("data-version") || null;
  // Server clock minus this one, so "last updated" after a 304 is on the server's clock too.
  var skew = 0;
  var rendered = document.getElementById("worklist-updated");
  if (rendered && !isNaN(Date.parse(rendered.getAttribute("datetime")))) {
    skew = Date.parse(rendered.getAttribute("datetime")) - Date.now();
  }
  var announcer = document.getElementById("worklist-announcer");
  var error = document.getElementById("worklist-error");
  var timer = null;
  var inFlight = false;

  // How long ago, as the server's `since` filter says it (clinician_ui/templatetags/sightline.py):
  // the two largest of weeks, days, hours and minutes, adjacent ones only.
  var SINCE_UNITS = [["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];
  function since(milliseconds) {
    var seconds = Math.max(0, Math.floor(milliseconds / 1000));
    var parts = [];
    for (var i = 0; i < SINCE_UNITS.length && parts.length < 2; i++) {
      var count = Math.floor(seconds / SINCE_UNITS[i][1]);
      seconds -= count * SINCE_UNITS[i][1];
      if (count) {
        parts.push(count + "\u00a0" + SINCE_UNITS[i][0] + (count === 1 ? "" : "s"));
      } else if (parts.length) {
        break;
      }
    }
    return parts.length ? parts.join(", ") : "0\u00a0minutes";
  }

  // A row is resent only when what it shows changes, not when the minute does: "fired ... ago"
  // is kept current here, on the server's clock.
  function tick() {
    var now = Date.now() + skew;
    root.querySelectorAll("time[data-since]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (isNaN(at)) { return; }
      var text = since(now - at) + " ago";
      if (el.textContent !== text) { el.textContent = text; }
    });
  }

  function rowsOf(container) {
    return Array.prototype.filter.call(container.children, function (el) { return el.hasAttribute("data-key"); });
  }

  // The clinician's place: the focused row if it is on screen (rows above or between may change
  // height), else the first row whose top is on screen.
  function anchorOf(containers) {
    var active = document.activeElement;
    var focused = active && active.closest ? active.closest("[data-key]") : null;
    if (focused) {
      var box = focused.getBoundingClientRect();
      if (box.top >= 0 && box.top < window.innerHeight) { return {key: focused.getAttribute("data-key"), top: box.top}; }
    }
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

  // True when every row sent by key alone (unchanged) is on the page, so the answer can be applied.
  function holds(container, rows) {
    var present = {};
    if (container) { rowsOf(container).forEach(function (el) { present[el.getAttribute("data-key")] = true; }); }
    return rows.every(function (row) { return row.html !== undefined || present[row.key]; });
  }

  // Brings `container`'s rows to `rows` (in order); returns the rows that were not there before.
  // A row sent by key alone is one the page holds unchanged: it is only moved.
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
      if (row.html !== undefined && el.getAttribute("data-sig") !== row.sig) {
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
    var who = row.patient.display_name ? row.patient.display_name + " (ID " + row.patient.id + ")" : row.patient.id;
    var where = row.unit + (row.bed ? " bed " + row.bed : "");
    var risk = row.abstains ? "model abstains" : "risk " + window.SightlineFigures.shownPercentText(row.risk);
    return row.tier + " tier, " + who + ", " + where + ", " + risk;
  }

  function stamp(generatedAt) {
    var updated = document.getElementById("worklist-updated");
    if (updated) {
      var when = new Date(generatedAt);
      updated.setAttribute("datetime", generatedAt);
      updated.textContent = when.toISOString().slice(11, 19) + " UTC";
    }
    error.textContent = "";
    root.setAttribute("data-last-poll", generatedAt);
    tick();
  }

  // Applies a poll's answer; false (nothing touched) when it names a row this page does not hold.
  function apply(data) {
    var alertsBody = document.getElementById("alerts-body");
    var lowList = document.getElementById("low-list");
    if ((data.shows_alerts && !holds(alertsBody, data.alerts)) || (data.shows_low && !holds(lowList, data.low))) {
      return false;
    }
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

    if (freshAlerts.length) {
      announcer.textContent = freshAlerts.length + (freshAlerts.length === 1 ? " new alert: " : " new alerts: ") +
        freshAlerts.map(describe).join("; ") + ".";
    }
    skew = Date.parse(data.generated_at) - Date.now();
    version = data.version || null;
    root.setAttribute("data-version", version || "");
    stamp(data.generated_at);
    // Place, last: the "fired ... ago" texts stamp() brings up to date may re-wrap rows above it.
    // Keep the clinician's row at the same height on screen.
    if (place) {
      var anchor = findRow(place.key);
      if (anchor) {
        var shift = anchor.getBoundingClientRect().top - place.top;
        if (shift) { window.scrollBy(0, shift); }
      }
    }
    return true;
  }

  function failed(message) {
    error.textContent = message;
  }

  function poll() {
    if (inFlight) { return; }
    if (document.hidden) { schedule(); return; }
    inFlight = true;
    // A background refresh: it does not keep an idle session alive (accounts.sessions).
    var headers = {"Accept": "application/json", "X-Sightline-Background": "1"};
    if (version) { headers["If-None-Match"] = '"' + version + '"'; }
    // no-store: the version is this page's own, the browser's cache must not answer for it.
    fetch(url, {credentials: "same-origin", cache: "no-store", headers: headers})
      .then(function (response) {
        if (response.status === 304) { return null; }
        var type = response.headers.get("Content-Type") || "";
        if (response.redirected || type.indexOf("application/json") !== 0) {
          throw new Error("session");
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        inFlight = false;
        if (data === null) {
          stamp(new Date(Date.now() + skew).toISOString());
        } else if (!apply(data)) {
          // Should not happen; ask again for every row in full rather than show a gap.
          version = null;
          window.setTimeout(poll, 0);
          return;
        }
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

  tick();
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { poll(); }
  });
  schedule();
})();
