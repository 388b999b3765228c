// Meridian console: live updates of a run page. The server renders every piece of HTML (and
// escapes what steps produced); this only fetches the re-rendered part when the run's event
// stream says something happened, and sends approval forms without leaving the page.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) return;
  var run = live.getAttribute("data-run");
  var base = "/runs/" + encodeURIComponent(run);
  var status = document.getElementById("live-status");
  var pending = false, busy = false, source = null;

  function say(text) { if (status) status.textContent = text; }

  function refresh() {
    if (busy) { pending = true; return; }
    var active = document.activeElement;
    if (active && live.contains(active) && /^(TEXTAREA|INPUT)$/.test(active.tagName)) {
      pending = true; // do not replace what someone is typing; try again when they leave it
      return;
    }
    busy = true;
    fetch(base + "/live", { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (html) {
        var next = document.createElement("div");
        next.innerHTML = html;
        var seq = next.querySelector("[data-seq]");
        seq = seq && seq.getAttribute("data-seq");
        // Nothing happened while the run waits at a gate (the stream reconnects every second
        // then): keep the page, and whatever is typed in its approval form.
        if (seq && seq === live.getAttribute("data-seq") && live.querySelector("form.decide")) return;
        live.innerHTML = html;
        if (seq) live.setAttribute("data-seq", seq);
      })
      .catch(function (e) { say("Live update failed (" + e.message + "); reload the page."); })
      .then(function () { busy = false; if (pending) { pending = false; setTimeout(refresh, 150); } });
  }

  var timer = null;
  function soon() { if (!timer) timer = setTimeout(function () { timer = null; refresh(); }, 200); }

  var KINDS = ["run-started", "step-skipped", "approval-granted", "approval-required",
    "approval-rejected", "attempt-started", "attempt-failed", "leg-finished", "step-finished",
    "compensation", "run-finished"];

  function connect() {
    if (source || !window.EventSource) return;
    var after = live.getAttribute("data-seq") || "0";
    source = new EventSource("/api/v1/runs/" + encodeURIComponent(run) + "/stream?after=" + encodeURIComponent(after));
    KINDS.forEach(function (k) { source.addEventListener(k, soon); });
    source.addEventListener("end", function (e) {
      soon();
      // A run waiting for an approval may go on later: keep listening (the browser reconnects).
      if (e.data !== "awaiting-approval" && e.data !== "running") {
        source.close(); source = null; say("");
      }
    });
    source.onopen = function () { say("Live: updates as the run goes on."); };
  }
  if (live.getAttribute("data-live") === "1") connect();

  // Approval forms: sent in the background; the stream shows what follows.
  live.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.classList || !form.classList.contains("decide")) return;
    ev.preventDefault();
    var data = new URLSearchParams(new FormData(form));
    var button = ev.submitter;
    if (button && button.name) data.set(button.name, button.value);
    say("Sending…");
    fetch(form.action, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded", "X-Meridian-Fetch": "1" },
      body: data.toString()
    }).then(function (r) {
      return r.text().then(function (t) {
        if (!r.ok) throw new Error(t || ("HTTP " + r.status));
        say("Sent. Following the run…");
        connect(); refresh();
      });
    }).catch(function (e) { say("Not sent: " + e.message); });
  });
})();
