// digitrec drawing page: strokes on a transparent canvas are sent as a PNG to /api/predict,
// which preprocesses them like any other image. Class names come from /api/health.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
const LINE = pad.width / 14; // stroke width: MNIST strokes are about 1/10 of a digit's height
const THROTTLE_MS = 150; // at most one request per this while drawing

let classes = [];
let bars = [];
let stroke = null; // {id, x, y} while a pointer draws
let hasInk = false;
let timer = null;
let busy = false;
let again = false;
let generation = 0; // bumped by Clear, so late answers for an old drawing are dropped

function setMessage(label, status, detail) {
  $("label").textContent = label;
  $("status").textContent = status;
  $("status").className = "status " + status;
  $("detail").textContent = detail;
  document.body.dataset.status = status;
}

function pct(p) {
  return p < 0.001 ? "<0.1%" : (100 * p).toFixed(1) + "%";
}

function buildBars() {
  const box = $("bars");
  box.replaceChildren();
  box.style.gridTemplateColumns = `repeat(${classes.length}, minmax(0, 1fr))`;
  bars = classes.map((name) => {
    const col = document.createElement("div");
    col.className = "bar";
    col.setAttribute("role", "listitem");
    const value = document.createElement("span");
    value.className = "value";
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    track.append(fill);
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    col.append(value, track, label);
    box.append(col);
    return { col, fill, value, name };
  });
}

function showBars(probabilities) {
  let best = -1;
  let bestP = -1;
  bars.forEach((b, i) => {
    const p = probabilities ? probabilities[b.name] : 0;
    if (p > bestP) { bestP = p; best = i; }
  });
  bars.forEach((b, i) => {
    const p = probabilities ? probabilities[b.name] : 0;
    b.fill.style.height = (100 * p).toFixed(1) + "%";
    b.value.textContent = probabilities ? pct(p) : "";
    b.col.title = `${b.name}: ${probabilities ? pct(p) : "–"}`;
    b.col.classList.toggle("top", Boolean(probabilities) && i === best);
  });
}

function showAnswer(a) {
  if (a.status === "blank") {
    setMessage("–", "blank", "No ink found: draw something.");
  } else {
    const others = a.top.slice(1, 3).map((t) => `${t.label} ${pct(t.probability)}`).join(", ");
    const detail = a.status === "unsure"
      ? `Not sure. Best guess ${a.label} (${pct(a.confidence)}); also possible: ${others}.`
      : `Confidence ${pct(a.confidence)}.` + (others ? ` Next: ${others}.` : "");
    setMessage(a.label, a.status, detail);
  }
  showBars(a.status === "blank" ? null : a.probabilities);
  if (a.preview) $("preview").src = "data:image/png;base64," + a.preview;
  document.body.dataset.answers = String(Number(document.body.dataset.answers || 0) + 1);
}

async function send(body) {
  const mine = generation;
  try {
    const r = await fetch("/api/predict?top_k=3", { method: "POST", body,
      headers: { "Content-Type": body.type || "application/octet-stream" } });
    const a = await r.json();
    if (mine !== generation) return;
    if (!r.ok) {
      setMessage("!", "error", a.detail || `the server answered ${r.status}`);
      return;
    }
    showAnswer(a);
  } catch (err) {
    if (mine === generation) setMessage("!", "error", `no answer from the server (${err.message})`);
  }
}

function canvasBlob() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

// One request at a time; strokes made meanwhile are sent when it returns.
async function predictNow() {
  clearTimeout(timer);
  timer = null;
  if (!hasInk) return settled();
  if (busy) { again = true; return; }
  busy = true;
  try {
    await send(await canvasBlob());
  } finally {
    busy = false;
    if (again) { again = false; predictNow(); } else settled();
  }
}

// data-pending tells tests (and styles) whether an answer for the latest strokes is on its way.
function settled() {
  if (timer === null && !busy) document.body.dataset.pending = "0";
}

function predictSoon() {
  document.body.dataset.pending = "1";
  if (timer === null) timer = setTimeout(predictNow, THROTTLE_MS);
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return { x: (e.clientX - r.left) * (pad.width / r.width), y: (e.clientY - r.top) * (pad.height / r.height) };
}

function segment(a, b) {
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x + 0.01, b.y); // a zero-length line would draw nothing: a click makes a dot
  ctx.stroke();
}

pad.addEventListener("pointerdown", (e) => {
  if (e.pointerType === "mouse" && e.button !== 0) return;
  e.preventDefault();
  try { pad.setPointerCapture(e.pointerId); } catch (err) { /* synthetic events have no capture */ }
  const p = point(e);
  stroke = { id: e.pointerId, ...p };
  segment(p, p);
  hasInk = true;
  predictSoon();
});

pad.addEventListener("pointermove", (e) => {
  if (!stroke || e.pointerId !== stroke.id) return;
  e.preventDefault();
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events.length ? events : [e]) {
    const p = point(ev);
    segment(stroke, p);
    stroke.x = p.x;
    stroke.y = p.y;
  }
  predictSoon();
});

function endStroke(e) {
  if (!stroke || e.pointerId !== stroke.id) return;
  stroke = null;
  predictNow();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
pad.addEventListener("lostpointercapture", endStroke);

function clearPad() {
  generation += 1;
  clearTimeout(timer);
  timer = null;
  again = false;
  ctx.clearRect(0, 0, pad.width, pad.height);
  hasInk = false;
  settled();
  $("preview").removeAttribute("src");
  showBars(null);
  setMessage("–", "idle", `Draw one ${noun()} in the box.`);
}

function noun() {
  return classes.length && classes.every((c) => /^[0-9]$/.test(c)) ? "digit" : "character";
}

$("clear").addEventListener("click", clearPad);
document.addEventListener("keydown", (e) => { if (e.key === "Escape") clearPad(); });
$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  if (f) { generation += 1; send(f); }
});

async function start() {
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#111";
  ctx.lineWidth = LINE;
  try {
    const r = await fetch("/api/health");
    const h = await r.json();
    classes = h.classes;
    $("model").textContent = `${h.model || "model"} trained on ${h.dataset}, ${classes.length} classes` +
      (h.test_accuracy ? `, ${(100 * h.test_accuracy).toFixed(2)}% test accuracy` : "");
  } catch (err) {
    $("model").textContent = `the server did not answer (${err.message})`;
    return;
  }
  for (const el of document.querySelectorAll(".noun")) el.textContent = noun();
  buildBars();
  showBars(null);
  setMessage("–", "idle", `Draw one ${noun()} in the box.`);
  document.body.dataset.ready = "1";
}

start();
