// Cohort job page: poll the job's progress API every few seconds until it is done or failed,
// updating the status, progress bar and counts in place (inside an aria-live region).
(function () {
  "use strict";
  var root = document.getElementById("job");
  if (!root || root.hasAttribute("data-ended")) return;
  var url = root.dataset.url;
  var every = parseInt(root.dataset.pollMs, 10) || 2000;
  var ENDED = { done: true, failed: true };

  function byId(id) { return document.getElementById(id); }
  function n(value) { return Number(value || 0).toLocaleString("en-US"); }
  function when(iso, missing) {
    if (!iso) return missing;
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso;
    return d.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }
  function setText(id, text) {
    var el = byId(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function render(job) {
    var text = n(job.chunks_done) + " of " + n(job.chunks_total) + " chunks, " +
      n(job.rows_done) + " of " + n(job.rows_total) + " rows";
    setText("job-status", job.status);
    var bar = byId("job-progress");
    bar.max = job.chunks_total || 1;
    bar.value = job.chunks_total ? job.chunks_done : 1;
    bar.textContent = text;
    setText("job-progress-text", text);
    setText("job-rows-failed", String(job.rows_failed || 0));
    byId("job-failed").hidden = !job.rows_failed;
    setText("job-started", when(job.started_at, "not started"));
    setText("job-finished", when(job.finished_at, "not finished"));
    setText("job-error-text", job.error || "");
    byId("job-error").hidden = !job.error;
    byId("job-resume").hidden = job.status !== "failed";
  }

  function poll() {
    // A background refresh: it does not keep an idle session alive (accounts.sessions).
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json", "X-Sightline-Background": "1" } })
      .then(function (response) {
        if (!response.ok) {
          // 401/403/404: refreshing again will not help; say so and stop.
          var err = new Error("progress refresh refused (HTTP " + response.status + ")");
          err.final = response.status >= 400 && response.status < 500;
          throw err;
        }
        return response.json();
      })
      .then(function (job) {
        render(job);
        if (ENDED[job.status]) {
          byId("job-poll-note").hidden = true;
        } else {
          window.setTimeout(poll, every);
        }
      })
      .catch(function (err) {
        setText("job-poll-note", "Could not refresh the progress: " + err.message + ".");
        if (!err.final) window.setTimeout(poll, every);
      });
  }

  window.setTimeout(poll, every);
})();
