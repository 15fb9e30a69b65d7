// The report's only script (the page's Content-Security-Policy allows it by
// hash, and nothing else). It reads the JSON block and writes with
// textContent only: no HTML is ever built from data. Each control keeps its
// choice in the URL's #fragment, so a view can be reopened or sent on.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var labels = data.reasons;
  var cap = data.renderCap;

  // -- the #fragment: each control sets its own keys and keeps the others' --
  // Only a fragment with "=" holds choices; "#copies" is a link to a section.
  var state = new URLSearchParams(location.hash.indexOf("=") >= 0 ? location.hash.slice(1) : "");
  function save(changes) {
    Object.keys(changes).forEach(function (k) {
      if (changes[k]) { state.set(k, changes[k]); } else { state.delete(k); }
    });
    var hash = state.toString();
    if (hash !== location.hash.slice(1)) {
      history.replaceState(null, "", hash ? "#" + hash : location.href.split("#")[0]);
    }
  }

  function cell(tr, value, cls, title) {
    var td = document.createElement("td");
    td.textContent = value == null ? "" : String(value);
    if (cls) { td.className = cls; }
    if (title) { td.title = title; }
    tr.appendChild(td);
    return td;
  }
  function plural(n, one, many) {
    return n.toLocaleString("en") + " " + (n === 1 ? one : (many || one + "s"));
  }
  function mark(decision) {
    return (decision === "granted" ? "\u2713 " : "\u2717 ") + decision;
  }

  // -- times: seconds from t0, shown in the report's zone with its offsets --
  var m = data.moves;
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function offsetAt(utc) {
    var off = m.offsets[0][1];
    for (var i = 1; i < m.offsets.length && m.offsets[i][0] <= utc; i++) { off = m.offsets[i][1]; }
    return off;
  }
  function show(t, sep) {  // to the second: the time control too, as every table
    var utc = m.t0 + t;
    var d = new Date((utc + offsetAt(utc)) * 1000);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      (sep || " ") + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" +
      pad(d.getUTCSeconds());
  }
  function parseLocal(text) {
    var p = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d))?$/.exec(text || "");
    if (!p) { return null; }
    var wall = Date.UTC(+p[1], +p[2] - 1, +p[3], +p[4], +p[5], +(p[6] || 0)) / 1000;
    for (var i = 0; i < m.offsets.length; i++) {
      var utc = wall - m.offsets[i][1];
      if (offsetAt(utc) === m.offsets[i][1]) { return utc - m.t0; }
    }
    return wall - m.offsets[0][1] - m.t0;  // a time the clocks skipped
  }
  function gateText(place) {
    return place[0] + (place[1] ? " (" + place[1] + ")" : "");
  }

  // -- who was inside at a time -------------------------------------------
  function whereAt(T) {
    var n = m.people.length;
    var loc = new Int32Array(n), since = new Array(n), via = new Array(n);
    var s = m.scans;
    for (var i = 0; i < s.length; i += 5) {
      if (s[i + 1] > T) { break; }
      if (s[i + 4] & 1) {
        loc[s[i]] = m.places[s[i + 2]][4];
        since[s[i]] = s[i + 1];
        via[s[i]] = s[i + 2];
      }
    }
    return {loc: loc, since: since, via: via};
  }
  function setUpInside() {
    var range = document.getElementById("at-range");
    var input = document.getElementById("at-time");
    var choose = document.getElementById("at-zone");
    var summary = document.getElementById("at-summary");
    var peopleTable = document.getElementById("at-people");
    var zonesTable = document.getElementById("at-zones");
    if (!m || !m.offsets) {
      summary.textContent = "No scans of passes to place in time.";
      peopleTable.setAttribute("data-ready", "1");
      return;
    }
    var within = m.enclosing.map(function (list) {
      var set = {};
      list.forEach(function (z) { set[z] = true; });
      return set;
    });
    var low = m.cut != null ? m.cut : m.start;
    range.min = low; range.max = m.end;
    input.min = show(low, "T"); input.max = show(m.end, "T");

    function draw(T, fromUser) {
      var at = whereAt(T);
      var zone = m.locations.indexOf(choose.value);
      var counts = new Array(m.locations.length).fill(0);
      var rows = [];
      var inside = 0;
      for (var p = 0; p < at.loc.length; p++) {
        var l = at.loc[p];
        if (l === 0) { continue; }
        inside++;
        m.enclosing[l].forEach(function (z) { counts[z]++; });
        if (zone < 0 || within[l][zone]) { rows.push(p); }
      }
      rows.sort(function (a, b) {
        var x = String(m.people[a][2] || "").toLowerCase(), y = String(m.people[b][2] || "").toLowerCase();
        return x < y ? -1 : x > y ? 1 : m.people[a][1] - m.people[b][1];
      });
      var frag = document.createDocumentFragment();
      rows.slice(0, cap).forEach(function (p) {
        var person = m.people[p], place = m.places[at.via[p]];
        var tr = document.createElement("tr");
        cell(tr, person[2] || "unknown", "clip wide", person[2]);
        cell(tr, person[3]);
        cell(tr, person[1], "num");
        cell(tr, m.locations[at.loc[p]]);
        cell(tr, show(at.since[p]));
        cell(tr, gateText(place));
        frag.appendChild(tr);
      });
      peopleTable.tBodies[0].replaceChildren(frag);
      var zfrag = document.createDocumentFragment();
      m.locations.forEach(function (name, z) {
        if (z === 0 || !counts[z]) { return; }
        var tr = document.createElement("tr");
        if (z === zone) { tr.className = "now"; }
        cell(tr, "\u2003".repeat(m.depth[z]) + name);
        cell(tr, counts[z], "num");
        zfrag.appendChild(tr);
      });
      zonesTable.tBodies[0].replaceChildren(zfrag);
      var where = zone < 0 ? "the venue" : m.locations[zone];
      var text = plural(rows.length, "person", "people") + " inside " + where + " at " +
        show(T, " ") + " (" + m.zone + ")";
      if (zone >= 0) { text += "; " + plural(inside, "person", "people") + " inside in all"; }
      if (rows.length > cap) { text += ". Showing " + cap.toLocaleString("en") + ", by name"; }
      summary.textContent = text + ".";
      summary.setAttribute("data-at", show(T, "T"));
      peopleTable.setAttribute("data-ready", "1");
      if (fromUser) { save({at: show(T, "T"), "in": choose.value}); }
    }
    function clamp(T) { return Math.min(Math.max(T, low), m.end); }
    function fromRange(fromUser) {
      var T = +range.value;
      input.value = show(T, "T");
      draw(T, fromUser);
    }
    function fromInput() {
      var T = parseLocal(input.value);
      if (T == null) { return; }
      T = clamp(T);
      range.value = T;
      draw(T, true);
    }
    var start = parseLocal(state.get("at"));
    var T = clamp(start == null ? m.now : start);
    if (state.get("in") && m.locations.indexOf(state.get("in")) > 0) { choose.value = state.get("in"); }
    range.value = T;
    input.value = show(T, "T");
    range.addEventListener("input", function () { fromRange(true); });
    input.addEventListener("change", fromInput);
    choose.addEventListener("change", function () { draw(+range.value, true); });
    draw(T, false);
  }

  // -- one pass's path -----------------------------------------------------
  function setUpPath() {
    var box = document.getElementById("path-q");
    var list = document.getElementById("path-people");
    var summary = document.getElementById("path-summary");
    var table = document.getElementById("path-scans");
    if (!m || !m.people) { table.setAttribute("data-ready", "1"); return; }
    var options = document.createDocumentFragment();
    m.people.slice(0, 5000).forEach(function (person) {
      var option = document.createElement("option");
      option.value = person[1] + (person[2] ? " \u00b7 " + person[2] : "");
      options.appendChild(option);
    });
    list.appendChild(options);
    function matching(q) {
      q = q.trim();
      if (!q) { return []; }
      var serial = /^(\d+)(\s|\u00b7|$)/.exec(q);
      var out = [];
      var lower = q.toLowerCase();
      m.people.forEach(function (person, i) {
        if (serial ? person[1] === +serial[1]
                   : String(person[2] || "").toLowerCase().indexOf(lower) >= 0) { out.push(i); }
      });
      return out;
    }
    function draw(fromUser) {
      var q = box.value;
      var who = matching(q);
      var chosen = {};
      who.slice(0, 20).forEach(function (p) { chosen[p] = true; });
      var frag = document.createDocumentFragment();
      var s = m.scans, count = 0, copies = 0;
      for (var i = 0; i < s.length; i += 5) {
        if (!chosen[s[i]]) { continue; }
        count++;
        var person = m.people[s[i]], place = m.places[s[i + 2]];
        var granted = (s[i + 4] & 1) === 1, copy = (s[i + 4] & 2) === 2;
        copies += copy ? 1 : 0;
        var tr = document.createElement("tr");
        tr.className = (granted ? "" : "denied") + (copy ? " copy" : "");
        if (copy) { tr.title = "suspected copy"; }
        var reason = m.reasons[s[i + 3]];
        cell(tr, show(s[i + 1]));
        cell(tr, person[1], "num");
        cell(tr, person[2] || "unknown", "clip", person[2]);
        cell(tr, place[0], "clip", place[0]);
        cell(tr, place[1], "clip", place[1]);
        cell(tr, place[2], "clip", place[2]);
        cell(tr, place[3]);
        cell(tr, mark(granted ? "granted" : "denied"));
        cell(tr, reason === "ok" ? "" : (labels[reason] || reason), "clip wide", labels[reason]);
        cell(tr, granted ? m.locations[place[4]] : "");
        if (count <= cap) { frag.appendChild(tr); }
      }
      table.tBodies[0].replaceChildren(frag);
      var text;
      if (!q.trim()) {
        text = "Choose a pass to see its path.";
      } else if (!who.length) {
        text = "No pass with serial or holder \u201c" + q.trim() + "\u201d.";
      } else {
        var first = m.people[who[0]];
        text = (who.length === 1
          ? "Serial " + first[1] + (first[2] ? " (" + first[2] + (first[3] ? ", " + first[3] : "") + ")" : "")
          : plural(who.length, "pass", "passes") + (who.length > 20 ? " match; the first 20 are shown" : "")) +
          ": " + plural(count, "scan") + (copies ? ", " + copies + " in suspected copies" : "") + ".";
      }
      summary.textContent = text;
      table.setAttribute("data-ready", "1");
      if (fromUser) { save({path: q.trim()}); }
    }
    box.value = state.get("path") || "";
    box.addEventListener("input", function () { draw(true); });
    draw(false);
  }

  // -- the table of scans ---------------------------------------------------
  function setUpTable() {
    var rows = data.table.rows;
    var table = document.getElementById("scans");
    var body = table.tBodies[0];
    var status = document.getElementById("f-status");
    var text = document.getElementById("f-text");
    var copy = document.getElementById("f-copy");
    var cols = {gate: 1, zone: 3, decision: 8, reason: 9};
    var selects = {};
    var hay = rows.map(function (r) {
      return [r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
              labels[r[9]] || "", r[10]].join(" ").toLowerCase();
    });
    Object.keys(cols).forEach(function (name) {
      var select = document.getElementById("f-" + name);
      var seen = {};
      rows.forEach(function (r) { var v = r[cols[name]]; if (v != null) { seen[v] = 1; } });
      Object.keys(seen).sort().forEach(function (v) {
        var option = document.createElement("option");
        option.value = v;
        option.textContent = name === "reason" ? (labels[v] || v) : v;
        select.appendChild(option);
      });
      selects[name] = select;
    });
    function apply(fromUser) {
      var q = text.value.trim().toLowerCase();
      var want = {};
      Object.keys(selects).forEach(function (k) { want[k] = selects[k].value; });
      var matched = 0;
      var frag = document.createDocumentFragment();
      for (var i = 0; i < rows.length; i++) {
        var r = rows[i];
        if (q && hay[i].indexOf(q) < 0) { continue; }
        if (copy.checked && !r[11]) { continue; }
        var ok = true;
        for (var k in want) {
          if (want[k] && String(r[cols[k]]) !== want[k]) { ok = false; break; }
        }
        if (!ok) { continue; }
        matched++;
        if (matched > cap) { continue; }
        var tr = document.createElement("tr");
        if (r[8] === "denied") { tr.className = "denied"; }
        if (r[11]) { tr.className += " copy"; tr.title = "suspected copy"; }
        cell(tr, r[0]);
        cell(tr, r[1], "clip", r[1]);
        cell(tr, r[2], "clip", r[2]);
        cell(tr, r[3], "clip", r[3]);
        cell(tr, r[4]);
        cell(tr, r[5], "num");
        cell(tr, r[6], "clip wide", r[6]);
        cell(tr, r[7], "clip", r[7]);
        cell(tr, mark(r[8]));
        cell(tr, r[9] === "ok" ? "" : (labels[r[9]] || r[9]), "clip wide", r[10]);
        frag.appendChild(tr);
      }
      body.replaceChildren(frag);
      status.textContent = matched > cap
        ? "Showing " + cap.toLocaleString("en") + " of " + matched.toLocaleString("en") +
          " matching rows; narrow the filter to see the rest."
        : matched.toLocaleString("en") + " of " + rows.length.toLocaleString("en") + " rows match.";
      if (fromUser !== true) { return; }
      var changes = {q: text.value.trim(), copy: copy.checked ? "1" : ""};
      Object.keys(want).forEach(function (k) { changes[k] = want[k]; });
      save(changes);
    }
    text.value = state.get("q") || "";
    copy.checked = state.get("copy") === "1";
    Object.keys(selects).forEach(function (k) {
      var v = state.get(k);
      if (v) { selects[k].value = v; }
    });
    function changed() { apply(true); }
    text.addEventListener("input", changed);
    copy.addEventListener("change", changed);
    Object.keys(selects).forEach(function (k) { selects[k].addEventListener("change", changed); });
    apply(false);
    table.setAttribute("data-ready", "1");
  }

  setUpInside();
  setUpPath();
  setUpTable();
})();
