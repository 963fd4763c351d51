// Posts an alert action as JSON to /api/v1/alerts/{id}/actions/ with the CSRF token.
// The idempotency key is made per page load (by the server) so a double click is one action;
// after an action is recorded a fresh key is drawn for the next, deliberate one.
(function () {
  "use strict";

  function newKey() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function showReasonsFor(select, action) {
    Array.prototype.forEach.call(select.querySelectorAll("optgroup"), function (group) {
      var match = group.getAttribute("data-action") === action;
      group.hidden = !match;
      group.disabled = !match;
    });
    var current = select.options[select.selectedIndex];
    if (current && current.value && current.parentNode.getAttribute("data-action") !== action) {
      select.value = "";
    }
  }

  function addToList(list, body) {
    var empty = document.getElementById("no-actions");
    if (empty) { empty.remove(); }
    var item = document.createElement("li");
    var strong = document.createElement("strong");
    strong.textContent = body.action.charAt(0).toUpperCase() + body.action.slice(1);
    item.appendChild(strong);
    item.appendChild(document.createTextNode(" \u2014 " + body.reason_label + " "));
    var meta = document.createElement("span");
    meta.className = "muted";
    meta.textContent = "by " + body.user + " (" + body.role + "), just now";
    item.appendChild(meta);
    if (body.comment) {
      var comment = document.createElement("p");
      comment.className = "comment";
      comment.textContent = body.comment;
      item.appendChild(comment);
    }
    list.appendChild(item);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("action-form");
    if (!form) { return; }
    var select = form.querySelector("select[name=reason]");
    var status = document.getElementById("action-status");
    var button = form.querySelector("button[type=submit]");
    var key = form.getAttribute("data-idempotency-key");

    form.addEventListener("change", function (event) {
      if (event.target.name === "action") { showReasonsFor(select, event.target.value); }
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var action = form.querySelector("input[name=action]:checked");
      var body = {
        action: action ? action.value : "",
        reason: select.value,
        comment: form.querySelector("textarea[name=comment]").value,
        idempotency_key: key
      };
      button.disabled = true;
      status.textContent = "Recording\u2026";
      fetch(form.getAttribute("data-url"), {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          "Accept": "application/json",
          "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value
        },
        body: JSON.stringify(body)
      })
        .then(function (response) {
          return response.json().then(function (data) { return {ok: response.ok, data: data}; });
        })
        .then(function (result) {
          if (!result.ok) {
            status.textContent = "Not recorded: " + (result.data.detail || "the server refused the action.");
            return;
          }
          addToList(document.getElementById("action-list"), result.data);
          // The state in the page head and in this panel.
          document.querySelectorAll(".js-alert-state").forEach(function (state) {
            state.textContent = result.data.alert_state.charAt(0).toUpperCase() + result.data.alert_state.slice(1);
            state.className = "state state-" + result.data.alert_state + " js-alert-state";
          });
          status.textContent = "Recorded: " + result.data.action + " \u2014 " + result.data.reason_label + ".";
          form.reset();
          key = newKey();
        })
        .catch(function () {
          status.textContent = "Not recorded: the server could not be reached. Try again.";
        })
        .then(function () { button.disabled = false; });
    });
  });
})();
