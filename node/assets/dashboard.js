// Replaces the page's <main> with a fresh copy every data-refresh seconds, without a full
// reload; a failed fetch keeps what is shown and tries again at the next tick.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main) return;
  var seconds = parseInt(main.getAttribute("data-refresh"), 10);
  if (!(seconds > 0)) return;
  function refresh() {
    fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (!text) return;
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("main");
        var current = document.getElementById("main");
        if (fresh && current) current.replaceWith(fresh);
      })
      .catch(function () {});
  }
  window.setInterval(refresh, seconds * 1000);
})();
