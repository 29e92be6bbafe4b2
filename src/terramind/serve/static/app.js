// The TerraMind page: builds its form from /v1/info, starts a job, polls it, shows quicklooks, downloads.
// Every call sends the bearer token (kept for this browser tab only), so images are fetched as blobs.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("terramind-token") || "", info: null, job: null, timer: null };

function headers() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (response.status === 401) {
    showToken();
    throw new Error("this server needs a token");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function setStatus(text) { $("status").textContent = text; }

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function showToken() {
  $("token-form").hidden = false;
  $("generate-form").hidden = true;
  setStatus("Token needed");
  $("token").focus();
}

// ------------------------------------------------------------------------------------------- the form
function option(select, value, text) {
  const item = document.createElement("option");
  item.value = value;
  item.textContent = text || value;
  select.append(item);
}

function checkbox(container, name, value, checked) {
  const label = document.createElement("label");
  const box = document.createElement("input");
  Object.assign(box, { type: "checkbox", name, value, checked });
  label.append(box, ` ${value}`);
  container.append(label);
}

function buildForm(info) {
  const fields = info.fields;
  $("diffusion_steps").value = fields.diffusion_steps.default;
  $("seed").value = fields.seed.default;
  const strategy = $("strategy");
  strategy.replaceChildren();
  fields.strategy.enum.forEach((v) => option(strategy, v));
  strategy.value = fields.strategy.default;

  const outputs = $("output-fields");
  outputs.replaceChildren();
  info.outputs.forEach((name, i) => checkbox(outputs, "outputs", name, i === 0));

  const uploads = $("upload-fields");
  uploads.replaceChildren();
  for (const name of info.inputs) {
    const label = document.createElement("label");
    label.htmlFor = `file-${name}`;
    label.textContent = `${name} (${info.modalities[name].bands.length} bands)`;
    const input = Object.assign(document.createElement("input"), {
      type: "file", id: `file-${name}`, name, accept: ".tif,.tiff,image/tiff",
    });
    uploads.append(label, input);
  }

  const examples = info.examples || {};
  const names = [...new Set(Object.values(examples).flat())].sort();
  const select = $("example");
  select.replaceChildren();
  names.forEach((n) => option(select, n));
  if (!names.length) {
    document.querySelector('input[name="source"][value="upload"]').checked = true;
    $("source-choice").hidden = true;
  }
  updateSource();
  select.addEventListener("change", describeExample);
  describeExample();
}

function describeExample() {
  const name = $("example").value;
  const examples = state.info.examples || {};
  const mods = Object.keys(examples).filter((m) => examples[m].includes(name));
  $("example-modalities").textContent = mods.length ? `Inputs used: ${mods.join(", ")}` : "";
}

function updateSource() {
  const upload = document.querySelector('input[name="source"]:checked').value === "upload";
  $("upload-inputs").hidden = !upload;
  $("example-inputs").hidden = upload;
}

function requestBody() {
  const body = new FormData();
  const upload = document.querySelector('input[name="source"]:checked').value === "upload";
  if (upload) {
    for (const name of state.info.inputs) {
      const file = $(`file-${name}`).files[0];
      if (file) body.append(name, file, file.name);
    }
  } else {
    const name = $("example").value;
    const examples = state.info.examples || {};
    for (const mod of Object.keys(examples)) {
      if (examples[mod].includes(name)) body.append(`${mod}_example`, name);
    }
  }
  const outputs = [...document.querySelectorAll('input[name="outputs"]:checked')].map((b) => b.value);
  if (!outputs.length) throw new Error("choose at least one output");
  body.append("outputs", outputs.join(","));
  for (const id of ["diffusion_steps", "seed", "strategy"]) body.append(id, $(id).value);
  return body;
}

// --------------------------------------------------------------------------------------------- a job
async function start(event) {
  event.preventDefault();
  showError("");
  let body;
  try {
    body = requestBody();
  } catch (err) {
    showError(err.message);
    return;
  }
  $("start").disabled = true;
  $("results").hidden = true;
  try {
    const job = await (await api("/v1/generate", { method: "POST", body })).json();
    state.job = job.id;
    $("cancel").disabled = false;
    showProgress(job);
    poll();
  } catch (err) {
    showError(err.message);
    $("start").disabled = false;
  }
}

function showProgress(job) {
  const { tiles_done: done, tiles_total: total } = job.progress;
  $("progress").max = Math.max(total, 1);
  $("progress").value = done;
  $("progress-text").textContent = `${job.state}: ${done} of ${total} tiles`;
}

async function poll() {
  clearTimeout(state.timer);
  if (!state.job) return;
  try {
    const job = await (await api(`/v1/jobs/${state.job}`)).json();
    showProgress(job);
    if (job.state === "done") {
      finish();
      await showResults(job);
    } else if (job.state === "failed" || job.state === "cancelled") {
      finish();
      if (job.error) showError(job.error);
    } else {
      state.timer = setTimeout(poll, 500);
    }
  } catch (err) {
    showError(err.message);
    finish();
  }
}

function finish() {
  $("start").disabled = false;
  $("cancel").disabled = true;
}

async function cancel() {
  if (!state.job) return;
  try {
    await api(`/v1/jobs/${state.job}`, { method: "DELETE" });
  } catch (err) {
    showError(err.message);
  }
}

// ----------------------------------------------------------------------------------------- results
async function blobUrl(path) {
  return URL.createObjectURL(await (await api(path)).blob());
}

async function panel(title, png, tif, note) {
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.alt = `${title} quicklook`;
  img.src = await blobUrl(png);
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  if (note) {
    const small = document.createElement("span");
    small.className = "range";
    small.textContent = note;
    caption.append(small);
  }
  figure.append(img, caption);
  if (tif) {
    const button = Object.assign(document.createElement("button"), { type: "button" });
    button.textContent = `Download ${tif.split("/").pop()}`;
    button.addEventListener("click", () => download(tif));
    figure.append(button);
  }
  return figure;
}

async function download(path) {
  try {
    const link = Object.assign(document.createElement("a"), {
      href: await blobUrl(path), download: path.split("/").pop(),
    });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (err) {
    showError(err.message);
  }
}

function rangeNote(name, job) {
  const range = job.ranges && job.ranges[name];
  const unit = state.info.modalities[name] ? state.info.modalities[name].unit : "";
  if (!range || range.length !== 2) return "";
  return `${range[0].toFixed(1)} to ${range[1].toFixed(1)} ${unit}`.trim();
}

async function showResults(job) {
  const panels = $("panels");
  panels.replaceChildren();
  for (const [name, png] of Object.entries(job.inputs)) {
    panels.append(await panel(`${name} (input)`, png, null, ""));
  }
  for (const [name, files] of Object.entries(job.outputs)) {
    panels.append(await panel(`${name} (generated)`, files.png, files.tif, rangeNote(name, job)));
  }
  showLegend(Object.keys(job.outputs));
  $("results").hidden = false;
  $("results-title").focus();
}

function showLegend(outputs) {
  const lulc = outputs.includes("LULC") && state.info.modalities.LULC;
  $("legend").hidden = !lulc;
  if (!lulc) return;
  const list = $("legend-items");
  list.replaceChildren();
  for (const cls of lulc.classes) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = cls.colour;
    item.append(swatch, `${cls.id} ${cls.name}`);
    list.append(item);
  }
}

// -------------------------------------------------------------------------------------------- start
async function load() {
  try {
    const info = await (await api("/v1/info")).json();
    state.info = info;
    $("weights").textContent = info.weights;
    $("token-form").hidden = true;
    if (!info.ready) {
      setStatus(info.state === "failed" ? `Model failed to load: ${info.error}` : "Loading the model…");
      if (info.state !== "failed") setTimeout(load, 1000);
      return;
    }
    setStatus(`${info.model} on ${info.device}, ready`);
    buildForm(info);
    $("generate-form").hidden = false;
  } catch (err) {
    if ($("token-form").hidden) setStatus(`Cannot reach the server: ${err.message}`);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("results-title").tabIndex = -1;
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("terramind-token", state.token);
    load();
  });
  document.querySelectorAll('input[name="source"]').forEach((r) => r.addEventListener("change", updateSource));
  $("generate-form").addEventListener("submit", start);
  $("cancel").addEventListener("click", cancel);
  load();
});
