// Latchkey panel: live dashboard numbers over Server-Sent Events, and copy
// buttons. Pages work without this file.
(function () {
  "use strict";
  function text(value) {
    return value === null || value === undefined ? "—" : String(value);
  }
  function renderEdges(body, edges) {
    body.replaceChildren();
    if (edges.length === 0) {
      var row = body.insertRow();
      row.className = "empty";
      var cell = row.insertCell();
      cell.colSpan = 4;
      cell.textContent = "No edge is connected.";
      return;
    }
    edges.forEach(function (edge) {
      var row = body.insertRow();
      [edge.name, edge.snapshot_sequence, edge.lag, edge.last_seen_at].forEach(function (value) {
        row.insertCell().textContent = text(value);
      });
    });
  }
  function start() {
    var section = document.querySelector("[data-live]");
    if (!section || !window.EventSource) return;
    var status = document.getElementById("live-status");
    var source = new EventSource(section.getAttribute("data-live"));
    source.addEventListener("open", function () { if (status) status.textContent = "connected"; });
    source.addEventListener("error", function () { if (status) status.textContent = "reconnecting…"; });
    source.addEventListener("stats", function (event) {
      var live = JSON.parse(event.data);
      Object.keys(live.stats).forEach(function (key) {
        var element = document.getElementById("stat-" + key);
        if (element) element.textContent = text(live.stats[key]);
      });
      var edges = document.getElementById("edges");
      if (edges) renderEdges(edges, live.edges);
      if (status) status.textContent = "updated " + new Date().toLocaleTimeString();
    });
  }
  // A button with data-copy="<id>" copies that element's text (secrets
  // shown once: API keys, enrolment tokens).
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy]") : null;
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    function copied() { button.textContent = "Copied"; }
    // Without the async clipboard (or its permission): select and copy.
    function bySelection() {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (document.execCommand("copy")) copied();
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(source.textContent.trim()).then(copied, bySelection);
    } else {
      bySelection();
    }
  });
  // A file input with data-fill="<id>" reads the chosen file into that
  // textarea (a CSV of customers): the form stays a plain one.
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input.getAttribute || !input.getAttribute("data-fill") || !input.files || !input.files[0]) return;
    var target = document.getElementById(input.getAttribute("data-fill"));
    if (!target) return;
    input.files[0].text().then(function (text) { target.value = text; });
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

// An htmx request that fails (an error answer, or no answer) says so where
// its answer would have gone, instead of leaving the old content in place.
(function () {
  "use strict";
  function failed(event, message) {
    var target = event.detail && event.detail.target;
    if (!target || !target.hasAttribute("data-on-error")) return;
    var note = document.createElement("p");
    note.className = "error small request-error";
    note.textContent = target.getAttribute("data-on-error") + " (" + message + ")";
    target.replaceChildren(note);
  }
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var code = xhr && xhr.getResponseHeader("x-error-code");
    failed(event, code || "status " + (xhr ? xhr.status : "?"));
  });
  document.addEventListener("htmx:sendError", function (event) {
    failed(event, "no answer from the server");
  });
})();

// A live list: the element with data-live-rows="<event stream URL>" gets
// `sessions` events whose HTML holds [data-live-part] elements, each
// replacing the page's element of the same id. A tbody's rows are merged by
// data-key instead: an unchanged row keeps its element, a changed one keeps
// what was ticked, so a selection survives the updates.
(function () {
  "use strict";
  function ticks(row) { return row.querySelectorAll("input[type=checkbox]"); }
  function mergeRows(body, fresh) {
    var old = {};
    Array.prototype.forEach.call(body.rows, function (row) { old[row.getAttribute("data-key")] = row; });
    var rows = Array.prototype.map.call(fresh.rows, function (row) {
      var kept = old[row.getAttribute("data-key")];
      if (!kept) return row;
      if (kept.outerHTML === row.outerHTML) return kept;
      var boxes = ticks(row);
      ticks(kept).forEach(function (box, i) { if (boxes[i]) boxes[i].checked = box.checked; });
      return row;
    });
    body.replaceChildren.apply(body, rows);
  }
  // #select-all (hidden without JavaScript) ticks every listed row.
  document.addEventListener("change", function (event) {
    if (event.target.id !== "select-all") return;
    var form = event.target.form;
    if (!form) return;
    form.querySelectorAll("tbody input[type=checkbox]").forEach(function (box) {
      box.checked = event.target.checked;
    });
  });
  function start() {
    var all = document.getElementById("select-all");
    if (all) all.hidden = false;
    var root = document.querySelector("[data-live-rows]");
    if (!root || !window.EventSource) return;
    var status = document.getElementById("live-status");
    function say(text) { if (status) status.textContent = text; }
    say("connecting…");
    var source = new EventSource(root.getAttribute("data-live-rows"));
    source.addEventListener("open", function () { say("live"); });
    source.addEventListener("error", function () {
      say(source.readyState === EventSource.CLOSED ? "disconnected: reload the page" : "reconnecting…");
    });
    source.addEventListener("sessions", function (event) {
      var template = document.createElement("template");
      template.innerHTML = event.data;
      template.content.querySelectorAll("[data-live-part]").forEach(function (part) {
        var current = document.getElementById(part.id);
        if (!current) return;
        if (part.tagName === "TBODY") mergeRows(current, part); else current.replaceWith(part);
      });
      say("live");
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

// A fragment refused with 422 is the fragment again with the refusal at its
// field (the license list's quick edit): htmx swaps it in like a success.
(function () {
  "use strict";
  if (window.htmx && htmx.config && htmx.config.responseHandling) {
    htmx.config.responseHandling.unshift({ code: "422", swap: true, error: false });
  }
})();

// The leads board: a card (data-move="<its move URL>") dragged onto another
// column (data-stage) posts the same request as its ← → buttons, through
// htmx, whose answer is the board again. Without JavaScript the buttons work
// as plain forms.
(function () {
  "use strict";
  var dragged = null;
  function column(event) {
    return event.target.closest ? event.target.closest("#board [data-stage]") : null;
  }
  document.addEventListener("dragstart", function (event) {
    var card = event.target.closest ? event.target.closest("[data-move]") : null;
    if (!card) return;
    dragged = card;
    card.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.id);
  });
  document.addEventListener("dragend", function () {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
    document.querySelectorAll(".drop-target").forEach(function (c) { c.classList.remove("drop-target"); });
  });
  document.addEventListener("dragover", function (event) {
    var target = column(event);
    if (!dragged || !target) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    target.classList.add("drop-target");
  });
  document.addEventListener("dragleave", function (event) {
    var target = column(event);
    if (target && !target.contains(event.relatedTarget)) target.classList.remove("drop-target");
  });
  document.addEventListener("drop", function (event) {
    var target = column(event);
    if (!dragged || !target || !window.htmx) return;
    event.preventDefault();
    var card = dragged;
    target.classList.remove("drop-target");
    if (card.closest("[data-stage]") === target) return;
    var form = card.querySelector("form.move");
    htmx.ajax("POST", card.getAttribute("data-move"), {
      source: form || card,
      target: "#board",
      swap: "outerHTML",
      values: { stage: target.getAttribute("data-stage") }
    });
  });
})();

// A running job's bar: the element with data-task-events="<event stream
// URL>" holds a <progress> and a .task-line, moved by the stream's
// `progress` events; its `finished` event reloads the page, which then
// lists the job's outcome.
(function () {
  "use strict";
  function follow(element) {
    var source = new EventSource(element.getAttribute("data-task-events"));
    var bar = element.querySelector("progress");
    var line = element.querySelector(".task-line");
    function show(event) {
      var task = JSON.parse(event.data);
      if (task.progress.percent === null) bar.removeAttribute("value");
      else bar.value = task.progress.percent;
      line.textContent = task.progress.line;
    }
    source.addEventListener("progress", show);
    source.addEventListener("finished", function (event) {
      show(event);
      source.close();
      window.location.reload();
    });
  }
  function start() {
    if (!window.EventSource) return;
    document.querySelectorAll("[data-task-events]").forEach(follow);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
