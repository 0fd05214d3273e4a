// The batchops console's only script (served from this origin; the page's CSP allows no
// inline script). It follows the live progress of the jobs on the page: one EventSource per
// job that has not ended, on /console/jobs/{id}/events (the API's event stream, read with
// the session cookie). Each event is the whole job; the bar, counters, rows/s and ETA are
// updated from it. A job page reloads when its job ends, to show its failures and actions.
"use strict";

(function () {
  var TERMINAL = { succeeded: true, failed: true, cancelled: true };
  // Browsers allow ~6 connections per origin over HTTP/1.1: a list page follows at most
  // this many jobs live, so that links and forms still have connections to use.
  var MAX_STREAMS = 4;

  function field(root, name) {
    return root.querySelector('[data-field="' + name + '"]');
  }

  function setText(root, name, text) {
    var el = field(root, name);
    if (el) el.textContent = text;
  }

  function follow(bar) {
    var id = bar.getAttribute("data-live-job");
    var row = bar.closest("[data-job-row]") || bar.closest("[data-job-page]") || bar;
    var source = new EventSource("/console/jobs/" + encodeURIComponent(id) + "/events");

    function update(event) {
      var job = JSON.parse(event.data);
      var progress = bar.querySelector("progress");
      progress.value = job.percentage;
      var shown = job.percentage.toFixed(1) + "%"; // as the server renders it: 0.0%, 42.5%
      progress.textContent = shown;
      setText(bar, "percentage", shown);
      setText(bar, "processed", String(job.processed));
      setText(bar, "total", job.total === null ? "?" : String(job.total));
      setText(bar, "eta", job.eta_s === null ? "–" : Math.round(job.eta_s) + " s");
      // Rows/s as the server counts it (rows done over the time since the job started, the
      // figure its ETA is made from), so the page agrees with itself after a reload.
      if (job.state === "running" && job.total && job.eta_s > 0) {
        var rate = (job.total - job.processed) / job.eta_s;
        setText(bar, "rate", Math.round(rate).toLocaleString("en-US"));
      }
      var state = field(row, "state");
      if (state) {
        state.textContent = job.state;
        state.className = "state state-" + job.state;
      }
      setText(row, "failed", String(job.failed));
      setText(row, "succeeded", String(job.succeeded));
      bar.setAttribute("data-state", job.state);
      if (TERMINAL[job.state]) {
        source.close();
        if (row.hasAttribute("data-job-page")) window.location.reload();
      }
    }

    source.addEventListener("progress", update);
    source.addEventListener("complete", update);
    source.addEventListener("error", function (event) {
      if (event.data) update(event); // the job failed: its last snapshot
      else if (source.readyState === EventSource.CLOSED) bar.setAttribute("data-stream", "closed");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var bars = document.querySelectorAll("[data-live-job]");
    var followed = 0;
    for (var i = 0; i < bars.length && followed < MAX_STREAMS; i++) {
      if (!TERMINAL[bars[i].getAttribute("data-state")]) {
        follow(bars[i]);
        followed++;
      }
    }
  });
})();
