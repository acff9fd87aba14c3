// The signup form's proof of work (newsletter/readers/signup_challenge.py, ALTCHA's format).
// The form carries a signed challenge: find the number n with SHA-256(salt + n) == challenge,
// put the solution into the hidden "altcha" field, and only then let the form go. Solving starts
// when the page loads, so it is usually done before the reader has typed the address; a press of
// the button before that waits for it, and the button says so meanwhile. Hashes are computed in
// batches with a pause between them, so the page stays responsive. No cookies, no third party.
(function () {
  "use strict";

  var BATCH = 1000;
  var form = document.querySelector("form[data-challenge]");
  if (!form) {
    return;
  }
  var field = form.querySelector("input[name=altcha]");
  var button = form.querySelector("button[type=submit]");
  var label = button ? button.textContent : "";
  var challenge = JSON.parse(form.getAttribute("data-challenge"));
  var solved = false;
  var waiting = false;

  function say(message) {
    var status = document.getElementById("signup-errors");
    if (status) {
      var p = document.createElement("p");
      p.className = "form-status__error";
      p.textContent = message;
      status.replaceChildren(p);
    }
  }

  function busy(on) {
    form.setAttribute("aria-busy", on ? "true" : "false");
    if (button) {
      button.textContent = on ? "Checking you are a person\u2026" : label;
    }
  }

  function hex(buffer) {
    var bytes = new Uint8Array(buffer);
    var out = "";
    for (var i = 0; i < bytes.length; i++) {
      out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    }
    return out;
  }

  function pause() {
    return new Promise(function (resolve) {
      setTimeout(resolve, 0);
    });
  }

  async function solve() {
    var encoder = new TextEncoder();
    for (var start = 0; start <= challenge.maxNumber; start += BATCH) {
      var end = Math.min(start + BATCH, challenge.maxNumber + 1);
      var tries = [];
      for (var n = start; n < end; n++) {
        tries.push(crypto.subtle.digest("SHA-256", encoder.encode(challenge.salt + n)));
      }
      var hashes = await Promise.all(tries);
      for (var i = 0; i < hashes.length; i++) {
        if (hex(hashes[i]) === challenge.challenge) {
          return start + i;
        }
      }
      await pause();
    }
    return null;
  }

  function solution(number) {
    return btoa(
      JSON.stringify({
        algorithm: challenge.algorithm,
        challenge: challenge.challenge,
        number: number,
        salt: challenge.salt,
        signature: challenge.signature,
      })
    );
  }

  form.addEventListener("submit", function (event) {
    if (!solved) {
      event.preventDefault();
      waiting = true;
      busy(true);
    }
  });

  if (!window.crypto || !crypto.subtle) {
    // crypto.subtle exists only on secure pages (https, or localhost).
    say("This browser cannot run the check that this form is sent by a person. Please use a current browser on the https page.");
    return;
  }
  busy(true);
  solve().then(
    function (number) {
      if (number === null) {
        busy(false);
        say("The check that this form is sent by a person failed. Please reload the page.");
        return;
      }
      field.value = solution(number);
      solved = true;
      busy(false);
      if (waiting) {
        form.requestSubmit ? form.requestSubmit(button || undefined) : form.submit();
      }
    },
    function () {
      busy(false);
      say("The check that this form is sent by a person failed. Please reload the page.");
    }
  );
})();
