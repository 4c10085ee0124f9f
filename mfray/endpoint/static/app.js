// The simulation page: plain JS, no build step. It talks to the endpoint's /api routes, reads a
// simulation's Server-Sent Events through fetch (so the bearer token can be sent, which EventSource
// cannot), and draws label shares per step as SVG. All text from the server is set with
// textContent, never parsed as HTML.
"use strict";

const DIMENSIONS = {
  rumor: ["spread", "counter"], sentiment: ["angry", "calm", "happy", "sad", "fear", "surprise"],
  attitude: ["positive", "negative", "neutral"], behavior: ["comment", "share"],
  stance: ["support", "oppose", "neutral"], belief: ["believe", "doubt"],
  subjectivity: ["subjective", "objective"], intent: ["question", "promotion", "opinion"],
};
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
const $ = (id) => document.getElementById(id);
const state = { open: null, steps: [], fork: null, forkSteps: [], dim: "attitude", streams: [] };

function headers(json) {
  const h = json ? { "Content-Type": "application/json" } : {};
  const token = sessionStorage.getItem("mfray-token");
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

async function api(method, path, body) {
  const r = await fetch("/api" + path, { method, headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || r.statusText);
  return data;
}

function say(text, error) {
  $("message").textContent = text || "";
  $("message").className = error ? "error" : "";
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// ---- streaming ------------------------------------------------------------------------------
// Reads one simulation's SSE stream, calling onMessage(msg) for each message, until it ends or
// `abort` is signalled.
async function follow(id, onMessage, abort) {
  const r = await fetch(`/api/simulations/${id}/stream`, { headers: headers(false), signal: abort.signal });
  if (!r.ok) throw new Error("stream: " + r.statusText);
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data) onMessage(JSON.parse(data));
    }
  }
}

function stopStreams() {
  state.streams.forEach((a) => a.abort());
  state.streams = [];
}

function watch(id, target) {
  const abort = new AbortController();
  state.streams.push(abort);
  if (target === "forkSteps") {  // one what-if at a time: the previous one's stream stops feeding the chart
    if (state.forkAbort) state.forkAbort.abort();
    state.forkAbort = abort;
  }
  follow(id, (msg) => {
    if (msg.type === "step") {
      state[target].push(msg);
      if (target === "steps") showStep(msg);
      draw();
    } else if (msg.type === "status" && target === "steps") {
      $("progress").textContent = msg.status + (msg.error ? ": " + msg.error : "");
      $("progress").dataset.status = msg.status;
      refreshList();
    }
  }, abort).catch((e) => { if (e.name !== "AbortError") say(e.message, true); });
}

// ---- views ----------------------------------------------------------------------------------
function showStep(msg) {
  $("mf-step").textContent = `(in force at step ${msg.step})`;
  $("meanfield").textContent = msg.mean_field || "(empty: methods without a mean field keep none)";
  $("posts-step").textContent = msg.step;
  const body = $("posts");
  body.replaceChildren();
  for (const p of msg.posts) {
    const row = el("tr", null, p.intervention ? "intervention" : p.failed ? "failed" : "");
    row.append(el("td", p.agent), el("td", p.real ?? "—"),
      el("td", p.warmup ? "(warm-up: the real post)" : p.failed ? "(generation failed)" : p.sim));
    body.append(row);
  }
  $("progress").textContent = `step ${msg.step + 1} done`;
}

function draw() {
  const svg = $("chart");
  const W = 720, H = 300, L = 40, R = 10, T = 10, B = 30;
  const labels = DIMENSIONS[state.dim];
  const steps = state.steps.concat(state.forkSteps).map((m) => m.step);
  const maxStep = Math.max(1, ...steps);
  const x = (s) => L + (W - L - R) * s / maxStep;
  const y = (v) => T + (H - T - B) * (1 - v);
  const parts = [];
  for (let v = 0; v <= 1.0001; v += 0.25) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`);
    parts.push(`<text x="${L - 6}" y="${y(v) + 4}" font-size="10" text-anchor="end">${v.toFixed(2)}</text>`);
  }
  for (let s = 0; s <= maxStep; s += Math.max(1, Math.ceil(maxStep / 12))) {
    parts.push(`<text x="${x(s)}" y="${H - 10}" font-size="10" text-anchor="middle">${s}</text>`);
  }
  const series = [["real", "6 4", state.steps, "real"], ["sim", "", state.steps, "simulated"],
    ["sim", "2 3", state.forkSteps, "what-if"]];
  for (const [side, dash, msgs, name] of series) {
    labels.forEach((label, k) => {
      const pts = msgs.filter((m) => m.shares[state.dim][side]).map((m) => [x(m.step), y(m.shares[state.dim][side][k])]);
      if (pts.length) {
        parts.push(`<polyline fill="none" stroke="${COLOURS[k]}" stroke-width="2" stroke-dasharray="${dash}" ` +
          `points="${pts.join(" ")}" data-series="${name}" data-label="${label}"/>`);
        // a dot per step, so that a series of one step shows too
        for (const [px, py] of pts) parts.push(`<circle cx="${px}" cy="${py}" r="${side === "real" ? 2 : 3}" fill="${COLOURS[k]}"/>`);
      }
    });
  }
  svg.innerHTML = parts.join("");  // numbers and fixed label names only: nothing from a post
  const legend = $("legend");
  legend.replaceChildren(...labels.map((label, k) => {
    const s = el("span", label);
    const i = el("i");
    i.style.background = COLOURS[k];
    s.prepend(i);
    return s;
  }));
}

function dimensionButtons() {
  const box = $("dims");
  box.replaceChildren(...Object.keys(DIMENSIONS).map((d) => {
    const b = el("button", d, d === state.dim ? "" : "off");
    b.type = "button";
    b.onclick = () => { state.dim = d; dimensionButtons(); draw(); };
    return b;
  }));
}

async function refreshList() {
  const data = await api("GET", "/simulations");
  const list = $("sims");
  list.replaceChildren(...data.simulations.map((s) => {
    const li = el("li", `${s.event_id} · ${s.method} · ${s.status}`, s.id === state.open ? "open" : "");
    li.append(el("br"), el("small", `${s.id} · ${s.steps_done} steps` + (s.parent ? ` · what-if of ${s.parent.id} @${s.parent.step}` : "")));
    li.dataset.id = s.id;
    li.onclick = () => open(s.id);
    return li;
  }));
  $("status").textContent = `${data.live} live of ${data.max_live}`;
}

async function open(id) {
  stopStreams();
  Object.assign(state, { open: id, steps: [], fork: null, forkSteps: [] });
  const info = await api("GET", `/simulations/${id}`);
  $("view").hidden = false;
  $("title").textContent = `${info.event_id} · ${info.method} · seed ${info.seed} (${id})`;
  $("progress").textContent = info.status;
  $("progress").dataset.status = "";  // set again by the stream, so nothing waits on the last one's
  say("");
  draw();
  watch(id, "steps");
  refreshList();
}

// ---- actions --------------------------------------------------------------------------------
async function readUpload(file) {
  if (file.name.endsWith(".parquet")) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return { filename: file.name, content: btoa(bin), encoding: "base64" };
  }
  return { filename: file.name, content: await file.text() };
}

async function create(ev) {
  ev.preventDefault();
  say("");
  const body = { method: $("method").value, start: !$("start-paused").checked };
  for (const f of ["seed", "horizon", "sim_start", "agents_per_step"]) body[f] = parseInt($(f).value, 10);
  const file = $("upload").files[0];
  if (file) body.upload = await readUpload(file); else body.event_id = $("event").value.trim();
  try {
    const info = await api("POST", "/simulations", body);
    await open(info.id);
  } catch (e) { say(e.message, true); }
}

function act(button, fn) {
  $(button).onclick = async () => {
    say("");
    try { await fn(); } catch (e) { say(e.message, true); }
  };
}

act("pause", () => api("POST", `/simulations/${state.open}/pause`));
act("step", () => api("POST", `/simulations/${state.open}/resume`, { steps: 1 }));
act("resume", () => api("POST", `/simulations/${state.open}/resume`));
act("cancel", () => api("POST", `/simulations/${state.open}/cancel`));
act("intervene", async () => {
  const info = await api("POST", `/simulations/${state.open}/intervene`, { posts: [$("post").value] });
  say(`post planned for step ${info.step}`);
  $("post").value = "";
});
act("set-signal", async () => {
  const info = await api("POST", `/simulations/${state.open}/signal`, { text: $("signal").value });
  say(`signal set from step ${info.step}`);
});
act("fork", async () => {
  const step = parseInt($("fork-step").value, 10);
  const child = await api("POST", `/simulations/${state.open}/fork`, { step, start: false });
  if ($("fork-post").value.trim()) {
    await api("POST", `/simulations/${child.id}/intervene`, { posts: [$("fork-post").value], step });
  }
  await api("POST", `/simulations/${child.id}/resume`);
  state.fork = child.id;
  state.forkSteps = [];
  watch(child.id, "forkSteps");
  say(`what-if ${child.id} from step ${step}`);
  refreshList();
});

async function start() {
  const health = await (await fetch("/health")).json();
  $("auth").hidden = !health.auth;
  $("token").value = sessionStorage.getItem("mfray-token") || "";
  $("token").onchange = () => { sessionStorage.setItem("mfray-token", $("token").value); boot(); };
  $("create").onsubmit = create;
  dimensionButtons();
  boot();
}

async function boot() {
  try {
    const methods = await api("GET", "/methods");
    $("method").replaceChildren(...methods.methods.map((m) => {
      const o = el("option", m.name + (m.available ? "" : " (not loaded here)"));
      o.value = m.name;
      o.title = m.summary;  // the one-line description, on hover
      o.disabled = !m.available;
      o.selected = m.name === "mf";
      return o;
    }));
    const events = await api("GET", "/events");
    $("events").replaceChildren(...events.events.map((e) => { const o = el("option"); o.value = e.id; return o; }));
    if (!$("event").value && events.events.length) $("event").value = events.events[0].id;
    await refreshList();
  } catch (e) { $("status").textContent = e.message; }
}

start();
