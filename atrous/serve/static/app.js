// The atrous page: upload an image, draw the segmentation over it, and show where the
// network looks from a clicked pixel. Plain JS, no build step; talks to /v1/* only.
"use strict";

const state = {
  model: null,      // GET /v1/models entry
  bitmap: null,     // the uploaded image, decoded by the browser
  width: 0,
  height: 0,
  labels: null,     // Uint8Array of class indices, row-major
  enabled: new Set(),
  click: null,      // {x, y} of the last clicked pixel
  imageId: null,    // the server's id of the upload: the ERF is computed on it
  rfJob: null,      // AbortController of the receptive-field request in flight
  field: null,      // the last /v1/receptive-field answer shown
  coverageView: null, // key of the coverage view the reader chose ("image", "stage:<name>")
  segmentJob: null, // AbortController of the segmentation in flight
};

const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// A fetch that fails (server gone, connection refused) rejects instead of answering;
// say so in words and keep the page usable.
function networkError(error) {
  if (error && error.name === "AbortError") return null;  // replaced by a newer request
  return `could not reach the server (${error && error.message ? error.message : error}); ` +
    "is `atrous serve` still running?";
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : response.statusText;
  } catch (_) {
    return response.statusText;
  }
}

async function waitForModel() {
  const status = $("status");
  for (;;) {
    try {
      const ready = await fetch("/readyz");
      if (ready.ok) break;
      const body = await ready.json();
      if (body.status === "failed") {
        status.textContent = "the model failed to load: " + body.detail;
        status.dataset.state = "failed";
        return;
      }
    } catch (_) { /* server restarting: keep waiting */ }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  let info;
  try {
    const response = await fetch("/v1/models");
    if (!response.ok) throw new Error(`${response.status}: ${await errorText(response)}`);
    info = (await response.json()).models[0];
  } catch (error) {
    status.textContent = "the server did not describe its model: " + error.message;
    status.dataset.state = "failed";
    return;
  }
  state.model = info;
  info.classes.forEach((c) => state.enabled.add(c.index));
  $("model-name").textContent = `${info.name} · ${info.num_classes} classes · output stride ${info.output_stride ?? "?"}`;
  const mb = (info.limits.max_upload_bytes / 1048576).toFixed(0);
  const mp = (info.limits.max_image_pixels / 1e6).toFixed(0);
  $("limits").textContent = `Up to ${mb} MB and ${mp} megapixels.`;
  status.textContent = "ready";
  status.dataset.state = "ready";
  watchHealth();
}

// Once ready, ask /healthz every 2 s: the header says "server unreachable" within a few
// seconds of the server stopping, and "ready" again when it is back.
function watchHealth() {
  const status = $("status");
  setInterval(async () => {
    if (status.dataset.state === "working") return;
    const job = new AbortController();
    const timer = setTimeout(() => job.abort(), 1500);
    let up = false;
    try {
      up = (await fetch("/healthz", { signal: job.signal, cache: "no-store" })).ok;
    } catch (_) {
      up = false;
    } finally {
      clearTimeout(timer);
    }
    if (!up && status.dataset.state !== "offline") {
      status.textContent = "server unreachable";
      status.dataset.state = "offline";
    } else if (up && status.dataset.state === "offline") {
      status.textContent = "ready";
      status.dataset.state = "ready";
    }
  }, 2000);
}

function decodeLabels(dataUrl) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = img.width;
      canvas.height = img.height;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0);
      const rgba = ctx.getImageData(0, 0, img.width, img.height).data;
      const labels = new Uint8Array(img.width * img.height);
      for (let i = 0; i < labels.length; i++) labels[i] = rgba[4 * i];
      resolve(labels);
    };
    img.onerror = () => reject(new Error("could not decode the mask"));
    img.src = dataUrl;
  });
}

function drawOverlay() {
  const canvas = $("view");
  const ctx = canvas.getContext("2d");
  canvas.width = state.width;
  canvas.height = state.height;
  ctx.drawImage(state.bitmap, 0, 0, state.width, state.height);
  if (!state.labels) return;
  const alpha = parseFloat($("alpha").value);
  const frame = ctx.getImageData(0, 0, state.width, state.height);
  const px = frame.data;
  const colours = state.model.classes.map((c) => c.color);
  for (let i = 0; i < state.labels.length; i++) {
    const label = state.labels[i];
    if (!state.enabled.has(label)) continue;
    const colour = colours[label];
    const j = 4 * i;
    px[j] = (1 - alpha) * px[j] + alpha * colour[0];
    px[j + 1] = (1 - alpha) * px[j + 1] + alpha * colour[1];
    px[j + 2] = (1 - alpha) * px[j + 2] + alpha * colour[2];
  }
  ctx.putImageData(frame, 0, 0);
  if (state.click) drawMarker(ctx, state.click.x, state.click.y, state.width);
}

function drawMarker(ctx, x, y, size) {
  const r = Math.max(4, Math.round(Math.max(size, 64) / 60));
  ctx.save();
  ctx.lineWidth = Math.max(1, r / 3);
  ctx.strokeStyle = "#fff";
  ctx.beginPath();
  ctx.arc(x + 0.5, y + 0.5, r, 0, 2 * Math.PI);
  ctx.stroke();
  ctx.strokeStyle = "#e6194b";
  ctx.lineWidth = Math.max(1, r / 6);
  ctx.stroke();
  ctx.restore();
}

function renderLegend(classes) {
  const body = $("legend").querySelector("tbody");
  body.replaceChildren();
  for (const c of classes) {
    const row = document.createElement("tr");
    row.dataset.index = c.index;
    if (c.pixels === 0) row.classList.add("absent");
    const toggle = document.createElement("input");
    toggle.type = "checkbox";
    toggle.checked = state.enabled.has(c.index);
    toggle.setAttribute("aria-label", `show ${c.name}`);
    toggle.addEventListener("change", () => {
      if (toggle.checked) state.enabled.add(c.index); else state.enabled.delete(c.index);
      drawOverlay();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${c.color.join(",")})`;
    const cell = document.createElement("td");
    cell.append(toggle, swatch);
    const name = document.createElement("td");
    name.textContent = c.name;
    const area = document.createElement("td");
    area.className = "area";
    area.textContent = `${(100 * c.fraction).toFixed(1)} %`;
    row.append(cell, name, area);
    body.append(row);
  }
}

async function segmentClip(file) {
  showError("");
  $("result").hidden = true;
  $("rf").hidden = true;
  const status = $("status");
  status.textContent = "segmenting the clip…";
  status.dataset.state = "working";
  try {
    const form = new FormData();
    form.append("file", file);
    const response = await fetch("/v1/segment-video?format=overlay", { method: "POST", body: form });
    if (!response.ok) {
      showError(`${response.status}: ${await errorText(response)}`);
      $("clip").hidden = true;
      return;
    }
    const player = $("clip-video");
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(await response.blob());
    $("clip").hidden = false;
    player.play().catch(() => {});
  } catch (error) {
    showError(networkError(error) || String(error));
  } finally {
    status.textContent = "ready";
    status.dataset.state = "ready";
  }
}

function segmentAny(file) {
  if (file.type.startsWith("video/")) return segmentClip(file);
  $("clip").hidden = true;
  return segment(file);
}

async function segment(file) {
  showError("");
  $("rf").hidden = true;
  $("result").hidden = true;  // never show the last image's result under a new upload
  $("rf-title").textContent = "Receptive field";
  $("rf-stats").textContent = "";
  state.field = null;
  if (state.rfJob) state.rfJob.abort();
  if (state.segmentJob) state.segmentJob.abort();
  const job = new AbortController();
  state.segmentJob = job;
  state.click = null;
  const view = $("view");
  view.dataset.state = "working";
  const status = $("status");
  status.textContent = "segmenting…";
  status.dataset.state = "working";
  try {
    try {
      state.bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch (_) {
      state.bitmap = null;  // the browser cannot read it; the server will say why
    }
    const form = new FormData();
    form.append("file", file);
    const response = await fetch("/v1/segment?format=json&mask=true",
                                 { method: "POST", body: form, signal: job.signal });
    if (!response.ok) {
      showError(`${response.status}: ${await errorText(response)}`);
      status.textContent = "ready";
      status.dataset.state = "ready";
      view.dataset.state = "error";
      return;
    }
    const result = await response.json();
    state.width = result.width;
    state.height = result.height;
    state.imageId = result.image_id;
    state.labels = await decodeLabels(result.mask_png);
    $("result").hidden = false;
    renderLegend(result.classes);
    drawOverlay();
    $("timing").textContent = `${result.width}×${result.height} px, inference ${result.elapsed_ms} ms`;
    status.textContent = "ready";
    status.dataset.state = "ready";
    view.dataset.state = "segmented";
  } catch (error) {
    const message = networkError(error);
    if (message === null) return;  // a newer upload took over
    showError(message);
    status.textContent = "server unreachable";
    status.dataset.state = "offline";
    view.dataset.state = "error";
  } finally {
    if (state.segmentJob === job) state.segmentJob = null;
  }
}

// -- the receptive-field explorer -------------------------------------------------------

// Path counts in one format everywhere (statistics and colour bars): below 1000 as
// they are (3 significant digits), above as m × 10ⁿ. Counts arrive as numbers or as
// strings (exact integers beyond 2^53); three digits are all a reader compares.
const SUPERSCRIPTS = { "-": "⁻", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹" };
function formatCount(value) {
  const count = Number(value);
  if (!(count > 0)) return "0";
  if (count < 1000) return String(Number(count.toPrecision(3)));
  const [mantissa, exponent] = count.toExponential(2).split("e");
  const power = String(Number(exponent)).split("").map((c) => SUPERSCRIPTS[c]).join("");
  return `${mantissa} × 10${power}`;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("could not decode a map"));
    image.src = url;
  });
}

// The coverage views of one answer: each dilated stage on the map it reads, then the
// whole network at the image. A map of N positions spans the image's width W, one
// position per W / N pixels (about `stride`): the same correspondence the network's
// bilinear upsampling of its logits uses, and the one the server maps the click with.
function coverageViews(field) {
  const views = field.stages.map((stage) => {
    const cellX = state.width / stage.grid.width;
    const cellY = state.height / stage.grid.height;
    return {
      key: `stage:${stage.name}`,
      label: `${stage.title} · rates ${stage.rates.join(", ")}`,
      stage, cellX, cellY,
      columns: stage.grid.width, rows: stage.grid.height,
      box: stage.box, holes: stage.hole_fraction, paths: stage.paths, png: stage.png,
    };
  });
  const size = field.analysed_size;
  views.push({
    key: "image", label: "whole network, at the image", stage: null,
    cellX: state.width / size.width, cellY: state.height / size.height,
    columns: size.width, rows: size.height,
    box: field.coverage.box, holes: field.coverage.hole_fraction,
    paths: field.coverage.paths, png: field.coverage.png,
  });
  return views;
}

// The view shown first: the one the reader chose last, else the one with most holes
// (the deepest on a tie), which is where gridding shows.
function pickView(views) {
  const kept = views.find((view) => view.key === state.coverageView);
  if (kept) return kept;
  let best = views[views.length - 1];
  for (const view of views) if (view.holes > best.holes || (view.holes === best.holes && view.stage)) best = view;
  return best;
}

function drawBase(canvas) {
  canvas.width = state.width;
  canvas.height = state.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(state.bitmap, 0, 0, state.width, state.height);
  ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
  ctx.fillRect(0, 0, state.width, state.height);
  ctx.imageSmoothingEnabled = false;  // keep the cells and holes sharp
  return ctx;
}

// A solid white frame along the inside of the box [x0, x1) x [y0, y1): the field's
// extent, visible even when the field fills the whole image.
function drawBox(ctx, x0, y0, x1, y1) {
  const line = Math.max(1, Math.round(Math.max(state.width, state.height) / 240));
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(x0, y0, x1 - x0, line);
  ctx.fillRect(x0, y1 - line, x1 - x0, line);
  ctx.fillRect(x0, y0, line, y1 - y0);
  ctx.fillRect(x1 - line, y0, line, y1 - y0);
}

function drawCoverage(view) {
  const canvas = $("coverage");
  const ctx = drawBase(canvas);
  const x0 = Math.round(view.box.x0 * view.cellX);
  const x1 = Math.round(view.box.x1 * view.cellX);
  const y0 = Math.round(view.box.y0 * view.cellY);
  const y1 = Math.round(view.box.y1 * view.cellY);
  // Inside the box, a pale wash: holes (transparent in the map) show as pale photo.
  ctx.fillStyle = "rgba(255, 255, 255, 0.4)";
  ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
  ctx.drawImage(view.image, 0, 0, view.columns * view.cellX, view.rows * view.cellY);
  drawBox(ctx, x0, y0, x1, y1);
  drawMarker(ctx, state.click.x, state.click.y, state.width);
  canvas.dataset.box = JSON.stringify([x0, y0, x1, y1]);
  canvas.dataset.view = view.key;
}

function drawErf(image) {
  const ctx = drawBase($("erf"));
  ctx.drawImage(image, 0, 0, state.width, state.height);
  drawMarker(ctx, state.click.x, state.click.y, state.width);
}

// A colour bar: the colormap's stops left to right, tick labels under it.
function drawColourBar(scaleId, colours, ticks, label) {
  const box = $(scaleId);
  const canvas = box.querySelector("canvas");
  const ctx = canvas.getContext("2d");
  const gradient = ctx.createLinearGradient(0, 0, canvas.width, 0);
  colours.forEach((colour, i) => gradient.addColorStop(i / (colours.length - 1), colour));
  ctx.fillStyle = gradient;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const row = box.querySelector(".ticks");
  row.replaceChildren(...ticks.map((text) => {
    const tick = document.createElement("span");
    tick.textContent = text;
    return tick;
  }));
  box.querySelector(".bar-label").textContent = label;
}

function countTicks(paths) {
  if (!(paths.high > paths.low)) return [formatCount(paths.high)];
  const middle = Math.sqrt(paths.low * paths.high);  // half way on the log scale
  return [formatCount(paths.low), formatCount(middle), formatCount(paths.high)];
}

function describeCoverage(view, field) {
  const pxX = (cells) => Math.round(cells * view.cellX);
  const pxY = (cells) => Math.round(cells * view.cellY);
  const box = view.box;
  const side = `${box.x1 - box.x0}×${box.y1 - box.y0}`;
  const holes = view.holes > 0
    ? `${(100 * view.holes).toFixed(1)} % of it holes` + (view.stage && view.stage.lattice
      ? `, on a lattice of period ${view.stage.lattice.x} (gridding)` : "")
    : "no holes";
  const paths = `up to ${formatCount(view.paths.high)} paths per position`;
  if (view.stage) {
    const s = view.stage;
    return `${s.title} (rates ${s.rates.join(", ")}) reads ${s.source}, a stride-${s.stride} map of ` +
      `${view.columns}×${view.rows} positions. From the clicked pixel its field spans ${side} positions ` +
      `(${pxX(box.x1 - box.x0)}×${pxY(box.y1 - box.y0)} px of the image), ${holes}; ${paths}.`;
  }
  return `The whole network at the image: a field of ${pxX(box.x1 - box.x0)}×${pxY(box.y1 - box.y0)} px, ` +
    `${holes}, ${paths}. ${field.note[0].toUpperCase()}${field.note.slice(1)}.`;
}

function coverageCaption(view) {
  if (!view.stage) {
    return "Coverage of the whole network: how many paths lead from each input pixel to " +
      "the clicked one. It depends on the architecture only: the same for every photo " +
      "and every set of weights; the photo is drawn under it for orientation.";
  }
  const s = view.stage;
  return `Coverage of ${s.title} on the map it reads (${s.source}, one cell per ${s.stride} image pixels): ` +
    `each coloured cell is a position of that map from which paths lead to ${s.title}'s output ` +
    "over the clicked pixel. The architecture alone decides it, not the photo or the weights.";
}

function showView(view) {
  state.coverageView = view.key;
  for (const button of $("coverage-views").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.key === view.key));
  }
  drawCoverage(view);
  const bar = state.field.colour_bars.coverage;
  drawColourBar("coverage-scale", bar.colours, countTicks(view.paths), bar.label);
  $("coverage-caption").textContent = coverageCaption(view);
  const field = state.field;
  const scale = 1 / field.scale;
  $("rf-stats").textContent = describeCoverage(view, field) +
    " Coverage depends on the architecture only, not on this photo. " +
    `Half of the ERF's mass lies within ${(field.erf.radius_50 * scale).toFixed(1)} px` +
    (field.erf.on_image ? ", computed on this photo with the model's weights." : ", averaged over random inputs.");
}

function renderViewButtons(views) {
  const group = $("coverage-views");
  group.replaceChildren(...views.map((view) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.key = view.key;
    button.textContent = view.label;
    button.addEventListener("click", () => showView(view));
    return button;
  }));
}

async function showReceptiveField(x, y) {
  // One request in flight: a new click cancels the previous one (the server then drops
  // it from its queue instead of computing a map nobody will see).
  if (state.rfJob) state.rfJob.abort();
  const job = new AbortController();
  state.rfJob = job;
  const panel = $("rf");
  panel.dataset.state = "working";
  $("rf-title").textContent = `Where the network looks from pixel (${x}, ${y})…`;
  const query = new URLSearchParams({ x, y, width: state.width, height: state.height });
  if (state.imageId) query.set("image_id", state.imageId);
  try {
    const response = await fetch(`/v1/receptive-field?${query}`, { signal: job.signal });
    if (!response.ok) {
      showError(`${response.status}: ${await errorText(response)}`);
      panel.dataset.state = "error";
      return;
    }
    const field = await response.json();
    const views = coverageViews(field);
    const [erf, ...maps] = await Promise.all([field.erf.png, ...views.map((v) => v.png)].map(loadImage));
    if (state.rfJob !== job) return;  // a newer click took over while we decoded
    views.forEach((view, i) => { view.image = maps[i]; });
    state.field = field;
    renderViewButtons(views);
    drawErf(erf);
    const erfBar = field.colour_bars.erf;
    drawColourBar("erf-scale", erfBar.colours, ["0", "0.25", "1"], erfBar.label);
    showView(pickView(views));
    $("rf-title").textContent = `Where the network looks from pixel (${x}, ${y})`;
    panel.hidden = false;
    panel.dataset.state = "ready";
  } catch (error) {
    const message = networkError(error);
    if (message === null) return;  // cancelled by a newer click
    showError(message);
    panel.dataset.state = "error";
  } finally {
    if (state.rfJob === job) state.rfJob = null;
  }
}

function setup() {
  const input = $("file");
  input.addEventListener("change", () => { if (input.files[0]) segmentAny(input.files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) segmentAny(e.dataTransfer.files[0]);
  });
  $("alpha").addEventListener("input", drawOverlay);
  $("view").addEventListener("click", (e) => {
    if (!state.labels) return;
    const rect = e.target.getBoundingClientRect();
    const x = Math.min(state.width - 1, Math.floor((e.clientX - rect.left) * state.width / rect.width));
    const y = Math.min(state.height - 1, Math.floor((e.clientY - rect.top) * state.height / rect.height));
    state.click = { x, y };
    drawOverlay();
    showReceptiveField(x, y);
  });
  waitForModel();
}

setup();
