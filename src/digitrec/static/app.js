// digitrec drawing page: strokes on a transparent canvas are sent as a PNG to /api/predict (one
// character, with its explanation) or /api/read (a number, on a wide pad), which preprocess them
// like any other image. The strokes are sent redrawn with a pen sized to what was drawn (about a
// tenth of its height, as MNIST's strokes are), whatever brush shows them here: a small digit
// stays a digit, not a blob. A file (chosen, dropped or pasted) is sent as it is, and shown with
// the ink the server read. Class names, the size limit and whether corrections are collected
// come from /api/health. Hooks for tests: document.body.dataset.ready, .pending, .answers,
// .status, .mode ("draw" or "upload") and .kind ("char" or "number").
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
const THROTTLE_MS = 150; // at most one request per this while drawing

let classes = [];
let bars = [];
let maxUpload = 0; // bytes; from /api/health, the same limit as the API's and the CLI's
let strokes = []; // [{width, points: [{x, y}]}]: what is drawn, for undo
let stroke = null; // the stroke a pointer is drawing, with its pointer id
let timer = null;
let busy = false;
let again = false;
let generation = 0; // bumped by Clear, Undo and uploads, so late answers for old input are dropped
let uploadUrl = null;
let kind = "char"; // what is read: one character, or a number
let collect = false; // the server keeps corrections (serve --collect)
let lastPreview = null; // the model input of the answer shown, sent back with a correction
let shownAnswer = null; // the answer shown: {label} or, in number mode, {characters, sent (the image read)}
const PEN = 0.11; // the pen the model is shown, as a share of the drawing's height
const SIZE = { char: [280, 280], number: [840, 280] };

const STATUS_WORDS = { not_a_digit: "not a digit" };

function setMessage(label, status, detail) {
  $("label").textContent = label;
  $("status").textContent = STATUS_WORDS[status] || status;
  $("status").className = "status " + status;
  $("detail").textContent = detail;
  document.body.dataset.status = status;
}

function pct(p) {
  return p < 0.001 ? "<0.1%" : (100 * p).toFixed(1) + "%";
}

// A bar's value: whole percents where the bars are narrow (a phone), so that neighbours do not touch.
const narrow = window.matchMedia("(max-width: 560px)");
function barValue(p) {
  if (!narrow.matches) return pct(p);
  return p < 0.005 ? "0" : Math.round(100 * p) + "%";
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function sentence(text) {
  return text ? text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".") : "";
}

function megabytes(n) {
  return (n / 1e6).toFixed(n < 1e7 ? 1 : 0) + " MB";
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

function showBars(probabilities, highlight = true) {
  if (probabilities && !Object.keys(probabilities).length) probabilities = null;
  let best = -1;
  let bestP = -1;
  bars.forEach((b, i) => {
    const p = probabilities ? probabilities[b.name] : 0;
    if (p > bestP) { bestP = p; best = i; }
  });
  bars.forEach((b, i) => {
    const p = probabilities ? probabilities[b.name] : 0;
    b.fill.style.height = (100 * p).toFixed(1) + "%";
    b.value.textContent = probabilities ? barValue(p) : "";
    b.col.title = `${b.name}: ${probabilities ? pct(p) : "–"}`;
    b.col.classList.toggle("top", Boolean(probabilities) && highlight && i === best);
  });
}

function showAnswer(a, fromFile) {
  if (a.status === "blank") {
    setMessage("–", "blank", fromFile
      ? "No ink found in this image: it looks empty or too faint. Try a photo with darker, larger writing."
      : "No ink found: draw something.");
  } else if (a.label === null) { // not a digit: said in words, never as a big digit
    setMessage("–", a.status, sentence(a.reason) || `This does not look like a ${noun()}.`);
  } else {
    const others = a.top.slice(1, 3).map((t) => `${t.label} ${pct(t.probability)}`).join(", ");
    const detail = a.status === "unsure"
      ? `Not sure: ${a.reason}. Best guess ${a.label}; also possible: ${others}.`
      : `Confidence ${pct(a.confidence)}.` + (others ? ` Next: ${others}.` : "");
    setMessage(a.label, a.status, detail);
  }
  showBars(a.probabilities, a.label !== null);
  showPreview(a.status === "blank" ? null : a.preview);
  lastPreview = a.top && a.top.length ? a.preview || null : null; // a model input with ink in it
  shownAnswer = { label: a.label };
  showWhy(a.explanation);
  showCorrect();
  if (fromFile) showBox(a.input, []);
  document.body.dataset.answers = String(Number(document.body.dataset.answers || 0) + 1);
}

function showPreview(png) {
  if (png) $("preview").src = "data:image/png;base64," + png; else $("preview").removeAttribute("src");
  $("seen").hidden = !png; // no caption without its picture
}

// A number: the whole string, and each character's box (with its label) over what was drawn or sent.
function showReading(r, fromFile, sent) {
  if (r.status === "blank") {
    setMessage("–", "blank", fromFile ? "No ink found in this image." : `No ink found: write a number.`);
  } else {
    const unsure = r.characters.filter((c) => c.status !== "ok").map((c) => c.label || "?");
    setMessage(readingText(r), r.status, `${plural(r.characters.length, "character")}, ` +
      `confidence ${pct(r.confidence)}` + (unsure.length ? `; not sure of: ${unsure.join(", ")}.` : "."));
  }
  const boxes = r.characters.map((c) => ({ box: c.box, label: c.label || "?", status: c.status }));
  if (fromFile) showBox(r.input, boxes); else drawBoxes($("boxes"), r.input, boxes);
  shownAnswer = { characters: r.characters, sent };
  showCorrect();
  document.body.dataset.answers = String(Number(document.body.dataset.answers || 0) + 1);
}

// The text read, line by line, with "?" where a character is no digit (the server leaves it out).
function readingText(r) {
  let at = 0;
  return r.lines.map((n) => r.characters.slice(at, (at += n)).map((c) => c.label || "?").join("")).join("\n");
}

function drawBoxes(layer, input, boxes) {
  layer.replaceChildren(...boxes.map(({ box, label, status }) => {
    const [left, top, right, bottom] = box;
    const el = document.createElement("div");
    el.className = "char" + (status === "ok" ? "" : " unsure");
    Object.assign(el.style, { left: `${100 * left / input.width}%`, top: `${100 * top / input.height}%`,
                              width: `${100 * (right - left) / input.width}%`,
                              height: `${100 * (bottom - top) / input.height}%` });
    const name = document.createElement("span");
    name.textContent = label;
    el.append(name);
    return el;
  }));
}

// What speaks for the answer and for the runner-up, as the server's saliency pictures.
function showWhy(e) {
  $("why").hidden = !e;
  if (!e) return;
  $("why-label").src = "data:image/png;base64," + e.input_png;
  $("why-runner").src = "data:image/png;base64," + e.runner_up_png;
  $("why-label-caption").textContent = `why ${e.label}`;
  $("why-runner-caption").textContent = `why not ${e.runner_up}`;
}

// Corrections (serve --collect): one row of buttons for a character, one per character of a
// number. One correction per answer: the chosen button stays marked and the row is done; a
// "correction" equal to the answer is not stored.
function showCorrect() {
  const rows = $("correct-rows");
  const chars = kind === "number" && shownAnswer && shownAnswer.characters ? shownAnswer.characters : null;
  const can = collect && (chars ? chars.length > 0 && Boolean(shownAnswer.sent) : Boolean(lastPreview));
  $("correct").hidden = !can;
  if (!can) { rows.replaceChildren(); return; }
  $("correct-lead").textContent = chars ? "Wrong? Correct any character:" : "Wrong? It is";
  rows.replaceChildren(...(chars
    ? chars.map((c, i) => correctRow(c.label, `${ordinal(i + 1)} (${c.label || "?"}) is`, () => cropOf(c.box), i))
    : [correctRow(shownAnswer.label, "", previewBlob, 0)]));
}

function ordinal(n) {
  const tens = n % 100 > 10 && n % 100 < 14;
  return n + (tens ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
}

function correctRow(answer, name, image, index) {
  const row = document.createElement("div");
  row.className = "correct-row";
  row.dataset.index = String(index);
  const result = document.createElement("span");
  result.className = "correct-result";
  result.setAttribute("aria-live", "polite");
  const state = { done: false, busy: false };
  const buttons = classes.map((label) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.title = `It is ${label}: keep this as a correction`;
    b.setAttribute("aria-pressed", "false");
    b.addEventListener("click", () => sendCorrection({ label, answer, image, state, buttons, button: b, result }));
    return b;
  });
  const box = document.createElement("span");
  box.className = "correct-buttons";
  box.append(...buttons);
  if (name) {
    const tag = document.createElement("span");
    tag.className = "correct-name";
    tag.textContent = name;
    row.append(tag);
  }
  row.append(box, result);
  return row;
}

async function sendCorrection({ label, answer, image, state, buttons, button, result }) {
  if (state.done || state.busy) return; // one correction per answer, and a double click sends once
  if (label === answer) {
    result.textContent = `The model answered ${label} already: nothing to correct, nothing stored.`;
    return;
  }
  state.busy = true;
  const mine = generation;
  result.textContent = "Saving…";
  try {
    const sent = await image();
    const r = await fetch(`/api/feedback?label=${encodeURIComponent(label)}` + (sent.input ? "&input=1" : ""), {
      method: "POST", headers: { "Content-Type": sent.type }, body: sent.body });
    if (mine !== generation) return;
    if (r.ok) {
      state.done = true;
      const kept = (await r.json()).samples;
      button.setAttribute("aria-pressed", "true");
      button.classList.add("chosen");
      for (const b of buttons) b.disabled = b !== button;
      result.textContent = `Saved as ${label}: thank you (${plural(kept, "correction")} kept for fine-tuning).`;
      document.body.dataset.corrections = String(Number(document.body.dataset.corrections || 0) + 1);
    } else {
      result.textContent = await errorText(r);
    }
  } catch (err) {
    result.textContent = `Not saved: ${err.message}.`;
  } finally {
    state.busy = false;
  }
}

// The image a correction carries: the 28x28 model input of one character...
async function previewBlob() {
  return { input: true, type: "application/json",
           body: JSON.stringify({ image: "data:image/png;base64," + lastPreview }) };
}

// ...or a number's character: its box cut from the image the answer was read from, with a margin.
async function cropOf(box) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(shownAnswer.sent);
  } catch (err) {
    throw new Error("this browser cannot open the image to cut the character out");
  }
  const [left, top, right, bottom] = box;
  const m = Math.round(0.15 * Math.max(right - left, bottom - top));
  const [x, y] = [Math.max(0, left - m), Math.max(0, top - m)];
  const [w, h] = [Math.min(bitmap.width, right + m) - x, Math.min(bitmap.height, bottom + m) - y];
  const out = document.createElement("canvas");
  [out.width, out.height] = [w, h];
  const c = out.getContext("2d");
  c.fillStyle = "#fff"; // a drawing is transparent: put it on paper
  c.fillRect(0, 0, w, h);
  c.drawImage(bitmap, x, y, w, h, 0, 0, w, h);
  return { input: false, type: "image/png", body: await new Promise((resolve) => out.toBlob(resolve, "image/png")) };
}

function setKind(next) {
  if (next === kind) return;
  kind = next;
  [pad.width, pad.height] = SIZE[kind];
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#111";
  document.body.dataset.kind = kind;
  $("kind-char").setAttribute("aria-pressed", String(kind === "char"));
  $("kind-number").setAttribute("aria-pressed", String(kind === "number"));
  pad.setAttribute("aria-label", kind === "number"
    ? "drawing area: write a number, several characters side by side, even several lines"
    : "drawing area: draw one character with a mouse, pen or finger");
  clearPad();
}

// The server's error as a sentence: its JSON detail, or what the status line says.
async function errorText(r) {
  let detail = "";
  try {
    const body = await r.json();
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (err) { /* not JSON: a proxy's page, say */ }
  const sentence = detail || `the server answered ${r.status} ${r.statusText || ""}`.trim();
  return sentence.charAt(0).toUpperCase() + sentence.slice(1) + (/[.!?]$/.test(sentence) ? "" : ".");
}

async function send(body, fromFile) {
  const mine = generation;
  const url = kind === "number" ? "/api/read?top_k=3" : "/api/predict?top_k=3&explain=1";
  try {
    const r = await fetch(url, { method: "POST", body,
      headers: { "Content-Type": body.type || "application/octet-stream" } });
    if (mine !== generation) return;
    if (!r.ok) {
      const text = await errorText(r);
      if (mine === generation) setMessage("!", "error", text);
      return;
    }
    const a = await r.json();
    if (mine !== generation) return;
    if (kind === "number") showReading(a, fromFile, body); else showAnswer(a, fromFile);
  } catch (err) {
    if (mine === generation) setMessage("!", "error", `No answer from the server (${err.message}).`);
  }
}

// The strokes redrawn for the model with a pen sized to the drawing (its strokes' tallest
// height, so one stroke per character or several lines of them give the same pen).
function canvasBlob() {
  const out = document.createElement("canvas");
  out.width = pad.width;
  out.height = pad.height;
  const c = out.getContext("2d");
  const tall = Math.max(...strokes.map((s) => {
    const ys = s.points.map((p) => p.y);
    const xs = s.points.map((p) => p.x);
    return Math.max(Math.max(...ys) - Math.min(...ys), (Math.max(...xs) - Math.min(...xs)) / 2);
  }));
  Object.assign(c, { lineCap: "round", lineJoin: "round", strokeStyle: "#111",
                     lineWidth: Math.min(40, Math.max(2, PEN * tall)) });
  for (const s of strokes) {
    c.beginPath();
    s.points.forEach((p, i) => (i ? c.lineTo(p.x, p.y) : c.moveTo(p.x, p.y)));
    if (s.points.length === 1) c.lineTo(s.points[0].x + 0.01, s.points[0].y); // a click: a dot
    c.stroke();
  }
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

// One request at a time; strokes made meanwhile are sent when it returns.
async function predictNow() {
  clearTimeout(timer);
  timer = null;
  if (!strokes.length) return settled();
  if (busy) { again = true; return; }
  busy = true;
  try {
    await send(await canvasBlob(), false);
  } finally {
    busy = false;
    if (again) { again = false; predictNow(); } else settled();
  }
}

// data-pending tells tests (and styles) whether an answer for the latest input is on its way.
function settled() {
  if (timer === null && !busy) document.body.dataset.pending = "0";
}

function predictSoon() {
  document.body.dataset.pending = "1";
  if (timer === null) timer = setTimeout(predictNow, THROTTLE_MS);
}

// ----------------------------------------------------------------------------- drawing

function point(e) {
  const r = pad.getBoundingClientRect();
  return { x: (e.clientX - r.left) * (pad.width / r.width), y: (e.clientY - r.top) * (pad.height / r.height) };
}

function segment(width, a, b) {
  ctx.lineWidth = width;
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x + 0.01, b.y); // a zero-length line would draw nothing: a click makes a dot
  ctx.stroke();
}

function redraw() {
  ctx.clearRect(0, 0, pad.width, pad.height);
  for (const s of strokes) {
    s.points.forEach((p, i) => segment(s.width, s.points[Math.max(0, i - 1)], p));
  }
  $("undo").disabled = strokes.length === 0;
}

function brushWidth() {
  return Number($("brush").value);
}

pad.addEventListener("pointerdown", (e) => {
  if (e.pointerType === "mouse" && e.button !== 0) return;
  e.preventDefault();
  try { pad.setPointerCapture(e.pointerId); } catch (err) { /* synthetic events have no capture */ }
  if (document.body.dataset.mode === "upload") { leaveUpload(); forget(); }
  const p = point(e);
  stroke = { id: e.pointerId, width: brushWidth(), points: [p] };
  strokes.push({ width: stroke.width, points: stroke.points });
  segment(stroke.width, p, p);
  $("undo").disabled = false;
  predictSoon();
});

pad.addEventListener("pointermove", (e) => {
  if (!stroke || e.pointerId !== stroke.id) return;
  e.preventDefault();
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events.length ? events : [e]) {
    const p = point(ev);
    segment(stroke.width, stroke.points[stroke.points.length - 1], p);
    stroke.points.push(p);
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

// Every new input (a stroke after a photo, a photo, Clear, a mode) forgets the answer shown:
// its boxes over the pad and over the photo, preview, bars, explanation and correction.
function forget() {
  showPreview(null);
  $("boxes").replaceChildren();
  const layer = $("upload-frame").querySelector(".boxes");
  if (layer) layer.replaceChildren();
  lastPreview = null;
  shownAnswer = null;
  showWhy(null);
  showCorrect();
  showBars(null);
}

function idle() {
  forget();
  setMessage("–", "idle", kind === "number" ? "Write a number on the pad: several characters, even several lines."
    : `Draw one ${noun()} in the box.`);
}

function clearPad() {
  generation += 1;
  clearTimeout(timer);
  timer = null;
  again = false;
  strokes = [];
  stroke = null;
  redraw();
  leaveUpload();
  settled();
  idle();
}

function undo() {
  if (document.body.dataset.mode === "upload" || !strokes.length) return;
  generation += 1;
  strokes.pop();
  stroke = null;
  redraw();
  if (strokes.length) predictSoon(); else { settled(); idle(); }
}

function noun() {
  return classes.length && classes.every((c) => /^[0-9]$/.test(c)) ? "digit" : "character";
}

// ----------------------------------------------------------------------------- files

function leaveUpload() {
  $("upload").hidden = true;
  $("upload-box").hidden = true;
  $("upload-caption").hidden = true;
  $("file").value = ""; // the name of a file no longer shown would mislead
  if (uploadUrl) { URL.revokeObjectURL(uploadUrl); uploadUrl = null; }
  document.body.dataset.mode = "draw";
}

function sendFile(f) {
  if (!f) return;
  generation += 1;
  strokes = [];
  redraw();
  if (maxUpload && f.size > maxUpload) {
    leaveUpload();
    setMessage("!", "error", `${f.name || "This image"} is ${megabytes(f.size)}; the limit is ${megabytes(maxUpload)}. ` +
      "Send a smaller image (most phones can share a smaller size).");
    return;
  }
  if (!f.size) { setMessage("!", "error", `${f.name || "The file"} is empty.`); return; }
  document.body.dataset.mode = "upload";
  forget(); // the drawing's boxes and answer go with it
  $("upload").hidden = false; // over the pad; drawing on it goes back to drawing
  $("upload-box").hidden = true;
  $("upload-caption").hidden = false;
  $("upload-frame").style.width = "";
  $("upload-frame").style.aspectRatio = "";
  if (uploadUrl) URL.revokeObjectURL(uploadUrl);
  uploadUrl = URL.createObjectURL(f);
  $("upload-image").src = uploadUrl;
  $("upload-caption").textContent = `${f.name || "pasted image"}, ${megabytes(f.size)}`;
  setMessage("…", "pending", "Reading the image…");
  document.body.dataset.pending = "1";
  send(f, true).finally(() => { document.body.dataset.pending = "0"; });
}

// The box of ink the server found (a number: each character's), over the image, in percent of
// the image's own size.
function showBox(input, boxes) {
  const frame = $("upload-frame"); // the image's own shape, as large as fits the square
  frame.style.aspectRatio = `${input.width} / ${input.height}`;
  frame.style.width = `min(100%, ${(100 * input.width / input.height).toFixed(2)}cqw)`;
  const box = $("upload-box");
  let layer = frame.querySelector(".boxes");
  if (!layer) { layer = document.createElement("div"); layer.className = "boxes"; frame.append(layer); }
  drawBoxes(layer, input, boxes);
  if (!input.box) { box.hidden = true; return; }
  const [left, top, right, bottom] = input.box;
  box.style.left = (100 * left / input.width) + "%";
  box.style.top = (100 * top / input.height) + "%";
  box.style.width = (100 * (right - left) / input.width) + "%";
  box.style.height = (100 * (bottom - top) / input.height) + "%";
  box.hidden = false;
  $("upload-caption").textContent += ` — ${input.width}×${input.height} px, ${input.format || "image"}; ` +
    "the box is the ink the model read. Draw in the square to go back to drawing.";
}

function imageIn(items) {
  for (const item of items || []) {
    const f = item.getAsFile ? (item.kind === "file" ? item.getAsFile() : null) : item;
    if (f && (f.type.startsWith("image/") || /\.(heic|heif)$/i.test(f.name || ""))) return f;
  }
  return null;
}

$("file").addEventListener("change", () => sendFile($("file").files[0]));
$("upload-image").addEventListener("error", () => {
  $("upload-image").removeAttribute("src"); // e.g. HEIC, which browsers do not show: the box stays
  $("upload-frame").classList.add("unshown");
});
$("upload-image").addEventListener("load", () => $("upload-frame").classList.remove("unshown"));

document.addEventListener("paste", (e) => {
  const f = imageIn(e.clipboardData && e.clipboardData.items);
  if (f) { e.preventDefault(); sendFile(f); }
});
document.addEventListener("dragover", (e) => {
  e.preventDefault();
  $("drop-hint").hidden = false;
});
document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) $("drop-hint").hidden = true; });
document.addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop-hint").hidden = true;
  const f = imageIn(e.dataTransfer && e.dataTransfer.files);
  if (f) sendFile(f);
  else setMessage("!", "error", "That is not an image file.");
});

$("clear").addEventListener("click", clearPad);
$("kind-char").addEventListener("click", () => setKind("char"));
$("kind-number").addEventListener("click", () => setKind("number"));
$("undo").addEventListener("click", undo);
$("brush").addEventListener("input", () => { $("brush-size").textContent = $("brush").value; });
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") clearPad();
  else if ((e.ctrlKey || e.metaKey) && !e.shiftKey && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
});

async function start() {
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#111";
  document.body.dataset.mode = "draw";
  try {
    const r = await fetch("/api/health");
    if (!r.ok) throw new Error(await errorText(r));
    const h = await r.json();
    classes = h.classes;
    maxUpload = h.max_upload || 0;
    collect = Boolean(h.collect);
    $("model").textContent = `${h.model || "model"} trained on ${h.dataset}, ${classes.length} classes` +
      (h.test_accuracy ? `, ${(100 * h.test_accuracy).toFixed(2)}% test accuracy` : "");
    if (maxUpload) $("limit").textContent = `up to ${megabytes(maxUpload)}; PNG, JPEG, HEIC, WebP, GIF, BMP, TIFF`;
  } catch (err) {
    $("model").textContent = `the server did not answer (${err.message})`;
    return;
  }
  for (const el of document.querySelectorAll(".noun")) el.textContent = noun();
  buildBars();
  document.body.dataset.kind = kind;
  idle();
  document.body.dataset.ready = "1";
}

start();
