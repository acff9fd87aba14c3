// "Did you mean jane@gmail.com?" under the signup form's address (the server found the slip,
// newsletter/readers/address_hints.py). Without this script the reader sees the text and can
// retype it; with it the address becomes a button that puts it into the field. It is only a
// hint: nothing is sent until the reader presses Subscribe.
(function () {
  "use strict";

  var hint = document.getElementById("email-suggestion");
  var field = document.getElementById("email");
  var shown = hint && hint.querySelector(".field-hint__address");
  if (!hint || !field || !shown) {
    return;
  }
  var suggestion = hint.getAttribute("data-suggestion");
  var button = document.createElement("button");
  button.type = "button";
  button.className = "link-button";
  button.textContent = suggestion;
  button.setAttribute("aria-label", "Use " + suggestion);
  shown.replaceWith(button);

  button.addEventListener("click", function () {
    field.value = suggestion;
    // The corrected address answers the message about the old one: both go.
    var error = document.getElementById("email-error");
    if (error) {
      error.remove();
    }
    hint.remove();
    field.removeAttribute("aria-invalid");
    field.removeAttribute("aria-describedby");
    var wrapper = field.closest(".field");
    if (wrapper) {
      wrapper.classList.remove("field--invalid");
    }
    field.focus();
  });
})();
