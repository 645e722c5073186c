// The preview page: pick a dataset, move the sliders, see the grid the server makes, copy
// the matching Python. Plain JavaScript, no build step; it only talks to this server.
"use strict";

const form = document.getElementById("controls");
const grid = document.getElementById("grid");
const gridStatus = document.getElementById("grid-status");
const snippet = document.getElementById("snippet");
const keyInput = document.getElementById("api-key");
let previewVersion = 0;
let previewTimer = null;

keyInput.value = sessionStorage.getItem("augstream-key") || "";

function api(path) {
  const key = keyInput.value.trim();
  return fetch(path, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
}

async function failure(response) {
  try {
    return (await response.json()).message || response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function field(name) {
  return form.elements.namedItem(name);
}

function number(name) {
  return Number(field(name).value);
}

// A (low, high) factor range from two sliders; null at the identity (1, 1).
function factors(name) {
  const low = Math.min(number(`${name}_low`), number(`${name}_high`));
  const high = Math.max(number(`${name}_low`), number(`${name}_high`));
  return low !== 1 || high !== 1 ? [low, high] : null;
}

// The spec fields the form sets, leaving out those at their defaults (as Keras' would be).
function augmentation() {
  const out = {};
  for (const name of ["rotation_range", "width_shift_range", "height_shift_range",
    "shear_range", "zoom_range", "channel_shift_range"]) {
    if (number(name) > 0) out[name] = number(name);
  }
  const brightness = factors("brightness");
  if (brightness) out.brightness_range = brightness;
  for (const name of ["horizontal_flip", "vertical_flip"]) {
    if (field(name).checked) out[name] = true;
  }
  if (field("fill_mode").value !== "nearest") out.fill_mode = field("fill_mode").value;
  if (out.fill_mode === "constant" && number("cval") > 0) out.cval = number("cval");
  if (number("interpolation_order") !== 1) out.interpolation_order = number("interpolation_order");
  // Operations beyond ImageDataGenerator's, each off at its default.
  if (number("random_crop_fraction") < 1) out.random_crop_fraction = number("random_crop_fraction");
  for (const name of ["erasing_probability", "hue_shift_range", "grayscale_probability"]) {
    if (number(name) > 0) out[name] = number(name);
  }
  for (const name of ["contrast", "saturation"]) {
    const range = factors(name);
    if (range) out[`${name}_range`] = range;
  }
  if (number("blur_sigma_max") > 0) out.blur_sigma_range = [0, number("blur_sigma_max")];
  if (number("noise_std_max") > 0) out.noise_std_range = [0, number("noise_std_max")];
  if (number("jpeg_quality_min") < 100) out.jpeg_quality_range = [number("jpeg_quality_min"), 100];
  return out;
}

function flowArguments() {
  const side = number("target_size");
  const out = { target_size: [side, side], seed: number("seed") };
  if (field("color_mode").value !== "rgb") out.color_mode = field("color_mode").value;
  if (field("interpolation").value !== "nearest") out.interpolation = field("interpolation").value;
  return out;
}

function spec() {
  return { dataset: field("dataset").value, ...flowArguments(), ...augmentation() };
}

function python(value) {
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return `(${value.map(python).join(", ")})`;
  if (typeof value === "string") return JSON.stringify(value);
  return String(value);
}

function showSnippet() {
  const lines = ["from augstream import ImageDataGenerator", "", "gen = ImageDataGenerator("];
  lines.push(`    server=${python(window.location.origin)},`);
  for (const [name, value] of Object.entries(augmentation())) {
    lines.push(`    ${name}=${python(value)},`);
  }
  lines.push(")", "train = gen.flow_from_directory(", `    ${python(field("dataset").value)},`);
  for (const [name, value] of Object.entries(flowArguments())) {
    lines.push(`    ${name}=${python(value)},`);
  }
  lines.push("    batch_size=32,", ")", "model.fit(train, epochs=10)");
  snippet.textContent = lines.join("\n");
}

function showValues() {
  for (const output of form.querySelectorAll("output")) {
    output.textContent = output.previousElementSibling.value;
  }
}

async function preview() {
  const version = ++previewVersion;
  if (!field("dataset").value) return;
  const query = new URLSearchParams({
    spec: JSON.stringify(spec()),
    rows: field("rows").value,
    cols: field("cols").value,
    epoch: field("epoch").value,
    tile: "96",
  });
  gridStatus.className = "";
  gridStatus.textContent = "Augmenting...";
  const response = await api(`/v1/preview?${query}`);
  if (version !== previewVersion) return; // a newer request is on its way
  if (!response.ok) {
    gridStatus.className = "error";
    gridStatus.textContent = await failure(response);
    return;
  }
  const old = grid.src;
  grid.src = URL.createObjectURL(await response.blob());
  if (old) URL.revokeObjectURL(old);
  await grid.decode().catch(() => undefined);
  grid.dataset.version = String(version);
  gridStatus.textContent = `Epoch ${field("epoch").value}, seed ${field("seed").value}: ` +
    "what a stream with these settings sends first.";
}

function changed() {
  showValues();
  showSnippet();
  clearTimeout(previewTimer);
  previewTimer = setTimeout(preview, 150);
}

async function loadDatasets() {
  const select = field("dataset");
  const server = await api("/v1/server");
  if (!server.ok) {
    gridStatus.className = "error";
    gridStatus.textContent = await failure(server);
    return;
  }
  document.getElementById("version").textContent = `server ${(await server.json()).version}`;
  const response = await api("/v1/datasets");
  const { datasets } = await response.json();
  const chosen = select.value;
  select.replaceChildren(...datasets.map((d) => new Option(d.mask_pairs == null
    ? `${d.name} (${d.samples} images, ${Object.keys(d.class_indices).length} classes)`
    : `${d.name} (${d.mask_pairs} images with masks)`, d.name)));
  if (datasets.some((d) => d.name === chosen)) select.value = chosen;
  if (!datasets.length) gridStatus.textContent = "This server offers no datasets.";
  changed();
}

function megabytes(bytes) {
  return (bytes / 1e6).toFixed(1);
}

function percent(rate) {
  return rate === null ? "-" : `${Math.round(rate * 100)}%`;
}

async function refreshStatus() {
  const response = await api("/v1/status").catch(() => null);
  if (!response || !response.ok) return;
  const status = await response.json();
  document.getElementById("uptime").textContent = `(up ${Math.round(status.uptime_s)} s)`;
  const rows = status.streams.map((s) => {
    const row = document.createElement("tr");
    for (const cell of [s.dataset, s.client, s.owner, s.batches, s.batches_per_s,
      megabytes(s.bytes_per_s), s.seconds]) {
      const td = document.createElement("td");
      td.textContent = String(cell);
      row.append(td);
    }
    return row;
  });
  document.querySelector("#streams tbody").replaceChildren(...rows);
  const t = status.totals;
  document.getElementById("totals").textContent = `${status.streams.length} streaming now; ` +
    `since start ${t.streams} streams, ${t.batches} batches, ${t.images} images, ` +
    `${megabytes(t.bytes)} MB sent`;
  const errors = Object.entries(status.errors).map(([kind, n]) => `${kind} ${n}`);
  document.getElementById("health").textContent =
    `Decoded-image cache hits ${percent(status.caches.images.hit_rate)}, ` +
    `file cache hits ${percent(status.caches.bytes.hit_rate)}; ` +
    `errors: ${errors.length ? errors.join(", ") : "none"}`;
  // Identical streams (a sweep, validation streams) share the batches one of them made.
  const shared = status.shared;
  const held = shared.cache ? `; batch cache ${megabytes(shared.cache.bytes)} of ` +
    `${megabytes(shared.cache.capacity_bytes)} MB` : "";
  document.getElementById("shared").textContent = `Batches shared ${shared.batches} ` +
    `(${megabytes(shared.bytes)} MB not made again)${held}`;
  // Replicas whose numerics digests differ are never mixed in one stream.
  const n = status.numerics;
  document.getElementById("numerics").textContent = `Numerics ${n.digest} (${n.numerics}): ` +
    `OpenCV ${n.opencv}, IPP ${n.ipp}, numpy ${n.numpy} ` +
    `[${n.numpy_dispatch.join(" ") || "baseline"}], ${n.blas} (${n.blas_coretype})`;
}

async function copySnippet() {
  const button = document.getElementById("copy");
  try {
    await navigator.clipboard.writeText(snippet.textContent);
    button.textContent = "Copied";
  } catch {
    // Without clipboard permission: select the text for Ctrl+C.
    window.getSelection().selectAllChildren(snippet);
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

form.addEventListener("input", changed);
form.addEventListener("change", changed);
form.addEventListener("submit", (event) => event.preventDefault());
document.getElementById("copy").addEventListener("click", copySnippet);
keyInput.addEventListener("change", () => {
  sessionStorage.setItem("augstream-key", keyInput.value.trim());
  loadDatasets();
});
loadDatasets();
refreshStatus();
setInterval(refreshStatus, 2000);
