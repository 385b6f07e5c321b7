// The studio's page: the form comes from /api/settings (Settings' metadata), jobs from the API (docs/api.md).
"use strict";
const $ = (id) => document.getElementById(id);
const state = { schema: null, contentFile: null, contentSample: "tubingen", styleFiles: [], styleSamples: ["starry_night"],
  job: null, source: null, latestStep: 0, previewBusy: false, previewStep: -1, previewUrl: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node[k] = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

async function api(method, url, body) {
  const response = await fetch(url, { method, body, credentials: "same-origin" });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return { status: response.status, data };
}

// --- the form ---------------------------------------------------------------------------------------------
function fieldInput(f) {
  let input;
  if (f.kind === "choice") {
    input = el("select", { id: "f-" + f.name });
    if (f.optional) input.append(el("option", { value: "" }, "(default)"));
    for (const c of f.choices) input.append(el("option", { value: c }, c));
  } else {
    input = el("input", { id: "f-" + f.name, type: f.kind === "int" || f.kind === "float" ? "number" : "text" });
    if (f.kind === "float") input.step = "any";
  }
  input.dataset.name = f.name;
  setValue(input, f.default);
  const box = el("div", { class: "field", id: "field-" + f.name },
    el("label", { for: input.id }, f.label), input, el("div", { class: "help" }, f.help),
    el("div", { class: "error", id: "err-" + f.name }));
  return box;
}

function setValue(input, value) {
  if (value === null || value === undefined) { input.value = ""; return; }
  if (Array.isArray(value)) {
    value = value.map((v) => Array.isArray(v) ? v[0] + ":" + v[1] : v).join(",");
  }
  if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === String(value))) return;
  input.value = String(value);
}

function ratioSlider(r) {
  const lo = Math.log10(r.min), hi = Math.log10(r.max);
  // further right = more style = a smaller alpha/beta
  const slider = el("input", { type: "range", id: "f-ratio", min: "0", max: "1000", step: "1" });
  const shown = el("span", { id: "ratio-value" });
  const toRatio = () => Math.pow(10, hi - (hi - lo) * slider.value / 1000);
  slider.setRatio = (x) => { slider.value = String(Math.round(1000 * (hi - Math.log10(x)) / (hi - lo))); update(false); };
  const update = (setBeta) => {
    const ratio = toRatio();
    shown.textContent = " alpha/beta = " + ratio.toExponential(1);
    if (setBeta) {
      const alpha = parseFloat($("f-alpha").value || "1");
      $("f-beta").value = (alpha / ratio).toPrecision(3);
    }
  };
  slider.oninput = () => update(true);
  slider.setRatio(r.default);
  return el("div", { class: "field", id: "field-ratio" }, el("label", { for: "f-ratio" }, r.label), slider, shown,
    el("div", { class: "help" }, r.help), el("div", { class: "error", id: "err-ratio" }));
}

function buildForm(schema) {
  $("basic").append(ratioSlider(schema.ratio));
  for (const f of schema.fields) (f.basic ? $("basic") : $("more-fields")).append(fieldInput(f));
  $("f-beta").onchange = () => {
    const alpha = parseFloat($("f-alpha").value || "1"), beta = parseFloat($("f-beta").value);
    if (alpha > 0 && beta > 0) $("f-ratio").setRatio(alpha / beta);
  };
  for (const name of schema.samples.content) {
    const img = el("img", { src: `/api/samples/${name}.jpg`, title: name, "data-sample": name });
    img.onclick = () => { state.contentSample = name; state.contentFile = null; $("content-file").value = ""; showInputs(); };
    $("content-samples").append(img);
  }
  for (const name of [...schema.samples.content, ...schema.samples.style]) {
    const img = el("img", { src: `/api/samples/${name}.jpg`, title: name, "data-sample": name });
    img.onclick = () => {
      const i = state.styleSamples.indexOf(name);
      if (i >= 0) state.styleSamples.splice(i, 1); else state.styleSamples.push(name);
      showInputs();
    };
    $("style-samples").append(img);
  }
  showInputs();
}

function showInputs() {
  const thumbs = (box, files) => {
    box.replaceChildren(...files.map((f) => el("img", { src: URL.createObjectURL(f), title: f.name })));
  };
  thumbs($("content-thumbs"), state.contentFile ? [state.contentFile] : []);
  thumbs($("style-thumbs"), state.styleFiles);
  for (const img of $("content-samples").children) img.classList.toggle("on", !state.contentFile && img.dataset.sample === state.contentSample);
  for (const img of $("style-samples").children) img.classList.toggle("on", state.styleSamples.includes(img.dataset.sample));
}

function settingsJson() {
  const out = {};
  for (const f of state.schema.fields) {
    const input = $("f-" + f.name);
    const text = input.value.trim();
    const dflt = f.default === null ? "" : String(f.default);
    if (text === dflt) continue;
    if (text === "") { if (f.optional) out[f.name] = null; continue; }
    out[f.name] = f.kind === "int" || f.kind === "float" ? Number(text) : text;
  }
  return out;
}

function clearErrors() {
  for (const node of document.querySelectorAll(".error")) node.textContent = "";
  for (const node of document.querySelectorAll(".field.bad")) node.classList.remove("bad");
}

function showError(data, status) {
  const message = (data && data.error) || `the server answered ${status}`;
  const field = data && data.field;
  const target = field && $("err-" + field) ? $("err-" + field) : $("err-general");
  target.textContent = message;
  if (field && $("field-" + field)) {
    $("field-" + field).classList.add("bad");
    if (!state.schema.fields.find((f) => f.name === field && f.basic)) $("more").open = true;
  }
}

// --- running ----------------------------------------------------------------------------------------------
async function start(continueFrom) {
  clearErrors();
  const body = new FormData();
  if (state.contentFile) body.append("content", state.contentFile, state.contentFile.name);
  else if (state.contentSample && !continueFrom) body.append("content_sample", state.contentSample);
  for (const f of state.styleFiles) body.append("style", f, f.name);
  if (!continueFrom) for (const s of state.styleSamples) body.append("style_sample", s);
  if (continueFrom) body.append("continue_from", continueFrom);
  body.append("settings", JSON.stringify(settingsJson()));
  const { status, data } = await api("POST", "/api/jobs", body);
  if (status !== 201) { showError(data, status); return; }
  watch(data.id);
  refreshHistory();
}

function watch(id) {
  if (state.source) state.source.close();
  state.job = id; state.latestStep = 0; state.previewStep = -1; state.ended = false;
  $("state").textContent = "queued"; $("step").textContent = ""; $("stage").textContent = ""; $("eta").textContent = "";
  $("links").replaceChildren();
  $("cancel").disabled = false; $("continue").disabled = true;
  const source = new EventSource(`/api/jobs/${id}/events`);
  state.source = source;
  source.addEventListener("progress", (e) => { const job = JSON.parse(e.data); show(job); pullPreview(); });
  source.addEventListener("end", (e) => { source.close(); const job = JSON.parse(e.data); show(job); finished(job); });
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) state.source = null; };
}

function show(job) {
  if (job.id !== state.job) return;
  $("state").textContent = job.state;
  if (job.steps) $("step").textContent = `step ${job.step}/${job.steps}`;
  if (job.stage && job.stage.count > 1) $("stage").textContent = `scale ${job.stage.index + 1}/${job.stage.count} (${job.stage.size} px)`;
  $("eta").textContent = job.eta ? `about ${Math.round(job.eta)} s left` : "";
  state.latestStep = job.step;
  if (job.plot) drawPlot(job.plot);
  else if (job.losses && job.losses.total) addPoint(job);
  if (job.error) showError({ error: job.error, field: job.field }, 0);
}

// The next preview is asked for only once the last one has loaded, and only when the run has moved on: the
// run never waits for the page, and the page takes previews as fast as it can show them.
async function pullPreview() {
  if (state.previewBusy || state.latestStep < 1 || state.latestStep <= state.previewStep || !state.job) return;
  state.previewBusy = true;
  const id = state.job;
  try {
    const response = await fetch(`/api/jobs/${id}/preview.jpg`, { cache: "no-store" });
    if (response.ok && id === state.job && !state.ended) {
      const blob = await response.blob();
      state.previewStep = parseInt(response.headers.get("X-Step") || "0", 10);
      const url = URL.createObjectURL(blob);
      await new Promise((resolve) => { $("preview").onload = resolve; $("preview").onerror = resolve; $("preview").src = url; });
      if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
      state.previewUrl = url;
      $("preview").dataset.step = String(state.previewStep);
    }
  } finally {
    state.previewBusy = false;
  }
  if (id === state.job && !state.ended && state.latestStep > state.previewStep) setTimeout(pullPreview, 0);
}

function finished(job) {
  state.ended = true;
  $("cancel").disabled = true;
  if (job.has_result) {
    $("preview").src = `/api/jobs/${job.id}/result.png?t=${Date.now()}`;
    $("continue").disabled = false;
    $("links").replaceChildren(
      el("a", { href: `/api/jobs/${job.id}/result.png`, download: `gramstyle-${job.id}.png` }, "download image"),
      el("a", { href: `/api/jobs/${job.id}/record.json`, download: `gramstyle-${job.id}.png.json` }, "run record"));
  }
  refreshHistory();
}

function addPoint(job) {
  state.plot = state.plot && state.plotJob === job.id ? state.plot : [];
  state.plotJob = job.id;
  const last = state.plot[state.plot.length - 1];
  if (!last || last[0] !== job.elapsed) state.plot.push([job.elapsed, job.losses.total]);
  drawPlot(state.plot);
}

function drawPlot(points) {
  const canvas = $("plot"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const good = points.filter((p) => p[1] > 0);
  if (good.length < 2) return;
  const t1 = good[good.length - 1][0] || 1, ys = good.map((p) => Math.log10(p[1]));
  const lo = Math.min(...ys), hi = Math.max(...ys), span = hi - lo || 1;
  ctx.strokeStyle = "#2b6cb0"; ctx.lineWidth = 2; ctx.beginPath();
  good.forEach((p, i) => {
    const x = 4 + (canvas.width - 8) * p[0] / t1, y = 4 + (canvas.height - 8) * (hi - ys[i]) / span;
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = "#444"; ctx.font = "11px sans-serif";
  ctx.fillText(`total loss ${good[good.length - 1][1].toExponential(2)} at ${t1.toFixed(1)} s`, 8, 14);
}

// --- history ----------------------------------------------------------------------------------------------
async function refreshHistory() {
  const { data } = await api("GET", "/api/jobs");
  if (!data) return null;
  const entries = data.jobs.slice().reverse().map((job) => {
    const s = job.settings;
    const thumb = el("img", { alt: job.state });
    if (job.has_result) thumb.src = `/api/jobs/${job.id}/result.png`;
    const actions = el("div", { class: "actions" },
      el("button", { class: "load-settings", type: "button", onclick: () => loadSettings(job) }, "load these settings"));
    if (job.has_result) {
      actions.append(el("a", { href: `/api/jobs/${job.id}/result.png`, download: `gramstyle-${job.id}.png` }, "image"),
        el("a", { href: `/api/jobs/${job.id}/record.json`, download: `gramstyle-${job.id}.png.json` }, "record"));
    }
    actions.append(el("button", { class: "delete", type: "button", onclick: () => removeJob(job.id) }, "delete"));
    const losses = job.losses && job.losses.total ? ` · loss ${job.losses.total.toExponential(2)}` : "";
    return el("div", { class: "entry", "data-id": job.id }, thumb, el("div", {},
      el("div", {}, el("b", {}, job.state), ` · ${s.size} px · ${job.step} steps · ${job.elapsed.toFixed(1)} s${losses}`),
      el("div", {}, `${job.inputs.content} ← ${(job.inputs.styles || []).join(", ")}`),
      job.error ? el("div", { class: "error" }, job.error) : "", actions));
  });
  $("history").replaceChildren(...entries);
  return data.jobs;
}

function loadSettings(job) {
  for (const f of state.schema.fields) {
    if (f.name in job.settings) setValue($("f-" + f.name), job.settings[f.name]);
  }
  const s = job.settings;
  if (s.alpha > 0 && s.beta > 0) $("f-ratio").setRatio(s.alpha / s.beta);
}

async function removeJob(id) {
  await api("DELETE", `/api/jobs/${id}`);
  refreshHistory();
}

// --- wiring -----------------------------------------------------------------------------------------------
function dropTarget(box, onFiles) {
  box.ondragover = (e) => { e.preventDefault(); box.classList.add("over"); };
  box.ondragleave = () => box.classList.remove("over");
  box.ondrop = (e) => { e.preventDefault(); box.classList.remove("over"); onFiles([...e.dataTransfer.files]); };
}

async function main() {
  const { data } = await api("GET", "/api/settings");
  state.schema = data;
  buildForm(data);
  const setContent = (files) => { if (files.length) { state.contentFile = files[0]; showInputs(); } };
  const setStyles = (files) => { if (files.length) { state.styleFiles = files; state.styleSamples = []; showInputs(); } };
  $("content-file").onchange = (e) => setContent([...e.target.files]);
  $("style-file").onchange = (e) => setStyles([...e.target.files]);
  dropTarget($("content-drop"), setContent);
  dropTarget($("style-drop"), setStyles);
  $("start").onclick = () => start(null);
  $("cancel").onclick = () => state.job && api("POST", `/api/jobs/${state.job}/cancel`);
  $("continue").onclick = () => state.job && start(state.job);
  const jobs = await refreshHistory();
  // a page opened (or reloaded) while a job runs or waits follows the latest such job
  const live = (jobs || []).filter((j) => j.state === "running" || j.state === "queued").pop();
  if (live) watch(live.id);
  document.body.dataset.ready = "1";
}
main();
