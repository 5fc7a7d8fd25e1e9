// budgetguard status page: refresh the live part in place, and apply filters and sorting without a
// reload. Plain script, no library, no build step; the page works without it (links and a form).
(function () {
  "use strict";
  var body = document.body;
  var every = parseFloat(body.getAttribute("data-refresh") || "10") * 1000;
  var live = document.getElementById("live");
  var stamp = document.getElementById("refreshed");
  var timer = null;
  var inFlight = null;
  var refreshes = 0;
  var etag = null;  // the live part's version: the server answers 304 while it is unchanged
  var etagUrl = null;

  function say(text, failed) {
    if (!stamp) return;
    stamp.textContent = text;
    stamp.classList.toggle("failed", !!failed);
  }

  // A viewer's own request (a filter, a sort) replaces whatever is in flight and moves the address at
  // once, so the next periodic refresh asks for the same view; a periodic refresh never interrupts one.
  function load(url, push) {
    if (inFlight && !push) return Promise.resolve();
    if (inFlight) inFlight.abort();
    if (push && url !== location.pathname + location.search) history.pushState(null, "", url);
    var controller = new AbortController();
    inFlight = controller;
    var headers = { "X-Budgetguard-Fragment": "1" };
    if (!push && etag && etagUrl === url) headers["If-None-Match"] = etag;
    return fetch(url, {
      headers: headers,
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal
    }).then(function (response) {
      if (response.headers.get("X-Budgetguard-Login")) {
        location.reload();  // the token was forgotten or changed: show the login form
        return null;
      }
      if (response.status === 304) {
        say("Updated " + new Date().toLocaleTimeString() + " (no change)", false);
        refreshes += 1;
        body.setAttribute("data-refreshes", String(refreshes));
        return null;
      }
      if (!response.ok && response.status !== 404) throw new Error("HTTP " + response.status);
      etag = response.headers.get("ETag");
      etagUrl = url;
      return response.text();
    }).then(function (html) {
      if (html === null) return;
      var active = document.activeElement;
      var activeId = active && live.contains(active) ? active.getAttribute("href") : null;
      live.innerHTML = html;
      if (activeId) {
        var again = live.querySelector('[href="' + activeId.replace(/"/g, '\\"') + '"]');
        if (again) again.focus();
      }
      refreshes += 1;
      body.setAttribute("data-refreshes", String(refreshes));
      say("Updated " + new Date().toLocaleTimeString(), false);
    }).catch(function (error) {
      if (error && error.name === "AbortError") return;
      say("Cannot reach budgetguard; retrying", true);
    }).finally(function () {
      if (inFlight === controller) inFlight = null;
    });
  }

  function schedule() {
    if (timer) clearTimeout(timer);
    if (!(every > 0)) return;
    timer = setTimeout(function tick() {
      if (document.visibilityState === "visible") {
        load(location.pathname + location.search, false).finally(schedule);
      } else {
        schedule();
      }
    }, every);
  }

  // Sorting, verdict chips and range pickers: fetch the live part instead of a whole page.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-live]");
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    var url = link.getAttribute("href");
    syncForm(url);
    load(url, true).then(schedule);
  });

  // Filters: every change applies at once; typing waits for a pause.
  var form = document.querySelector("form.filters");
  function formUrl() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (value) params.set(key, value);
    });
    var query = params.toString();
    return form.getAttribute("action") + (query ? "?" + query : "");
  }
  function syncForm(url) {
    if (!form) return;
    var params = new URL(url, location.href).searchParams;
    ["sort", "dir", "verdict"].forEach(function (name) {
      var field = form.elements.namedItem(name);
      if (field) field.value = params.get(name) || "";
    });
  }
  if (form) {
    var typing = null;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      load(formUrl(), true).then(schedule);
    });
    form.addEventListener("change", function () {
      load(formUrl(), true).then(schedule);
    });
    form.addEventListener("input", function (event) {
      if (event.target.type !== "search") return;
      clearTimeout(typing);
      typing = setTimeout(function () { load(formUrl(), true).then(schedule); }, 250);
    });
  }

  window.addEventListener("popstate", function () {
    syncForm(location.href);
    load(location.pathname + location.search, false);
  });

  // "/" focuses the search box, as on most list pages.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || !form) return;
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") return;
    event.preventDefault();
    form.querySelector("input[type=search]").focus();
  });

  if (every > 0) {
    say("Live, every " + every / 1000 + "s", false);
    schedule();
  }
})();
