// Live pages: on every job event the page's <main> is fetched again and swapped in, without a reload.
// Without JavaScript the pages are complete as served.
(function () {
  "use strict";
  if (!window.EventSource || document.querySelector("form[action='/login']")) return;
  var pending = null;
  function refresh() {
    pending = null;
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
  // a claim sends no event: what starts running shows within a few seconds
  setInterval(function () { if (!pending && !document.hidden) refresh(); }, 3000);
})();
