// Confirms a subscription for readers whose browser runs scripts. Mail scanners that merely
// fetch the link change nothing: only the form's POST confirms, and the button stays visible
// for everyone without JavaScript.
(function () {
  "use strict";
  function run() {
    var form = document.getElementById("confirm-form");
    if (!form || form.getAttribute("data-autosubmit") !== "true") {
      return;
    }
    var status = document.getElementById("confirm-status");
    if (status) {
      status.textContent = "Confirming your subscription\u2026";
    }
    var button = form.querySelector("button");
    if (button) {
      button.disabled = true;
    }
    form.setAttribute("data-autosubmit", "done");
    form.submit();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", run);
  } else {
    run();
  }
})();
