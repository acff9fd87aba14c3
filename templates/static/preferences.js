// The preferences page, progressively enhanced: when the reader's time zone is still the default
// (UTC), offer the browser's own zone first and pick it, saying so; nothing is saved until the
// reader presses "Save preferences". Without JavaScript the grouped list works as it is.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.querySelector("select[data-browser-zone]");
    var note = document.getElementById("timezone-browser");
    if (!select || !note || !window.Intl) { return; }
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!zone || select.value === zone) { return; }
    var match = Array.prototype.find.call(select.options, function (o) { return o.value === zone; });
    if (!match) { return; }
    var first = document.createElement("option");
    first.value = zone;
    first.textContent = "Your browser's time zone: " + match.textContent;
    select.insertBefore(first, select.firstChild);
    if (select.value === "UTC") {
      first.selected = true;
      note.textContent = "We picked your browser's time zone (" + match.textContent + "). Save to keep it.";
      note.hidden = false;
    }
  });
})();
