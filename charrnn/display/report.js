(function () {
  "use strict";
  // The page's one script. Its data (#page-data) holds integers, on the scales it names
  // (surprise in milli-nats, probabilities in tenths of a percent, activations in
  // hundredths). Text from the model only ever reaches the page as textContent, never as
  // markup.
  var data = JSON.parse(document.getElementById("page-data").textContent);
  var NATS = data.scales.surprise, PROB = data.scales.probability / 100;  // PROB: per 1%
  var ACT = data.scales.activation;
  var box = document.getElementById("chars");
  var chars = box.children;
  var tip = document.getElementById("tip");
  var select = document.getElementById("colorby");
  var buttons = document.querySelectorAll("button.unit");
  var BLUE = [33, 102, 172], WHITE = [247, 247, 247], RED = [178, 24, 43];
  var chosen = null;

  function color(a) {  // -1 blue, 0 white, +1 red
    var t = Math.min(1, Math.abs(a)), end = a < 0 ? BLUE : RED;
    return "rgb(" + WHITE.map(function (w, k) { return Math.round(w + (end[k] - w) * t); })
      .join(",") + ")";
  }

  function unitNamed(value) {
    for (var k = 0; k < data.units.length; k++) {
      if (String(data.units[k].unit) === String(value)) { return data.units[k]; }
    }
    return null;
  }

  function choose(value) {  // a unit's number, or "" for surprise
    chosen = unitNamed(value);
    for (var i = 0; i < chars.length; i++) {
      var a = chosen ? chosen.activations[i] / ACT : 0;
      chars[i].style.backgroundColor = chosen ? color(a) : "";
      chars[i].style.color = chosen ? (Math.abs(a) > 0.6 ? "#fff" : "#111827") : "";
    }
    box.setAttribute("data-colored-by", chosen ? "unit " + chosen.unit : "surprise");
    select.value = chosen ? String(chosen.unit) : "";
    buttons.forEach(function (b) {
      b.setAttribute("aria-pressed", String(chosen !== null && b.dataset.unit === select.value));
    });
    document.getElementById("legend-surprise").hidden = chosen !== null;
    document.getElementById("legend-unit").hidden = chosen === null;
    document.getElementById("unit-name").textContent = chosen ? "unit " + chosen.unit : "";
  }

  function add(parent, tag, cls, text) {
    var el = document.createElement(tag);
    el.className = cls;
    el.textContent = text;
    parent.appendChild(el);
    return el;
  }

  function percent(p) {  // below one unit of the data: "<0.1%"
    return (p < 1 ? "<" + (1 / PROB).toFixed(1) : (p / PROB).toFixed(1)) + "%";
  }

  function show(i) {
    var s = data.surprise[i], next = data.next[i] || [];
    var shown = chars[i].textContent.replace("\n", "");
    tip.textContent = "";
    add(tip, "div", "head", (shown === " " ? "\u2423" : shown) + "  \u00b7  character " +
        (i + 1).toLocaleString("en") + " of " + chars.length.toLocaleString("en"));
    add(tip, "div", "", s === null ? "the first character: no context, no surprise"
      : "surprise " + (s / NATS).toFixed(3) + " nats = " + (s / NATS / Math.LN2).toFixed(2) +
        " bits (p " + (100 * Math.exp(-s / NATS)).toFixed(1) + "%)");
    if (chosen) {
      add(tip, "div", "", "unit " + chosen.unit + ": " + (chosen.activations[i] / ACT).toFixed(2));
    }
    add(tip, "div", "sub", "the model expects next:");
    for (var k = 0; k + 1 < next.length; k += 2) {
      var row = add(tip, "div", "row", "");
      add(row, "b", "", data.glyphs[next[k]]);
      add(add(row, "span", "track", ""), "span", "bar", "").style.width =
        Math.max(1, next[k + 1] / PROB) + "%";
      add(row, "span", "", percent(next[k + 1]));
    }
    var r = chars[i].getBoundingClientRect();
    tip.hidden = false;
    var left = Math.min(r.left + window.scrollX,
                        document.documentElement.clientWidth - tip.offsetWidth - 8);
    tip.style.left = Math.max(4, left) + "px";
    tip.style.top = (r.bottom + window.scrollY + 6) + "px";
  }

  function indexOf(el) { return Array.prototype.indexOf.call(chars, el); }

  function focusChar(i) {
    if (i < 0 || i >= chars.length) { return; }
    chars[i].tabIndex = 0;
    chars[i].focus();
  }

  box.addEventListener("mouseover", function (e) {
    if (e.target.parentNode === box) { show(indexOf(e.target)); }
  });
  box.addEventListener("mouseleave", function () { tip.hidden = true; });
  box.addEventListener("focusin", function (e) { show(indexOf(e.target)); });
  box.addEventListener("focusout", function (e) { e.target.tabIndex = -1; tip.hidden = true; });
  box.addEventListener("click", function (e) {
    if (e.target.parentNode === box) { focusChar(indexOf(e.target)); }
  });
  box.addEventListener("keydown", function (e) {
    var step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
    if (step) { e.preventDefault(); focusChar(indexOf(e.target) + step); }
    if (e.key === "Escape") { tip.hidden = true; }
  });
  if (chars.length) { chars[0].tabIndex = 0; }

  function drawStrip(canvas, fill) {
    var ctx = canvas.getContext("2d");
    for (var i = 0; i < canvas.width; i++) { ctx.fillStyle = fill(i); ctx.fillRect(i, 0, 1, 1); }
  }

  document.querySelectorAll("canvas.strip").forEach(function (canvas) {
    var unit = unitNamed(canvas.dataset.unit);
    if (unit) {
      drawStrip(canvas, function (i) { return color(unit.activations[i] / ACT); });
      canvas.addEventListener("click", function () { choose(unit.unit); });
    } else {
      drawStrip(canvas, function (i) {
        var t = chars[i].textContent;
        return t.charAt(t.length - 1) === "\n" ? "#111827" : t === " " ? "#ffffff"
          : /^[A-Za-z]$/.test(t) ? "#d1d5db" : "#6b7280";
      });
    }
  });
  buttons.forEach(function (b) {
    b.addEventListener("click", function () {
      choose(b.getAttribute("aria-pressed") === "true" ? "" : b.dataset.unit);
    });
  });
  select.addEventListener("change", function () { choose(select.value); });

  function fromHash() {  // #neuron=K colors the text by unit K (a link can point at it)
    var m = /(?:^#|&)neuron=(\d+)/.exec(window.location.hash);
    choose(m ? m[1] : "");
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
  document.documentElement.setAttribute("data-ready", "true");
}());
