// Related-record selects (select.ref) get a filter box: typing narrows the options by name. The
// select alone works without JavaScript; this only saves scrolling through a long list.
// (Over forms.MAX_OPTIONS records the server searches instead: see .ref-search below.)
(function () {
  "use strict";
  function enhance(root) {
    // Selects with a server search (select.ref[data-search]): htmx fetches the matches as you
    // type, so the Search button (the no-JavaScript path) goes, and Enter in the search box
    // searches instead of submitting the form.
    root.querySelectorAll(".ref-search").forEach(function (search) {
      var button = search.querySelector("button[name=search_ref]");
      if (button) button.remove();
      var box = search.querySelector("input[type=search]");
      if (box && !box.hasAttribute("data-enter")) {
        box.setAttribute("data-enter", "");
        box.addEventListener("keydown", function (event) {
          if (event.key === "Enter") { event.preventDefault(); htmx.trigger(box, "search"); }
        });
      }
    });
    root.querySelectorAll("select.ref:not([data-filterable]):not([data-search])").forEach(function (select) {
      select.setAttribute("data-filterable", "");
      var label = select.labels && select.labels[0] ? select.labels[0].textContent.trim() : "records";
      var box = document.createElement("input");
      box.type = "search";
      box.className = "ref-filter";
      box.setAttribute("aria-label", "Filter " + label);
      box.setAttribute("aria-controls", select.id);
      box.placeholder = "Type to filter…";
      box.addEventListener("input", function () {
        var words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
        Array.prototype.forEach.call(select.options, function (option) {
          var text = option.textContent.toLowerCase();
          option.hidden = option.value !== "" && !words.every(function (w) { return text.indexOf(w) >= 0; });
        });
      });
      select.parentNode.insertBefore(box, select);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:load", function (event) { enhance(event.detail.elt); });
})();
// The browser's time zone, for the server to show and read dates and times on the user's wall
// clock (console/timezones.py). Without JavaScript the organization's clock is used.
(function () {
  "use strict";
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("okyaku_tz=" + encodeURIComponent(zone)) < 0) {
      document.cookie = "okyaku_tz=" + encodeURIComponent(zone) + "; path=/console; max-age=31536000; SameSite=Lax";
    }
  } catch (e) { /* an old browser: the organization's clock it is */ }
})();
