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

function drawField(canvasId, pngUrl) {
  return new Promise((resolve, reject) => {
    const heat = new Image();
    heat.onload = () => {
      const canvas = $(canvasId);
      canvas.width = state.width;
      canvas.height = state.height;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(state.bitmap, 0, 0, state.width, state.height);
      ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
      ctx.fillRect(0, 0, state.width, state.height);
      ctx.imageSmoothingEnabled = false;  // keep the holes of the coverage map sharp
      ctx.drawImage(heat, 0, 0, state.width, state.height);
      drawMarker(ctx, state.click.x, state.click.y, state.width);
      resolve();
    };
    heat.onerror = () => reject(new Error("could not decode the map"));
    heat.src = pngUrl;
  });
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
    if (state.rfJob !== job) return;  // a newer click took over while we decoded
    await Promise.all([drawField("coverage", field.coverage.png), drawField("erf", field.erf.png)]);
    const box = field.coverage.box;
    const scale = 1 / field.scale;
    const boxSide = `${Math.round((box.x1 - box.x0) * scale)}×${Math.round((box.y1 - box.y0) * scale)}`;
    // max_paths is a string: JavaScript numbers lose integers above 2^53.
    const paths = field.coverage.max_paths_exact ? field.coverage.max_paths : `about ${Number(field.coverage.max_paths).toExponential(3)}`;
    $("rf-title").textContent = `Where the network looks from pixel (${x}, ${y})`;
    $("rf-stats").textContent =
      `Theoretical field ${boxSide} px in the image, ${(100 * field.coverage.hole_fraction).toFixed(1)} % of it never reached (holes), ` +
      `up to ${paths} paths per pixel; the coverage map depends on the architecture only, not on this photo. ` +
      `Half of the ERF's mass lies within ${(field.erf.radius_50 * scale).toFixed(1)} px` +
      (field.erf.on_image ? ", computed on this photo with the model's weights. " : ", averaged over random inputs. ") +
      `${field.note[0].toUpperCase()}${field.note.slice(1)}.`;
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
