// Live refresh for the dashboard: a page whose <body> has data-refresh="N" reloads, every N seconds, the
// parts of itself marked data-live (fetched from the same address, same origin, with the session cookie).
// A part holding a form field that has focus or was typed in is left alone; nothing refreshes while the
// tab is hidden. Without this script every page still reads as it was served.
(function () {
  "use strict";
  var seconds = parseFloat(document.body.getAttribute("data-refresh") || "");
  if (!(seconds > 0)) {
    return;
  }

  function busy(part) {
    if (part.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    var fields = part.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var field = fields[i];
      if (field.type === "hidden") {
        continue;
      }
      if (field.tagName === "SELECT") {
        var chosen = field.options[field.selectedIndex];
        if (chosen && !chosen.defaultSelected && field.selectedIndex !== 0) {
          return true;
        }
      } else if (field.value !== field.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function refresh() {
    if (document.hidden) {
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) {
          throw new Error("refresh answered " + response.status);
        }
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var parts = document.querySelectorAll("[data-live][id]");
        for (var i = 0; i < parts.length; i++) {
          var part = parts[i];
          var replacement = fresh.getElementById(part.id);
          if (replacement && !busy(part)) {
            part.replaceWith(document.importNode(replacement, true));
          }
        }
        document.body.setAttribute("data-refreshed", new Date().toISOString());
      })
      .catch(function () {
        document.body.setAttribute("data-refresh-failed", new Date().toISOString());
      });
  }

  window.setInterval(refresh, seconds * 1000);
})();
