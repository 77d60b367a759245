/* Admin: a click in a field marked data-select-on-click selects its whole value (the new
   API key, shown once). A file, not an onclick attribute: the CSP allows no inline script. */
(function () {
  "use strict";
  document.querySelectorAll("[data-select-on-click]").forEach(function (field) {
    field.addEventListener("click", function () { field.select(); });
  });
})();
