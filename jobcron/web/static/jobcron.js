// Live pages: on every job event the page's <main> is fetched again and swapped in, without a reload.
// Without JavaScript the pages are complete as served. Forms (a schedule's, a result page) are not
// live, and a live page waits while something is being typed into one of its forms.
(function () {
  "use strict";
  if (!window.EventSource || document.querySelector("form[action='/login']")) return;
  var pending = null;
  var live = document.getElementById("live");
  if (!live || !live.hasAttribute("data-live")) return;
  function typing() {
    var here = document.getElementById("live");
    var active = document.activeElement;
    if (active && here.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) return true;
    var fields = here.querySelectorAll("input:not([type=hidden]), textarea");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) return true;
    }
    return false;
  }
  function refresh() {
    pending = null;
    if (typing()) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Jobcron-Live": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var here = document.getElementById("live");
        if (next && here) here.replaceWith(next);
      });
  }
  var events = new EventSource("/api/events");
  events.addEventListener("jobs", function () { if (!pending) pending = setTimeout(refresh, 300); });
  events.addEventListener("queue", function () { if (!pending) pending = setTimeout(refresh, 300); });
  events.addEventListener("progress", function () { if (!pending) pending = setTimeout(refresh, 300); });
  // a claim sends no event: what starts running shows within a few seconds
  setInterval(function () { if (!pending && !document.hidden) refresh(); }, 3000);
})();
