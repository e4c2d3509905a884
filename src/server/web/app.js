// phasegate dashboard: live updates and countdowns. Everything works without this script; with
// it, an incident's page follows changes made anywhere (CLI, API, webhooks, other people) by
// swapping in its live regions, and relaxation countdowns tick. It builds no markup from text.
(function () {
  "use strict";

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function span(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60);
    if (d > 0) { return d + "d " + h + "h"; }
    if (h > 0) { return h + "h " + m + "m"; }
    if (m > 0) { return m + "m " + pad(seconds % 60) + "s"; }
    return seconds + "s";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-expires]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("data-expires"));
      if (isNaN(at)) { return; }
      if (at > now) {
        el.textContent = span((at - now) / 1000) + " left";
        el.classList.remove("overdue");
      } else {
        el.textContent = "OVERDUE by " + span((now - at) / 1000);
        el.classList.add("overdue");
        var box = el.closest("li");
        if (box) { box.classList.add("overdue-box"); }
      }
    });
  }

  // A region holding the focused field or button is being used: swapping it would lose what was
  // typed and the keyboard's place.
  function editing(region) {
    var active = document.activeElement;
    if (!active || !region.contains(active)) { return false; }
    return ["TEXTAREA", "SELECT", "BUTTON"].indexOf(active.tagName) >= 0 ||
      (active.tagName === "INPUT" && active.type !== "hidden");
  }

  function refresh(root, note) {
    // The header keeps the server from showing this copy the flash message meant for the page a
    // form just posted is landing on.
    // A redirect (the session ended: to the sign-in form) is not followed: fetching that form
    // would give this browser a new sign-in cookie under the feet of a form open in another tab.
    fetch(window.location.href, { credentials: "same-origin", redirect: "manual",
                                  headers: { "Accept": "text/html", "X-Phasegate-Live": "1" } })
      .then(function (response) {
        if (response.redirected || !response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var kept = 0;
        fresh.querySelectorAll("[data-live][id]").forEach(function (incoming) {
          var current = document.getElementById(incoming.id);
          if (!current) { return; }
          if (editing(current)) { current.classList.add("stale"); kept += 1; return; }
          current.replaceWith(document.importNode(incoming, true));
        });
        var freshRoot = fresh.getElementById("incident");
        if (freshRoot) { root.setAttribute("data-version", freshRoot.getAttribute("data-version")); }
        tick();
        var live = document.getElementById("live-note");
        if (live) {
          live.textContent = "Updated " + new Date().toLocaleTimeString() +
            (kept ? " (a form you are editing was left as it was)" : "");
        }
      })
      .catch(function () {
        if (note) { note.textContent = "Live updates paused; reload the page."; }
      });
  }

  function follow() {
    var root = document.getElementById("incident");
    if (!root || !window.EventSource) { return; }
    var id = root.getAttribute("data-incident");
    var since = root.getAttribute("data-version");
    var source = new EventSource("/incidents/" + encodeURIComponent(id) + "/events?since=" + encodeURIComponent(since));
    source.addEventListener("change", function () {
      refresh(root, document.getElementById("live-note"));
    });
  }

  function uploads() {
    document.querySelectorAll("input[type=file][data-fills]").forEach(function (input) {
      input.addEventListener("change", function () {
        var target = document.getElementById(input.getAttribute("data-fills"));
        var file = input.files && input.files[0];
        if (!target || !file) { return; }
        file.text().then(function (text) { target.value = text; });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    window.setInterval(tick, 1000);
    follow();
    uploads();
  });
}());
