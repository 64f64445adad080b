/* Shipyard dashboard: plain JavaScript, no framework, no build step.
 *
 * Everything comes from this server's own API:
 *   POST /v2/repository/index      models, versions, state and load errors
 *   GET  /v2/models/{m}/versions/{v}  metadata (platform, inputs, outputs) of ready versions
 *   GET  /dashboard/api/stats      counters, gauges and histograms, polled every second: the
 *                                  charts show the difference between two polls
 *   GET  /dashboard/api/models     the try-it form of each model
 *   POST /v2/models/{m}/predict    (and /infer for the tensor editor) the try-it calls
 * A server with --auth-token needs the token on every one of these: type it in the header
 * (kept in this tab's sessionStorage, sent as "Authorization: Bearer <token>").
 *
 * window.shipyardDashboard exposes the state (chart data, poll count, try-it answers) for
 * tests and for the curious.
 */
"use strict";
(() => {
  const POLL_MS = 1000;
  const INDEX_EVERY = 5;   // stats polls between two refreshes of the model table
  const KEEP = 120;        // points per chart (2 minutes)
  const QUANTILES = [["p50", 0.5], ["p90", 0.9], ["p99", 0.99]];
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563",
    "#db2777"];

  const $ = (selector, root = document) => root.querySelector(selector);
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  const dash = {
    polls: 0,            // stats polls answered
    stats: null,         // the latest /dashboard/api/stats body
    index: [],           // the latest repository index rows
    names: [],           // the models charted (series order)
    data: {},            // chart name -> uPlot data ([times, ...series])
    charts: {},          // chart name -> uPlot instance
    forms: {},           // model -> its /dashboard/api/models entry
    answers: {},         // model -> the latest try-it answer {status, text, ms}
    metadata: {},        // "model/version" -> metadata
    errors: [],          // API errors seen (status, path, message)
  };
  window.shipyardDashboard = dash;

  // -- calls ---------------------------------------------------------------------------------

  const tokenInput = $("#token");
  tokenInput.value = sessionStorage.getItem("shipyard.token") || "";
  $("#token-form").addEventListener("submit", (e) => {  // Enter: take the token, stay here
    e.preventDefault();
    tokenInput.dispatchEvent(new Event("change"));
  });
  tokenInput.addEventListener("change", () => {
    sessionStorage.setItem("shipyard.token", tokenInput.value.trim());
    dash.metadata = {};
    refreshModels();
  });

  async function call(method, path, body) {
    const headers = {};
    const token = tokenInput.value.trim();
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const started = performance.now();
    const response = await fetch(path, { method, headers, body, cache: "no-store" });
    const text = await response.text();
    const ms = performance.now() - started;
    let json = null;
    try { json = JSON.parse(text); } catch (e) { json = null; }
    if (!response.ok) {
      const message = json && json.error ? json.error : text;
      dash.errors.push({ status: response.status, path, message });
      if (response.status === 401) setStatus("this server needs a token: type it above", true);
    }
    return { status: response.status, ok: response.ok, text, json, ms };
  }

  function setStatus(text, bad) {
    const status = $("#status");
    status.textContent = text;
    status.className = bad ? "pill bad" : "muted";
  }

  // -- header and model table ----------------------------------------------------------------

  async function refreshServer() {
    const meta = await call("GET", "/v2");
    if (meta.ok) $("#server").textContent = `${meta.json.name} ${meta.json.version}`;
    const ready = await call("GET", "/v2/health/ready");
    const pill = $("#health");
    pill.textContent = ready.ok ? "ready" : "not ready";
    pill.className = "pill " + (ready.ok ? "ok" : "bad");
  }

  function shapeText(spec) {
    return `${spec.name} ${spec.datatype} [${spec.shape.join(", ")}]`;
  }

  async function refreshModels() {
    const index = await call("POST", "/v2/repository/index", "{}");
    if (!index.ok) return;
    dash.index = index.json;
    const wanted = dash.index.filter((row) => row.state === "READY" && row.version !== "")
      .map((row) => `${row.name}/${row.version}`).filter((key) => !(key in dash.metadata));
    await Promise.all(wanted.map(async (key) => {
      const [name, version] = key.split("/");
      const meta = await call("GET", `/v2/models/${encodeURIComponent(name)}/versions/${version}`);
      if (meta.ok) dash.metadata[key] = meta.json;
    }));
    renderModels();
    const forms = await call("GET", "/dashboard/api/models");
    if (forms.ok) renderTryIt(forms.json.models);
  }

  function requestsOf(name, version) {
    const row = dash.stats && dash.stats.models.find(
      (m) => m.name === name && m.version === version);
    return row ? row.success + row.failure : "";
  }

  function renderModels() {
    const body = $("#models tbody");
    body.replaceChildren(...dash.index.map((row) => {
      const meta = dash.metadata[`${row.name}/${row.version}`];
      return el("tr", { "data-model": row.name, "data-version": row.version },
        el("td", { text: row.name }),
        el("td", { text: row.version || "–" }),
        el("td", { class: "state" }, el("span", { class: "state-" + row.state, text: row.state })),
        el("td", { text: meta ? meta.platform : "" }),
        el("td", {}, meta ? el("code", { text: meta.inputs.map(shapeText).join("; ") }) : ""),
        el("td", {}, meta ? el("code", { text: meta.outputs.map(shapeText).join("; ") }) : ""),
        el("td", { class: "requests", text: requestsOf(row.name, row.version) }),
        el("td", { class: "reason", text: row.reason || "" }));
    }));
  }

  // -- charts --------------------------------------------------------------------------------

  /** The q quantile of a histogram's counts (per bucket, the last above every bound), linear
   * inside its bucket as Prometheus' histogram_quantile (the server's figures.py does the same
   * for the percentiles since start). null without observations. */
  function quantile(bounds, counts, q) {
    const total = counts.reduce((a, b) => a + b, 0);
    if (!total) return null;
    const rank = q * total;
    let below = 0;
    for (let i = 0; i < counts.length; i++) {
      const count = counts[i];
      if (count && below + count >= rank) {
        if (i === bounds.length) return bounds[bounds.length - 1];
        const lower = i > 0 ? bounds[i - 1] : 0;
        return lower + (bounds[i] - lower) * Math.max(0, rank - below) / count;
      }
      below += count;
    }
    return bounds[bounds.length - 1];
  }

  /** Per model name (its versions summed): the figures of one stats body. */
  function byModel(stats) {
    const out = new Map();
    for (const row of stats.models) {
      let m = out.get(row.name);
      if (!m) {
        m = { requests: 0, inferences: 0, executions: 0, queue: null,
          bounds: row.latency_seconds.bounds, latency: row.latency_seconds.counts.map(() => 0) };
        out.set(row.name, m);
      }
      m.requests += row.success + row.failure;
      m.inferences += row.inference_count;
      m.executions += row.execution_count;
      if (row.queue_depth !== null) m.queue = (m.queue || 0) + row.queue_depth;
      row.latency_seconds.counts.forEach((c, i) => { m.latency[i] += c; });
    }
    return out;
  }

  const CHARTS = {
    rate: { title: "Request rate", unit: "requests/s", perModel: true },
    latency: { title: "Latency (requests between polls)", unit: "ms", perModel: false },
    queue: { title: "Queue depth", unit: "requests waiting", perModel: true },
    batch: { title: "Mean batch size", unit: "rows per execution", perModel: true },
  };

  function buildCharts(names) {
    dash.names = names;
    for (const [key, spec] of Object.entries(CHARTS)) {
      const target = $("#chart-" + key);
      target.replaceChildren();
      const labels = spec.perModel ? names : QUANTILES.map(([label]) => label);
      const series = [{}, ...labels.map((label, i) => ({
        label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false,
        value: (u, v) => (v === null || v === undefined ? "–" : v.toFixed(2)),
      }))];
      dash.data[key] = [[], ...labels.map(() => [])];
      dash.charts[key] = new uPlot({
        title: spec.title, width: Math.max(300, target.clientWidth - 12), height: 200,
        scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] } },
        series, axes: [{}, { label: spec.unit, size: 56 }],
        cursor: { drag: { x: false, y: false } },
      }, dash.data[key], target);
    }
    const scope = $("#scope");
    const chosen = scope.value;
    scope.replaceChildren(el("option", { value: "", text: "all models" }),
      ...names.map((name) => el("option", { value: name, text: name })));
    scope.value = names.includes(chosen) ? chosen : "";
  }

  function push(key, t, values) {
    const data = dash.data[key];
    data[0].push(t);
    values.forEach((v, i) => data[i + 1].push(v));
    if (data[0].length > KEEP) data.forEach((column) => column.shift());
    dash.charts[key].setData(data);
  }

  function fmt(v, digits) {
    return v === null || v === undefined || Number.isNaN(v) ? "–" : v.toFixed(digits);
  }

  function onStats(previous, stats) {
    const names = [...new Set(stats.models.map((m) => m.name))].sort();
    if (names.join("\n") !== dash.names.join("\n")) buildCharts(names);
    const now = byModel(stats);
    const t = stats.time_ms / 1000;
    let total = 0;
    for (const m of now.values()) total += m.requests;
    $("#tile-total").textContent = String(total);
    $("#window").textContent = stats.workers > 1 ? `(${stats.workers} workers, summed)` : "";
    if (!previous) return;  // rates need two polls
    const before = byModel(previous);
    const dt = (stats.time_ms - previous.time_ms) / 1000;
    if (dt <= 0) return;
    const delta = (name, field) => {
      const a = before.get(name);
      const d = now.get(name)[field] - (a ? a[field] : 0);
      return d >= 0 ? d : null;  // a counter that went back: the version was reloaded
    };
    const rates = names.map((name) => { const d = delta(name, "requests"); return d === null ? null : d / dt; });
    const queues = names.map((name) => now.get(name).queue);
    const batches = names.map((name) => {
      const e = delta(name, "executions");
      const r = delta(name, "inferences");
      return e && r !== null ? r / e : null;
    });
    const scope = $("#scope").value;
    const bounds = stats.models.length ? stats.models[0].latency_seconds.bounds : [];
    const recent = bounds.map(() => 0).concat([0]);
    for (const name of names) {
      if (scope && name !== scope) continue;
      const a = before.get(name);
      const b = now.get(name);
      b.latency.forEach((c, i) => { recent[i] += Math.max(0, c - (a ? a.latency[i] : 0)); });
    }
    const percentiles = QUANTILES.map(([, q]) => {
      const s = quantile(bounds, recent, q);
      return s === null ? null : s * 1000;
    });
    push("rate", t, rates);
    push("latency", t, percentiles);
    push("queue", t, queues);
    push("batch", t, batches);
    $("#tile-rate").textContent = fmt(rates.reduce((a, b) => a + (b || 0), 0), 1);
    $("#tile-latency").textContent = `${fmt(percentiles[0], 2)} / ${fmt(percentiles[2], 2)}`;
    $("#tile-queue").textContent = String(queues.reduce((a, b) => a + (b || 0), 0));
  }

  async function poll() {
    try {
      const answer = await call("GET", "/dashboard/api/stats");
      if (answer.ok) {
        const previous = dash.stats;
        dash.stats = answer.json;
        dash.polls += 1;
        onStats(previous, dash.stats);
        for (const cell of document.querySelectorAll("#models tr[data-model] td.requests")) {
          const row = cell.parentElement;
          cell.textContent = requestsOf(row.dataset.model, row.dataset.version);
        }
        if (dash.polls % INDEX_EVERY === 0) {
          await refreshModels();
          await refreshServer();
        }
        setStatus(`updated ${new Date(dash.stats.time_ms).toLocaleTimeString()}`, false);
      }
    } catch (e) {
      setStatus("server unreachable: " + e.message, true);
    }
    setTimeout(poll, POLL_MS);
  }

  window.addEventListener("resize", () => {
    for (const [key, chart] of Object.entries(dash.charts)) {
      chart.setSize({ width: Math.max(300, $("#chart-" + key).clientWidth - 12), height: 200 });
    }
  });

  // -- try it --------------------------------------------------------------------------------

  const NUMERIC = /^(FP|INT|UINT)/;

  function rowForm(form) {
    const fields = el("div", { class: "fields" });
    for (let i = 0; i < form.width; i++) {
      fields.append(el("label", {}, `${form.input}[${i}]`,
        el("input", { type: "number", step: "any", name: `v${i}`, "data-index": String(i) })));
    }
    const paste = el("input", { class: "paste", type: "text",
      placeholder: `paste a row: ${form.width} numbers, comma or space separated` });
    paste.addEventListener("input", () => {
      const values = paste.value.split(/[\s,;]+/).filter((v) => v !== "");
      fields.querySelectorAll("input").forEach((input, i) => {
        input.value = i < values.length ? values[i] : "";
      });
    });
    const body = () => {
      const values = [];
      for (const input of fields.querySelectorAll("input")) {
        const v = Number(input.value);
        if (input.value.trim() === "" || !Number.isFinite(v)) {
          throw new Error(`${form.input}[${input.dataset.index}] needs a number`);
        }
        values.push(v);
      }
      return { features: values };
    };
    return { nodes: [paste, fields], body };
  }

  function columnsForm(form) {
    const fields = el("div", { class: "fields" });
    for (const field of form.fields) {
      const numeric = NUMERIC.test(field.datatype);
      fields.append(el("label", {}, `${field.name} (${field.datatype})`,
        el("input", { type: numeric ? "number" : "text", step: "any", name: field.name,
          "data-numeric": numeric ? "1" : "" })));
    }
    const body = () => {
      const row = {};
      for (const input of fields.querySelectorAll("input")) {
        if (input.dataset.numeric) row[input.name] = input.value.trim() === "" ? null : Number(input.value);
        else row[input.name] = input.value;
      }
      return { features: row };
    };
    return { nodes: [fields], body };
  }

  function textsForm(form) {
    const box = el("textarea", { name: form.input, placeholder: "a text to classify" });
    const body = () => {
      if (!box.value.trim()) throw new Error("type a text first");
      return { text: [box.value] };
    };
    return { nodes: [box], body };
  }

  function imagesForm(form, predict) {
    const input = el("input", { type: "file", accept: "image/*", name: form.input });
    const preview = el("img", { alt: "" });
    preview.hidden = true;
    const drop = el("label", { class: "drop" }, preview,
      el("span", { text: "Drop an image here, or choose a file: " }), input);
    let file = null;
    const take = (f) => {
      file = f;
      if (preview.src) URL.revokeObjectURL(preview.src);
      preview.src = URL.createObjectURL(f);
      preview.hidden = false;
      predict();
    };
    input.addEventListener("change", () => { if (input.files.length) take(input.files[0]); });
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files.length) take(e.dataTransfer.files[0]);
    });
    const body = () => new Promise((resolve, reject) => {
      if (!file) { reject(new Error("choose an image first")); return; }
      const reader = new FileReader();
      reader.onload = () => resolve({ images: [reader.result] });  // a data: URL
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
    return { nodes: [drop], body };
  }

  function tensorForm(form) {
    const box = el("textarea", { class: "tensor", spellcheck: false,
      value: JSON.stringify(form.request) });
    const body = () => JSON.parse(box.value);
    return { nodes: [box], body, infer: true };
  }

  function renderAnswer(target, answer) {
    target.replaceChildren();
    target.dataset.state = answer.ok ? "ok" : "error";
    target.dataset.seq = String(Number(target.dataset.seq || 0) + 1);
    target.append(el("div", {}, el("span", { class: "latency", text: `${answer.ms.toFixed(1)} ms` }),
      el("span", { class: "muted", text: answer.status ? ` round trip, HTTP ${answer.status}` : "" })));
    const json = answer.json;
    if (!answer.ok) {
      target.append(el("div", { class: "message", text: json && json.error ? json.error : answer.text }));
    } else if (json.predictions) {
      const table = el("table", { class: "predictions" },
        el("tr", {}, el("th", { text: "label" }), el("th", { text: "probability" })));
      for (const p of json.predictions[0]) {
        const bar = el("span", { class: "bar" });
        bar.style.width = `${Math.round(80 * (p.probability || 0))}px`;
        table.append(el("tr", {}, el("td", { class: "label", text: p.label }),
          el("td", {}, bar, p.probability === undefined ? "" : p.probability.toFixed(4))));
      }
      target.append(el("div", {}, "prediction: ", el("b", { class: "top", text: json.labels[0] })), table);
    } else if (json.result) {
      const first = json.result[0];
      target.append(el("div", {}, "result: ", el("b", { class: "top",
        text: Array.isArray(first) ? JSON.stringify(first) : String(first) })));
      if (json.labels) target.append(el("div", {}, "label: ", el("b", { class: "label", text: json.labels[0] })));
    } else if (json.outputs) {
      for (const out of json.outputs) {
        const data = out.data || [];
        const shown = data.slice(0, 12).map((v) => (typeof v === "number" ? +v.toFixed(4) : v));
        target.append(el("div", { class: "tensor" },
          `${out.name} ${out.datatype} [${out.shape.join(", ")}]: ${JSON.stringify(shown)}${data.length > 12 ? " …" : ""}`));
      }
    }
    target.append(el("details", {}, el("summary", { text: "answer (JSON)" }),
      el("pre", { class: "raw", text: answer.text })));
  }

  function tryItCard(entry) {
    const form = entry.form;
    const card = el("article", { class: "card tryit", "data-model": entry.name,
      "data-kind": form ? form.kind : "" });
    card.append(el("h3", {}, entry.name, " ", el("span", { class: "muted small",
      text: entry.version ? `version ${entry.version} · ${form.kind}` : "" })));
    if (entry.description) card.append(el("p", { class: "desc", text: entry.description }));
    if (!form) {
      card.append(el("div", { class: "reason", text: entry.reason }));
      return card;
    }
    const result = el("div", { class: "tryit-result", "data-state": "idle" });
    const button = el("button", { type: "button", text: "Predict" });
    let busy = false;
    const predict = async () => {
      if (busy) return;
      busy = true;
      button.disabled = true;
      try {
        const body = await built.body();
        const path = `/v2/models/${encodeURIComponent(entry.name)}/${built.infer ? "infer" : "predict"}`;
        const answer = await call("POST", path, JSON.stringify(body));
        dash.answers[entry.name] = { status: answer.status, text: answer.text, ms: answer.ms,
          request: body };
        renderAnswer(result, answer);
      } catch (e) {
        renderAnswer(result, { ok: false, status: 0, text: e.message, json: null, ms: 0 });
      } finally {
        busy = false;
        button.disabled = false;
      }
    };
    const makers = { row: rowForm, columns: columnsForm, texts: textsForm, images: imagesForm,
      tensor: tensorForm };
    const built = makers[form.kind](form, predict);
    button.addEventListener("click", predict);
    card.append(...built.nodes, el("div", { class: "actions" }, button), result);
    return card;
  }

  function renderTryIt(entries) {
    const holder = $("#tryit");
    const signature = (e) => `${e.name}/${e.version}/${e.form ? JSON.stringify(e.form).length : ""}`;
    const seen = Object.values(dash.forms).map(signature).join("|");
    if (seen === entries.map(signature).join("|")) return;  // unchanged: keep what was typed
    dash.forms = Object.fromEntries(entries.map((e) => [e.name, e]));
    holder.replaceChildren(...entries.map(tryItCard));
  }

  // -- start ---------------------------------------------------------------------------------

  (async () => {
    try {
      await refreshServer();
      await refreshModels();
    } catch (e) {
      setStatus("server unreachable: " + e.message, true);
    }
    poll();
  })();
})();
