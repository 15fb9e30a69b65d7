// Keeps the live page current from the server's events. Data arrives as JSON
// and is written with textContent only: nothing from the wire becomes markup.
"use strict";
(function () {
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function row(cells, cls) {
    var tr = el("tr", null, cls);
    cells.forEach(function (c) {
      var td = el("td", c && c.text !== undefined ? c.text : c, c && c.cls ? c.cls : "");
      tr.appendChild(td);
    });
    return tr;
  }
  function fill(id, rows, empty, span) {
    var body = document.querySelector("#" + id + " tbody");
    if (!body) { return; }
    body.replaceChildren();
    rows.forEach(function (r) { body.appendChild(r); });
    if (!rows.length) {
      var tr = el("tr", null, "none"); var td = el("td", empty); td.colSpan = span;
      tr.appendChild(td); body.appendChild(tr);
    }
  }
  function text(id, value) { var e = document.getElementById(id); if (e) { e.textContent = value; } }
  function ago(v) { return v === null || v === undefined ? "" : v + " s ago"; }

  function render(s) {
    var broker = document.getElementById("broker");
    broker.textContent = s.broker.connected ? "broker connected"
      : "no broker" + (s.broker.since ? " since " + s.broker.since : "");
    broker.className = s.broker.connected ? "ok" : "bad";
    text("people", s.people + (s.people === 1 ? " person" : " people") + " inside");
    text("copies-total", s.copies_total + " suspected cop" + (s.copies_total === 1 ? "y" : "ies"));
    text("at", s.at);
    text("updated", "update " + s.version);
    fill("zones", s.zones.map(function (z) {
      var tr = row([{text: z.zone, cls: "depth" + z.depth}, {text: z.inside, cls: "num"},
        {text: z.capacity === null ? "" : z.capacity, cls: "num"},
        z.capacity ? (z.full ? "FULL" : "") : "",
        {text: z.known ? "known" : "not known: " + z.why, cls: "why"}],
        (z.full ? "full" : "") + (z.known ? "" : " unknown"));
      if (z.capacity) {
        // green while there is room, amber from 80 %, red when full
        var m = el("meter"); m.min = 0; m.max = z.capacity; m.low = z.capacity * 0.8;
        m.high = z.capacity - 0.5; m.optimum = 0; m.value = z.inside;
        tr.cells[3].prepend(m);
      }
      return tr;
    }), "", 5);
    fill("copies", s.copies.map(function (c) {
      return row([c.time, "#" + c.serial + " " + (c.tier || ""), c.first, c.second,
        {text: c.gap + " s", cls: "num"}, {text: c.walk + " s", cls: "num"}], "alarm");
    }), "none", 6);
    fill("gates", s.gates.map(function (g) {
      var clock = (g.clock || "") + (g.offset === null ? "" : " " + (g.offset >= 0 ? "+" : "") + g.offset.toFixed(1) + " s");
      return row([g.gate, (g.door || "") + " " + g.direction, g.state,
        {text: g.heard === null ? "never" : ago(g.heard), cls: "num"}, g.phase || "",
        g.faults.join(", "), clock, {text: ago(g.last_frame_age), cls: "num"},
        {text: g.granted === null ? "" : g.granted, cls: "num"},
        {text: g.denied === null ? "" : g.denied, cls: "num"}], g.ok ? "ok" : "bad");
    }), "", 10);
    var doors = document.getElementById("doors");
    doors.replaceChildren();
    s.doors.forEach(function (d) {
      var box = el("div", null, "door");
      box.appendChild(el("h3", d.gate + ": " + (d.door || d.zone) + " " + d.direction));
      var table = el("table", null, "scans");
      var head = el("thead"); head.appendChild(row(["time", "pass", "decision"]));
      head.querySelectorAll("td").forEach(function (td) { var th = el("th", td.textContent); td.replaceWith(th); });
      var body = el("tbody");
      d.last.forEach(function (x) {
        body.appendChild(row([x.time, (x.serial === null ? "not a pass" : "#" + x.serial) + " " + (x.tier || ""),
          x.decision === "granted" ? "granted" : (x.words || x.reason)], x.decision));
      });
      if (!d.last.length) { var tr = el("tr", null, "none"); var td = el("td", "no scans yet"); td.colSpan = 3; tr.appendChild(td); body.appendChild(tr); }
      table.appendChild(head); table.appendChild(body); box.appendChild(table); doors.appendChild(box);
    });
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }

  // A stream that ends is reopened by the browser itself. One the server refused
  // (too many screens open: 429; a token from an earlier run of scanner live: 401)
  // is closed for good, so the page says it is stale and tries again every 10 s.
  function connect() {
    var source = new EventSource("/events");
    source.onmessage = function (e) {
      document.body.classList.remove("stale");
      render(JSON.parse(e.data));
    };
    source.onerror = function () {
      if (source.readyState !== EventSource.CLOSED) { return; }
      document.body.classList.add("stale");
      text("updated", "NOT UPDATING: the live view refused this screen (too many open, or " +
        "scanner live was restarted: open its new address); trying again in 10 s");
      setTimeout(connect, 10000);
    };
  }
  connect();
})();
