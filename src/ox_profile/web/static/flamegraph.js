/* ox_profile flame graph: an offline, dependency-free, interactive SVG flame
 * graph.  Written for ox_profile; no third-party code.
 *
 *   var ctl = OxFlame.mount(element, flameData, {view: "all", orientation: "icicle"});
 *   (option table: false leaves out the top-functions table, for pages that have their own)
 *   ctl.setView("thread:0"); ctl.zoom(["main", "handle"]); ctl.search("/^db_/"); ctl.reset();
 *
 * flameData is the "Flame data" JSON of docs/contract.md.  Every string that
 * comes from the data is inserted with textContent or setAttribute, never as
 * markup.
 */
(function (global) {
  "use strict";

  var SVGNS = "http://www.w3.org/2000/svg";
  var ROW_H = 18;           // px per stack level
  var MIN_W = 0.5;          // nodes narrower than this (px) are not drawn
  var MAX_TABLE_ROWS = 300; // rows of the top-functions table drawn at once
  var MATCH_COLOR = "#b46cf0";
  var ROOT_COLOR = "#d6d1c8";

  // -- small helpers ---------------------------------------------------------

  function h(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function s(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    if (attrs) {
      for (var k in attrs) {
        if (Object.prototype.hasOwnProperty.call(attrs, k)) { e.setAttribute(k, String(attrs[k])); }
      }
    }
    return e;
  }

  function hashString(str) {       // FNV-1a, 32 bits
    var x = 0x811c9dc5;
    for (var i = 0; i < str.length; i++) {
      x ^= str.charCodeAt(i);
      x = Math.imul(x, 0x01000193) >>> 0;
    }
    return x >>> 0;
  }

  function moduleColor(module) {   // warm palette, deterministic per module
    var x = hashString(module || "?");
    var hue = 2 + (x % 52);                 // red .. orange .. yellow
    var sat = 72 + ((x >>> 8) % 22);
    var light = 56 + ((x >>> 16) % 14);
    return "hsl(" + hue + "," + sat + "%," + light + "%)";
  }

  function fmtPct(frac) {
    var p = frac * 100;
    if (!isFinite(p)) { return "0"; }
    if (p === 0 || p >= 1) { return p.toFixed(1); }
    return p.toPrecision(2);
  }

  function fmtInt(n) {
    return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function fmtSamples(n) {
    return fmtInt(n) + (n === 1 ? " sample" : " samples");
  }

  /** A predicate for the search box: case-insensitive substring, or /regex/flags. */
  function makeMatcher(text) {
    text = (text || "").trim();
    if (!text) { return null; }
    var m = /^\/(.+)\/([a-z]*)$/.exec(text);
    if (m) {
      var flags = m[2].replace(/[gy]/g, "");
      if (flags.indexOf("i") < 0) { flags += "i"; }
      var re;
      try { re = new RegExp(m[1], flags); } catch (err) { return {error: "invalid regex"}; }
      return {test: function (str) { return re.test(str); }};
    }
    var needle = text.toLowerCase();
    return {test: function (str) { return str.toLowerCase().indexOf(needle) >= 0; }};
  }

  // -- data --------------------------------------------------------------------

  /** Flatten a nested [fid, total, self, children] tree into typed arrays, in
   *  breadth-first order so that the children of a node are contiguous and
   *  every parent comes before its children.  Children are sorted by total
   *  hits, largest first. */
  function flatten(tree) {
    var raws = [tree];
    var parent = [-1], depth = [0], kidStart = [], kidCount = [];
    var maxDepth = 0;
    for (var q = 0; q < raws.length; q++) {
      var kids = raws[q][3] || [];
      if (kids.length > 1) {
        kids = kids.slice().sort(function (a, b) { return b[1] - a[1]; });
      }
      kidStart.push(raws.length);
      kidCount.push(kids.length);
      var d = depth[q] + 1;
      if (kids.length && d > maxDepth) { maxDepth = d; }
      for (var k = 0; k < kids.length; k++) {
        raws.push(kids[k]);
        parent.push(q);
        depth.push(d);
      }
    }
    var n = raws.length;
    var fid = new Int32Array(n), tot = new Float64Array(n), slf = new Float64Array(n);
    for (var i = 0; i < n; i++) {
      var r = raws[i];
      fid[i] = r[0] | 0;
      tot[i] = +r[1] || 0;
      slf[i] = +r[2] || 0;
    }
    return {
      n: n, fid: fid, tot: tot, slf: slf, maxDepth: maxDepth,
      parent: Int32Array.from(parent), depth: Int32Array.from(depth),
      kidStart: Int32Array.from(kidStart), kidCount: Int32Array.from(kidCount)
    };
  }

  // -- the component -------------------------------------------------------------

  function mount(container, data, options) {
    options = options || {};
    data = data || {};
    var funcs = data.functions || [];
    var views = (data.views || []).filter(function (v) { return v && v.tree; });
    if (!views.length) {
      views = [{key: "all", label: "All threads", total: 0, tree: [-1, 0, 0, []], top: []}];
    }

    var nf = funcs.length;
    var fnName = new Array(nf), fnModule = new Array(nf), fnFile = new Array(nf),
        fnLine = new Array(nf), fnColor = new Array(nf), fnFull = new Array(nf), fnShort = new Array(nf);
    var colorCache = {};
    for (var i = 0; i < nf; i++) {
      var f = funcs[i] || [];
      fnName[i] = String(f[0] === undefined || f[0] === null ? "?" : f[0]);
      fnModule[i] = String(f[1] === undefined || f[1] === null ? "" : f[1]);
      fnFile[i] = String(f[2] === undefined || f[2] === null ? "?" : f[2]);
      fnLine[i] = f[3] | 0;
      // The file as tables show it (relative to its sys.path entry); the full path stays in tooltips.
      fnShort[i] = f[4] === undefined || f[4] === null || f[4] === "" ? fnFile[i] : String(f[4]);
      fnFull[i] = fnModule[i] ? fnModule[i] + "." + fnName[i] : fnName[i];
      var mod = fnModule[i];
      if (!Object.prototype.hasOwnProperty.call(colorCache, mod)) { colorCache[mod] = moduleColor(mod); }
      fnColor[i] = colorCache[mod];
    }
    function nameOf(fid) { return fid < 0 ? "all" : (fid < nf ? fnName[fid] : "?"); }
    function moduleOf(fid) { return fid >= 0 && fid < nf ? fnModule[fid] : ""; }
    function fileOf(fid) { return fid >= 0 && fid < nf ? fnFile[fid] : ""; }
    function shortFileOf(fid) { return fid >= 0 && fid < nf ? fnShort[fid] : ""; }
    function lineOf(fid) { return fid >= 0 && fid < nf ? fnLine[fid] : 0; }
    function colorOf(fid) { return fid < 0 ? ROOT_COLOR : (fid < nf ? fnColor[fid] : "#ccc"); }

    var state = {
      view: null,          // the view object
      flat: null,          // its flattened tree
      zoom: 0,             // node index that fills the width
      matcher: null,
      fnMatch: null,       // Uint8Array per function
      nodeMatch: null,     // Uint8Array per node of the current view
      matched: 0,          // samples with at least one matching frame
      orientation: options.orientation === "flame" ? "flame" : "icicle",
      sortKey: "self",
      sortDir: -1,
      searchText: ""
    };
    var flatCache = {};

    // ---- DOM skeleton
    container.textContent = "";
    var root = h("div", "oxf");
    container.appendChild(root);

    var bar = h("div", "oxf-bar");
    var viewLabel = h("label", "oxf-field");
    viewLabel.appendChild(h("span", "oxf-field-name", "View"));
    var viewSelect = h("select", "oxf-view");
    viewSelect.setAttribute("aria-label", "View");
    // Views with "idle_of" hold the samples of waiting threads too: the
    // "Idle samples" switch shows them in place of the views they extend.
    var withIdle = {};
    views.forEach(function (v) {
      if (v.idle_of !== undefined) { withIdle[String(v.idle_of)] = v; }
    });
    var hasIdle = views.some(function (v) { return v.idle_of !== undefined; });
    var idleOn = !!options.idle && hasIdle;
    function keyOf(v, idx) { return String(v.key === undefined ? idx : v.key); }
    function listedViews() {
      var out = [];
      var bases = {};
      views.forEach(function (v) { if (v.idle_of === undefined) { bases[keyOf(v, 0)] = true; } });
      views.forEach(function (v, idx) {
        if (v.idle_of === undefined) {
          out.push(idleOn && withIdle[keyOf(v, idx)] ? withIdle[keyOf(v, idx)] : v);
        } else if (idleOn && !bases[String(v.idle_of)]) {
          out.push(v); // a view that has only idle samples
        }
      });
      return out;
    }
    function fillViewSelect() {
      viewSelect.textContent = "";
      listedViews().forEach(function (v) {
        var opt = h("option", null, (v.label || v.key) + " \u2014 " + fmtInt(v.total || 0) + " samples");
        opt.value = keyOf(v, views.indexOf(v));
        viewSelect.appendChild(opt);
      });
    }
    fillViewSelect();
    viewLabel.appendChild(viewSelect);
    bar.appendChild(viewLabel);

    var idleBox = null;
    if (hasIdle) {
      var idleLabel = h("label", "oxf-field oxf-idle");
      idleLabel.title = "samples of threads that were waiting (sleeping, blocked on a lock or I/O), not running";
      idleBox = h("input", "oxf-idle-box");
      idleBox.type = "checkbox";
      idleBox.checked = idleOn;
      idleLabel.appendChild(idleBox);
      idleLabel.appendChild(h("span", "oxf-field-name", "Idle samples"));
      bar.appendChild(idleLabel);
    }

    var searchLabel = h("label", "oxf-field");
    searchLabel.appendChild(h("span", "oxf-field-name", "Search"));
    var searchInput = h("input", "oxf-search");
    searchInput.type = "search";
    searchInput.placeholder = "function or module, or /regex/";
    searchInput.setAttribute("aria-label", "Search functions");
    searchInput.spellcheck = false;
    searchLabel.appendChild(searchInput);
    bar.appendChild(searchLabel);

    var matchedOut = h("span", "oxf-matched");
    matchedOut.setAttribute("aria-live", "polite");
    bar.appendChild(matchedOut);

    var spacer = h("span", "oxf-spacer");
    bar.appendChild(spacer);

    var resetBtn = h("button", "oxf-btn oxf-reset", "Reset zoom");
    resetBtn.type = "button";
    bar.appendChild(resetBtn);
    var orientBtn = h("button", "oxf-btn oxf-orient");
    orientBtn.type = "button";
    bar.appendChild(orientBtn);
    root.appendChild(bar);

    var crumbs = h("nav", "oxf-crumbs");
    crumbs.setAttribute("aria-label", "Zoom path");
    root.appendChild(crumbs);

    var graph = h("div", "oxf-graph");
    root.appendChild(graph);
    var svg = s("svg", {"class": "oxf-svg", "role": "img"});
    graph.appendChild(svg);

    var status = h("div", "oxf-status");
    root.appendChild(status);

    var tip = h("div", "oxf-tip");
    tip.setAttribute("role", "tooltip");
    tip.style.display = "none";
    root.appendChild(tip);

    var tableWrap = h("div", "oxf-table-wrap");
    var tableTitle = h("h2", "oxf-table-title", "Top functions");
    tableWrap.appendChild(tableTitle);
    var table = h("table", "oxf-top");
    var thead = h("thead");
    var headRow = h("tr");
    var columns = [
      {key: "self", label: "Self %", cls: "oxf-num"},
      {key: "total", label: "Total %", cls: "oxf-num"},
      {key: "name", label: "Function", cls: "oxf-fn"},
      {key: "loc", label: "File:line", cls: "oxf-loc"}
    ];
    var headCells = {};
    columns.forEach(function (c) {
      var th = h("th", c.cls);
      th.setAttribute("data-key", c.key);
      th.setAttribute("tabindex", "0");
      th.setAttribute("title", "Sort by " + c.label);
      th.appendChild(h("span", "oxf-th-label", c.label));
      th.appendChild(h("span", "oxf-sort-ind"));
      headRow.appendChild(th);
      headCells[c.key] = th;
    });
    thead.appendChild(headRow);
    table.appendChild(thead);
    var tbody = h("tbody");
    table.appendChild(tbody);
    tableWrap.appendChild(table);
    var tableNote = h("div", "oxf-table-note");
    tableWrap.appendChild(tableNote);
    var withTable = options.table !== false;
    if (withTable) { root.appendChild(tableWrap); }

    // Width of one character of node labels, for cutting names to fit.
    var charW = 7;
    (function measure() {
      var probe = s("text", {"class": "oxf-label", x: 0, y: 12});
      probe.textContent = "MMMMMMMMMM";
      svg.appendChild(probe);
      try {
        var len = probe.getComputedTextLength();
        if (len > 0) { charW = len / 10; }
      } catch (err) { /* not rendered: keep the estimate */ }
      svg.removeChild(probe);
    })();

    // ---- search
    function computeMatches() {
      var flat = state.flat;
      state.nodeMatch = null;
      state.matched = 0;
      if (!state.matcher || !state.matcher.test) { state.fnMatch = null; return; }
      if (!state.fnMatch) {
        var fm = new Uint8Array(nf);
        for (var i = 0; i < nf; i++) {
          fm[i] = (state.matcher.test(fnName[i]) || state.matcher.test(fnFull[i])) ? 1 : 0;
        }
        state.fnMatch = fm;
      }
      var fmatch = state.fnMatch;
      var nm = new Uint8Array(flat.n);
      var under = new Uint8Array(flat.n);   // has a matching ancestor
      var matched = 0;
      for (var j = 1; j < flat.n; j++) {   // node 0 is the root ("all")
        var p = flat.parent[j];
        under[j] = (under[p] || nm[p]) ? 1 : 0;
        var fid = flat.fid[j];
        if (fid >= 0 && fid < nf && fmatch[fid]) {
          nm[j] = 1;
          if (!under[j]) { matched += flat.tot[j]; }
        }
      }
      state.nodeMatch = nm;
      state.matched = matched;
    }

    function showMatched() {
      var m = state.matcher;
      matchedOut.classList.remove("oxf-error");
      if (!m) { matchedOut.textContent = ""; return; }
      if (m.error) {
        matchedOut.textContent = m.error;
        matchedOut.classList.add("oxf-error");
        return;
      }
      var total = state.flat.tot[0] || 0;
      matchedOut.textContent = "matched: " + fmtPct(total ? state.matched / total : 0) + "% of samples";
      matchedOut.title = fmtInt(state.matched) + " of " + fmtInt(total) + " samples have a matching frame";
    }

    function applySearch(text) {
      state.searchText = text || "";
      state.matcher = makeMatcher(state.searchText);
      state.fnMatch = null;
      computeMatches();
      showMatched();
      render(true);
      renderTable();
    }

    // ---- flame graph
    var lastWidth = 0;

    function render(keepScroll) {
      var flat = state.flat;
      var W = Math.max(200, Math.floor(graph.clientWidth || container.clientWidth || 1000));
      lastWidth = W;
      while (svg.firstChild) { svg.removeChild(svg.firstChild); }
      hideTip();
      var Z = state.zoom;
      var ztot = flat.tot[Z];
      resetBtn.disabled = Z === 0;
      renderCrumbs();

      var items = [];     // flat list: node, x, w, ancestor flag
      var chain = [];
      for (var a = flat.parent[Z]; a >= 0; a = flat.parent[a]) { chain.push(a); }
      chain.reverse();
      for (var c = 0; c < chain.length; c++) { items.push(chain[c], 0, W, 1); }
      var drawnDepth = flat.depth[Z];
      var shown = 0;
      if (ztot > 0) {
        var scale = W / ztot;
        var stack = [Z, 0];
        while (stack.length) {
          var x = stack.pop(), node = stack.pop();
          var w = flat.tot[node] * scale;
          items.push(node, x, w, 0);
          shown++;
          if (flat.depth[node] > drawnDepth) { drawnDepth = flat.depth[node]; }
          var k0 = flat.kidStart[node], kn = flat.kidCount[node];
          var cx = x;
          var pushed = [];
          for (var k = 0; k < kn; k++) {
            var kid = k0 + k;
            var kw = flat.tot[kid] * scale;
            if (kw < MIN_W) { break; }       // sorted: the rest are narrower
            pushed.push(kid, cx);
            cx += kw;
          }
          // Push in reverse so that the DOM order follows the x order.
          for (var p = pushed.length - 2; p >= 0; p -= 2) { stack.push(pushed[p], pushed[p + 1]); }
        }
      } else {
        items.push(Z, 0, W, 0);
      }

      var nm = state.nodeMatch;
      var levels = drawnDepth + 1;
      var height = levels * ROW_H + 1;
      svg.setAttribute("width", String(W));
      svg.setAttribute("height", String(height));
      svg.setAttribute("viewBox", "0 0 " + W + " " + height);
      svg.setAttribute("aria-label", "Flame graph of " + (state.view.label || state.view.key));
      root.setAttribute("data-orientation", state.orientation);
      svg.setAttribute("class", "oxf-svg" + (nm ? " oxf-searching" : ""));
      orientBtn.textContent = state.orientation === "icicle" ? "Flame (bottom-up)" : "Icicle (top-down)";
      orientBtn.title = "Switch to the " + (state.orientation === "icicle" ? "classic bottom-up flame graph" : "top-down icicle graph");

      var frag = document.createDocumentFragment();
      var vtot = flat.tot[0] || 0;
      for (var it = 0; it < items.length; it += 4) {
        var ni = items[it], nx = items[it + 1], nw = items[it + 2], anc = items[it + 3];
        var d = flat.depth[ni];
        var y = state.orientation === "icicle" ? d * ROW_H : (drawnDepth - d) * ROW_H;
        var fid = flat.fid[ni];
        var name = nameOf(fid);
        var isMatch = nm ? nm[ni] === 1 : false;
        var cls = "oxf-node";
        if (anc) { cls += " oxf-anc"; }
        if (ni === Z && Z !== 0) { cls += " oxf-zoomed"; }
        if (isMatch) { cls += " oxf-match"; }
        if (ni === 0) { cls += " oxf-root"; }
        var g = s("g", {"class": cls, "data-i": ni});
        var rw = nw > 2 ? nw - 1 : nw;   // a 1px gap between neighbours
        var rect = s("rect", {
          x: nx.toFixed(2), y: y, width: rw.toFixed(2), height: ROW_H - 1, rx: 2,
          fill: isMatch ? MATCH_COLOR : colorOf(fid),
          "data-i": ni, "data-fid": fid, "data-name": name, "data-module": moduleOf(fid),
          "data-total": flat.tot[ni], "data-self": flat.slf[ni], "data-depth": d
        });
        g.appendChild(rect);
        var room = Math.floor((nw - 6) / charW);
        if (room >= 2) {
          var label = ni === 0 ? "all (" + fmtInt(vtot) + " samples)" : name;
          if (label.length > room) { label = label.slice(0, room - 1) + "\u2026"; }
          var text = s("text", {"class": "oxf-label", x: (nx + 3).toFixed(2), y: y + ROW_H - 5});
          text.textContent = label;
          g.appendChild(text);
        }
        frag.appendChild(g);
      }
      svg.appendChild(frag);
      // Bottom-up: keep the root (at the bottom) in sight.
      if (!keepScroll) { graph.scrollTop = state.orientation === "flame" ? graph.scrollHeight : 0; }
      status.textContent = fmtInt(vtot) + " samples \u00b7 " + fmtInt(flat.n - 1) + " nodes, " +
        fmtInt(shown) + " drawn" + (Z === 0 && flat.n - 1 > shown - 1 ?
          " (" + fmtInt(flat.n - shown) + " narrower than " + MIN_W + "px hidden)" : "") +
        " \u00b7 click a frame to zoom, Esc to reset";
    }

    function renderCrumbs() {
      var flat = state.flat;
      crumbs.textContent = "";
      var path = [];
      for (var a = state.zoom; a >= 0; a = flat.parent[a]) { path.push(a); }
      path.reverse();
      path.forEach(function (ni, idx) {
        if (idx) { crumbs.appendChild(h("span", "oxf-crumb-sep", "\u203a")); }
        var label = ni === 0 ? "all" : nameOf(flat.fid[ni]);
        if (idx === path.length - 1) {
          var cur = h("span", "oxf-crumb oxf-crumb-current", label);
          crumbs.appendChild(cur);
        } else {
          var b = h("button", "oxf-crumb", label);
          b.type = "button";
          b.setAttribute("data-i", String(ni));
          crumbs.appendChild(b);
        }
      });
    }

    // ---- tooltip
    function hideTip() { tip.style.display = "none"; }

    function showTip(ni, ev) {
      var flat = state.flat;
      var fid = flat.fid[ni];
      var vtot = flat.tot[0] || 0;
      var ztot = flat.tot[state.zoom] || 0;
      tip.textContent = "";
      tip.appendChild(h("div", "oxf-tip-name", ni === 0 ? "all samples" : nameOf(fid)));
      if (fid >= 0) {
        if (moduleOf(fid)) { tip.appendChild(h("div", "oxf-tip-module", "module " + moduleOf(fid))); }
        tip.appendChild(h("div", "oxf-tip-loc", fileOf(fid) + ":" + lineOf(fid)));
      }
      var tl = "total: " + fmtSamples(flat.tot[ni]) + " (" + fmtPct(vtot ? flat.tot[ni] / vtot : 0) + "%";
      if (state.zoom !== 0 && ztot) { tl += ", " + fmtPct(flat.tot[ni] / ztot) + "% of zoom"; }
      tip.appendChild(h("div", "oxf-tip-total", tl + ")"));
      tip.appendChild(h("div", "oxf-tip-self", "self: " + fmtSamples(flat.slf[ni]) + " (" +
        fmtPct(vtot ? flat.slf[ni] / vtot : 0) + "%)"));
      tip.style.display = "block";
      placeTip(ev);
    }

    function placeTip(ev) {
      var pad = 14;
      var vw = document.documentElement.clientWidth, vh = document.documentElement.clientHeight;
      var tw = tip.offsetWidth, th = tip.offsetHeight;
      var x = ev.clientX + pad, y = ev.clientY + pad;
      if (x + tw > vw - 4) { x = Math.max(4, ev.clientX - pad - tw); }
      if (y + th > vh - 4) { y = Math.max(4, ev.clientY - pad - th); }
      tip.style.left = x + "px";
      tip.style.top = y + "px";
    }

    function nodeFromEvent(ev) {
      var t = ev.target;
      var g = t && t.closest ? t.closest("g.oxf-node") : null;
      if (!g) { return -1; }
      var v = parseInt(g.getAttribute("data-i"), 10);
      return isNaN(v) ? -1 : v;
    }

    // ---- table
    function renderTable() {
      if (!withTable) { return; }
      var flat = state.flat;
      var vtot = flat.tot[0] || 0;
      var top = state.view.top || [];
      var fm = state.matcher && state.matcher.test ? state.fnMatch : null;
      var rows = [];
      for (var i = 0; i < top.length; i++) {
        var r = top[i];
        var fid = r[0] | 0;
        if (fm && !(fid >= 0 && fid < nf && fm[fid])) { continue; }
        rows.push({fid: fid, self: +r[1] || 0, total: +r[2] || 0, line: r[3] === undefined ? lineOf(fid) : r[3] | 0,
                   name: nameOf(fid)});
      }
      var key = state.sortKey, dir = state.sortDir;
      rows.sort(function (a, b) {
        var c = 0;
        if (key === "self") { c = a.self - b.self || a.total - b.total; }
        else if (key === "total") { c = a.total - b.total || a.self - b.self; }
        else if (key === "name") { c = a.name < b.name ? -1 : (a.name > b.name ? 1 : 0); }
        else {
          var fa = fileOf(a.fid), fb = fileOf(b.fid);
          c = fa < fb ? -1 : (fa > fb ? 1 : a.line - b.line);
        }
        c *= dir;
        if (!c) { c = a.name < b.name ? -1 : (a.name > b.name ? 1 : a.fid - b.fid); }
        return c;
      });
      columns.forEach(function (col) {
        var th = headCells[col.key];
        var ind = th.lastChild;
        if (col.key === key) {
          th.setAttribute("aria-sort", dir < 0 ? "descending" : "ascending");
          ind.textContent = dir < 0 ? " \u25bc" : " \u25b2";
        } else {
          th.removeAttribute("aria-sort");
          ind.textContent = "";
        }
      });
      tbody.textContent = "";
      var frag = document.createDocumentFragment();
      var n = Math.min(rows.length, MAX_TABLE_ROWS);
      for (var j = 0; j < n; j++) {
        var row = rows[j];
        var tr = h("tr");
        tr.setAttribute("data-fid", String(row.fid));
        tr.setAttribute("data-name", row.name);
        var c1 = h("td", "oxf-num", fmtPct(vtot ? row.self / vtot : 0));
        c1.title = fmtInt(row.self) + " samples";
        var c2 = h("td", "oxf-num", fmtPct(vtot ? row.total / vtot : 0));
        c2.title = fmtInt(row.total) + " samples";
        var c3 = h("td", "oxf-fn");
        var sw = h("span", "oxf-swatch");
        sw.style.background = colorOf(row.fid);
        c3.appendChild(sw);
        c3.appendChild(h("span", "oxf-fn-name", row.name));
        if (moduleOf(row.fid)) { c3.appendChild(h("span", "oxf-fn-module", moduleOf(row.fid))); }
        var c4 = h("td", "oxf-loc", shortFileOf(row.fid) + ":" + row.line);
        c4.title = fileOf(row.fid) + ":" + row.line;
        tr.appendChild(c1); tr.appendChild(c2); tr.appendChild(c3); tr.appendChild(c4);
        frag.appendChild(tr);
      }
      tbody.appendChild(frag);
      var note = "";
      if (rows.length > n) { note = "Showing " + n + " of " + fmtInt(rows.length) + " functions; refine with the search box."; }
      else if (!rows.length) { note = fm ? "No function matches the search." : "No samples."; }
      tableNote.textContent = note;
    }

    function sortBy(key) {
      if (state.sortKey === key) { state.sortDir = -state.sortDir; }
      else {
        state.sortKey = key;
        state.sortDir = (key === "name" || key === "loc") ? 1 : -1;
      }
      renderTable();
    }

    // ---- controller operations
    function findView(key) {
      for (var i = 0; i < views.length; i++) {
        if (String(views[i].key) === String(key)) { return i; }
      }
      return -1;
    }

    function setIdle(on) {
      if (!hasIdle) { return false; }
      idleOn = !!on;
      if (idleBox) { idleBox.checked = idleOn; }
      var base = state.view && state.view.idle_of !== undefined ? String(state.view.idle_of)
        : String(state.view ? state.view.key : "all");
      fillViewSelect();
      var target = idleOn && withIdle[base] ? withIdle[base].key : base;
      if (findView(target) < 0 || (!idleOn && state.view && state.view.idle_of !== undefined &&
                                   findView(base) < 0)) {
        target = views[0].key === undefined ? 0 : views[0].key; // a view that had only idle samples
      }
      return setView(target);
    }

    function setView(key) {
      var idx = findView(key);
      if (idx < 0) { return false; }
      var v = views[idx];
      var ck = "v" + idx;
      if (!flatCache[ck]) { flatCache[ck] = flatten(v.tree); }
      state.view = v;
      state.flat = flatCache[ck];
      state.zoom = 0;
      viewSelect.value = String(v.key === undefined ? idx : v.key);
      root.setAttribute("data-view", String(v.key));
      computeMatches();
      showMatched();
      render();
      renderTable();
      return true;
    }

    function zoomTo(ni) {
      var flat = state.flat;
      if (!(ni >= 0 && ni < flat.n)) { return false; }
      state.zoom = ni;
      render();
      return true;
    }

    function zoom(nodePath) {
      var flat = state.flat;
      if (nodePath === null || nodePath === undefined) { return zoomTo(0); }
      if (typeof nodePath === "number") { return zoomTo(nodePath); }
      var steps = typeof nodePath === "string" ? nodePath.split(";") : Array.prototype.slice.call(nodePath);
      if (steps.length && steps[0] === "all") { steps.shift(); }
      var cur = 0;
      for (var i = 0; i < steps.length; i++) {
        var want = steps[i], found = -1;
        var k0 = flat.kidStart[cur], kn = flat.kidCount[cur];
        for (var k = 0; k < kn; k++) {
          var fid = flat.fid[k0 + k];
          if (typeof want === "number" ? fid === want : nameOf(fid) === String(want)) { found = k0 + k; break; }
        }
        if (found < 0) { return false; }
        cur = found;
      }
      return zoomTo(cur);
    }

    function reset() { return zoomTo(0); }

    function search(text) {
      searchInput.value = text || "";
      applySearch(searchInput.value);
      var total = state.flat.tot[0] || 0;
      return {matched: state.matched, total: total, fraction: total ? state.matched / total : 0,
              error: state.matcher && state.matcher.error ? state.matcher.error : null};
    }

    function setOrientation(o) {
      state.orientation = o === "flame" ? "flame" : "icicle";
      render();
    }

    function zoomPath() {
      var flat = state.flat, path = [];
      for (var a = state.zoom; a > 0; a = flat.parent[a]) { path.push(nameOf(flat.fid[a])); }
      return path.reverse();
    }

    // ---- events
    viewSelect.addEventListener("change", function () { setView(viewSelect.value); });
    var searchTimer = null;
    searchInput.addEventListener("input", function () {
      if (searchTimer) { clearTimeout(searchTimer); }
      var delay = state.flat.n > 20000 ? 150 : 40;
      searchTimer = setTimeout(function () { searchTimer = null; applySearch(searchInput.value); }, delay);
    });
    searchInput.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") {
        if (searchTimer) { clearTimeout(searchTimer); searchTimer = null; }
        applySearch(searchInput.value);
      }
    });
    resetBtn.addEventListener("click", reset);
    orientBtn.addEventListener("click", function () {
      setOrientation(state.orientation === "icicle" ? "flame" : "icicle");
    });
    crumbs.addEventListener("click", function (ev) {
      var b = ev.target.closest ? ev.target.closest("button.oxf-crumb") : null;
      if (b) { zoomTo(parseInt(b.getAttribute("data-i"), 10)); }
    });
    svg.addEventListener("click", function (ev) {
      var ni = nodeFromEvent(ev);
      if (ni >= 0 && ni !== state.zoom) { zoomTo(ni); }
    });
    svg.addEventListener("mousemove", function (ev) {
      var ni = nodeFromEvent(ev);
      if (ni < 0) { hideTip(); return; }
      if (tip.getAttribute("data-i") !== String(ni) || tip.style.display === "none") {
        tip.setAttribute("data-i", String(ni));
        showTip(ni, ev);
      } else {
        placeTip(ev);
      }
    });
    svg.addEventListener("mouseleave", hideTip);
    thead.addEventListener("click", function (ev) {
      var th = ev.target.closest ? ev.target.closest("th") : null;
      if (th) { sortBy(th.getAttribute("data-key")); }
    });
    thead.addEventListener("keydown", function (ev) {
      if (ev.key !== "Enter" && ev.key !== " ") { return; }
      var th = ev.target.closest ? ev.target.closest("th") : null;
      if (th) { ev.preventDefault(); sortBy(th.getAttribute("data-key")); }
    });
    function onKey(ev) {
      if (ev.key === "Escape" && document.activeElement !== searchInput) { reset(); }
    }
    document.addEventListener("keydown", onKey);
    var resizeTimer = null;
    function onResize() {
      if (resizeTimer) { return; }
      resizeTimer = setTimeout(function () {
        resizeTimer = null;
        var W = Math.max(200, Math.floor(graph.clientWidth || 0));
        if (W !== lastWidth) { render(true); }
      }, 100);
    }
    window.addEventListener("resize", onResize);

    // ---- start
    var first = options.view !== undefined && options.view !== null && findView(options.view) >= 0
      ? options.view : (views[0].key === undefined ? 0 : views[0].key);
    if (idleOn && withIdle[String(first)]) { first = withIdle[String(first)].key; }
    if (idleBox) {
      idleBox.addEventListener("change", function () { setIdle(idleBox.checked); });
    }
    if (options.search) { searchInput.value = String(options.search); }
    state.matcher = makeMatcher(searchInput.value);
    state.searchText = searchInput.value;
    setView(first);
    if (options.zoom) { zoom(options.zoom); }

    return {
      setView: setView,
      setIdle: setIdle,
      zoom: zoom,
      search: search,
      reset: reset,
      setOrientation: setOrientation,
      state: function () {
        var total = state.flat.tot[0] || 0;
        return {view: String(state.view.key), idle: idleOn, zoom: zoomPath(), zoomNode: state.zoom,
                search: state.searchText, matched: state.matched, total: total,
                orientation: state.orientation, sortKey: state.sortKey,
                sortDir: state.sortDir < 0 ? "desc" : "asc"};
      },
      destroy: function () {
        document.removeEventListener("keydown", onKey);
        window.removeEventListener("resize", onResize);
        container.textContent = "";
      }
    };
  }

  global.OxFlame = {mount: mount, version: "1", _flatten: flatten, _makeMatcher: makeMatcher};
})(typeof window !== "undefined" ? window : this);
