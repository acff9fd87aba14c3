// The web version of an issue: grow the mail's frame to the mail's height, so the page scrolls
// as one. The frame runs no script of its own (sandbox without allow-scripts); same-origin only
// lets this script read its height. Without JavaScript the frame keeps its CSS height and scrolls.
(function () {
  "use strict";
  function fit(frame) {
    var doc = frame.contentDocument;
    if (doc && doc.documentElement) {
      frame.style.height = doc.documentElement.scrollHeight + "px";
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("iframe[data-fit-content]"), function (frame) {
      frame.addEventListener("load", function () { fit(frame); });
      window.addEventListener("resize", function () { fit(frame); });
      fit(frame);
    });
  });
})();
