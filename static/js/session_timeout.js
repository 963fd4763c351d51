// Idle sign-out on shared ward PCs (accounts.sessions): warn before the session's idle limit,
// offer to stay signed in, and leave the page when it ends. The server keeps the clocks; this page
// asks it (GET /session/ with the background header, which is not activity) and never guesses.
// Pressing a key or the pointer on the page counts as activity, at most once a minute.
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-session-url");
  if (!url) { return; }
  var PING_EVERY_MS = 60 * 1000;
  var timer = null;
  var countdown = null;
  var lastPing = Date.now();
  var deadline = 0;
  var banner = null;

  function ask(activity) {
    var headers = {"Accept": "application/json"};
    if (!activity) { headers["X-Sightline-Background"] = "1"; }
    return fetch(url, {credentials: "same-origin", cache: "no-store", headers: headers})
      .then(function (response) {
        if (response.status === 401) { return null; }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      });
  }

  function leave() {
    // The server signs the session out and sends the login page, saying why.
    window.location.reload();
  }

  function makeBanner() {
    banner = document.createElement("div");
    banner.className = "session-warning";
    banner.id = "session-warning";
    banner.setAttribute("role", "alertdialog");
    banner.setAttribute("aria-live", "assertive");
    banner.setAttribute("aria-labelledby", "session-warning-text");
    var text = document.createElement("p");
    text.id = "session-warning-text";
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button button-primary";
    button.id = "session-stay";
    button.textContent = "Stay signed in";
    button.addEventListener("click", function () { stay(); });
    banner.appendChild(text);
    banner.appendChild(button);
    banner.hidden = true;
    document.body.appendChild(banner);
  }

  function showWarning() {
    if (!banner) { makeBanner(); }
    var text = document.getElementById("session-warning-text");
    function tick() {
      var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      var minutes = Math.floor(left / 60);
      var seconds = ("0" + (left % 60)).slice(-2);
      text.textContent = "For privacy on shared computers you will be signed out in " + minutes + ":" +
        seconds + " without activity.";
    }
    tick();
    window.clearInterval(countdown);
    countdown = window.setInterval(tick, 1000);
    if (banner.hidden) {
      banner.hidden = false;
      document.getElementById("session-stay").focus();
    }
  }

  function hideWarning() {
    window.clearInterval(countdown);
    if (banner) { banner.hidden = true; }
  }

  function plan(status) {
    window.clearTimeout(timer);
    if (status === null) { leave(); return; }
    var left = Math.min(status.idle, status.absolute);
    deadline = Date.now() + left * 1000;
    if (left <= 0) { leave(); return; }
    if (left <= status.warning) {
      showWarning();
      timer = window.setTimeout(check, left * 1000 + 500);
    } else {
      hideWarning();
      timer = window.setTimeout(check, (left - status.warning) * 1000);
    }
  }

  function check() {
    // Another tab of this session may have been active meanwhile: ask before warning or leaving.
    ask(false).then(plan, function () { timer = window.setTimeout(check, 5000); });
  }

  function stay() {
    lastPing = Date.now();
    ask(true).then(plan, function () { timer = window.setTimeout(check, 5000); });
  }

  function activity() {
    if (Date.now() - lastPing < PING_EVERY_MS) { return; }
    stay();
  }

  document.addEventListener("keydown", activity, true);
  document.addEventListener("pointerdown", activity, true);
  check();
})();
