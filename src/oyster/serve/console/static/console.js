// Oyster console: small progressive enhancement. Every form works without this file; with
// it, forms marked data-fragment swap their result in place instead of reloading the page.
(function () {
  "use strict";
  var FRAGMENT = { "X-Console-Fragment": "1" };

  function post(url, form) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: Object.assign({ "Content-Type": "application/x-www-form-urlencoded" }, FRAGMENT),
      body: new URLSearchParams(new FormData(form)).toString()
    }).then(function (r) {
      if (r.status === 401 || r.status === 403) { window.location.reload(); }
      return r.text();
    });
  }

  function swap(target, html) {
    target.innerHTML = html;
    target.removeAttribute("aria-busy");
    enhance(target);
    target.querySelectorAll("[data-load]").forEach(function (el) {
      var form = document.querySelector(el.getAttribute("data-form"));
      if (!form) { return; }
      post(el.getAttribute("data-load"), form).then(function (h) { swap(el, h); })
        .catch(function (e) { el.innerHTML = '<p class="error" role="alert">' + e + "</p>"; });
    });
  }

  function submitFragment(form) {
    var target = document.querySelector(form.getAttribute("data-target"));
    if (!target) { form.submit(); return; }
    target.setAttribute("aria-busy", "true");
    var token = String(Date.now() + Math.random());
    target.setAttribute("data-pending", token);
    post(form.getAttribute("data-fragment"), form).then(function (html) {
      if (target.getAttribute("data-pending") === token) { swap(target, html); }
    }).catch(function (e) {
      target.removeAttribute("aria-busy");
      target.innerHTML = '<p class="error" role="alert">The console did not answer: ' + e + "</p>";
    });
  }

  function enhance(root) {
    root.querySelectorAll("form[data-fragment]").forEach(function (form) {
      if (form.dataset.enhanced) { return; }
      form.dataset.enhanced = "1";
      form.addEventListener("submit", function (ev) { ev.preventDefault(); submitFragment(form); });
      if (form.hasAttribute("data-auto")) {
        var timer = null;
        form.addEventListener("input", function () {
          clearTimeout(timer);
          timer = setTimeout(function () { submitFragment(form); }, 250);
        });
      }
    });
    root.querySelectorAll("input[type=range]").forEach(function (range) {
      var out = root.querySelector("output[for='" + range.id + "']");
      if (out) { range.addEventListener("input", function () { out.value = range.value; }); }
    });
    root.querySelectorAll("select[name=category]").forEach(function (select) {
      var range = select.form && select.form.querySelector("input[name=severity]");
      if (!range) { return; }
      select.addEventListener("change", function () {
        var opt = select.selectedOptions[0];
        if (opt && opt.dataset.severity) {
          range.value = opt.dataset.severity;
          range.dispatchEvent(new Event("input", { bubbles: true }));
        }
      });
    });
    root.querySelectorAll("input[type=file][data-into]").forEach(function (input) {
      input.addEventListener("change", function () {
        var file = input.files && input.files[0];
        if (!file) { return; }
        file.text().then(function (text) {
          document.querySelector(input.getAttribute("data-into")).value = text;
          var name = document.querySelector(input.getAttribute("data-name-into"));
          if (name) { name.value = file.name; }
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
})();
