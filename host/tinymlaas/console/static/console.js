// tinymlaas console: the small amount of script the pages need. Plain DOM, no framework, no build step.
// Text from the service (endpoint names, labels, reasons) is only ever set with textContent, never as HTML.
"use strict";

const $ = (sel, root) => (root || document).querySelector(sel);
const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";

// A JSON API call with the session's CSRF token; resolves to the parsed body or throws Error(message).
async function api(method, url, body) {
  const opts = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf();
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const resp = await fetch(url, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) throw new Error((data && data.error) || (resp.status + " " + resp.statusText));
  return data;
}

function el(tag, attrs, ...children) {
  const node = tag === "svg" || tag === "rect" ? document.createElementNS("http://www.w3.org/2000/svg", tag)
                                                : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function human(v, unit) {
  if (v === null || v === undefined) return "–";
  if (unit !== "B") return String(v);
  let i = 0;
  const names = ["B", "KB", "MB", "GB"];
  while (Math.abs(v) >= 1024 && i < 3) { v /= 1024; i++; }
  return (i ? v.toPrecision(3) : String(v)) + " " + names[i];
}

function ago(t) {
  const s = Math.abs(Date.now() / 1000 - t);
  const text = s < 90 ? Math.round(s) + " s" : s < 5400 ? Math.round(s / 60) + " min"
             : s < 129600 ? Math.round(s / 3600) + " h" : Math.round(s / 86400) + " d";
  return t > Date.now() / 1000 ? "in " + text : text + " ago";
}

function timeCell(t) {
  if (!t) return document.createTextNode("–");
  const iso = new Date(t * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  return el("time", { datetime: iso, title: iso, "data-t": String(t), text: ago(t) });
}

function badge(state, cls) { return el("span", { class: "badge " + cls, text: state }); }

function bar(done, total) {
  const pct = total ? Math.max(0, Math.min(100, 100 * done / total)) : 0;
  return el("svg", { class: "bar wide", viewBox: "0 0 100 6", preserveAspectRatio: "none", "aria-hidden": "true" },
            el("rect", { class: "track", width: "100", height: "6", rx: "2" }),
            el("rect", { class: "fill" + (pct >= 100 ? " done" : ""), width: pct.toFixed(1), height: "6", rx: "2" }));
}

function show(node, text, cls) { if (node) { node.textContent = text; if (cls) node.className = cls; } }

// ---- every page ------------------------------------------------------------------------------------------
setInterval(() => $$("time[data-t]").forEach(t => { t.textContent = ago(Number(t.dataset.t)); }), 10000);

document.addEventListener("DOMContentLoaded", () => {
  const out = $("#signout");
  if (out) out.addEventListener("click", async () => {
    try { await api("DELETE", "/api/session"); } finally { location.href = "/console/login"; }
  });
  const page = PAGES[document.body.dataset.page];
  if (page) page();
});

// A table filtered as the user types: rows carry data-search (lower case text).
function liveFilter(input, rows, extra) {
  const apply = () => {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const row of rows()) {
      const ok = words.every(w => (row.dataset.search || "").includes(w)) && (!extra || extra(row));
      row.classList.toggle("hidden", !ok);
      shown += ok ? 1 : 0;
    }
    return shown;
  };
  input.addEventListener("input", apply);
  return apply;
}

const PAGES = {
  login() {
    const form = $("#signin");
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      show($("#signin-error"), "");
      try {
        await api("POST", "/api/session", { token: $("#token").value.trim() });
        location.href = form.dataset.next || "/";
      } catch (e) { show($("#signin-error"), e.message); }
    });
  },

  fleet() {
    const rows = () => $$("#fleet tbody tr[data-endpoint]");
    // A fleet larger than one page is filtered by the server: a changed filter reloads the page with it.
    // Otherwise every row is here and the filters work as one types; Enter does not reload.
    const form = $("#fleet-filter"), paged = $("#fleet").dataset.paged === "1";
    form.addEventListener("submit", ev => { if (!paged || document.activeElement === $("#bulk-tag")) ev.preventDefault(); });
    let state = $("#state-value").value;
    const tag = $("#tag-filter"), model = $("#model-filter");
    if (paged) {
      const reload = () => { $("#state-value").value = state; form.submit(); };
      tag.addEventListener("change", reload);
      model.addEventListener("change", reload);
      for (const b of $$("#state-filter button")) b.addEventListener("click", () => { state = b.dataset.state; reload(); });
      // Enter in the search: the whole fleet (no implicit submission: the form has a second text field)
      $("#fleet-search").addEventListener("keydown", ev => { if (ev.key === "Enter") { ev.preventDefault(); reload(); } });
    }
    const apply = liveFilter($("#fleet-search"), rows, row =>
      (!state || row.dataset.state === state) &&
      (!tag.value || row.dataset.tags.split("\n").includes(tag.value)) &&
      (!model.value || row.dataset.model === model.value));
    const count = () => show($("#shown"), apply() + " shown");
    tag.addEventListener("change", count);
    model.addEventListener("change", count);
    $("#fleet-search").addEventListener("input", count);
    for (const b of paged ? [] : $$("#state-filter button")) {
      b.addEventListener("click", () => {
        state = b.dataset.state;
        $$("#state-filter button").forEach(x => x.classList.toggle("on", x === b));
        count();
      });
    }
    count();
    const bulk = $("#bulk");
    if (!bulk) return;
    const picked = () => rows().filter(r => !r.classList.contains("hidden") && $(".pick", r).checked)
                              .map(r => r.dataset.endpoint);
    const update = () => {
      const n = picked().length;
      show($("#selected-count"), n + " selected");
      $("#bulk-add").disabled = $("#bulk-remove").disabled = n === 0;
    };
    $("#select-all").addEventListener("change", ev => {
      rows().filter(r => !r.classList.contains("hidden")).forEach(r => { $(".pick", r).checked = ev.target.checked; });
      update();
    });
    $$(".pick").forEach(c => c.addEventListener("change", update));
    const tagging = which => async () => {
      const t = $("#bulk-tag").value.trim();
      if (!t) { show($("#bulk-msg"), "type a tag first", "small error"); return; }
      try {
        await api("POST", "/api/tags", { devices: picked(), [which]: [t] });
        location.reload();
      } catch (e) { show($("#bulk-msg"), e.message, "small error"); }
    };
    $("#bulk-add").addEventListener("click", tagging("add"));
    $("#bulk-remove").addEventListener("click", tagging("remove"));
    update();
  },

  device() {
    const ep = $("#device-name").textContent;
    const base = "/api/devices/" + encodeURIComponent(ep);
    const refresh = $("#refresh");
    if (refresh) refresh.addEventListener("click", async () => {
      refresh.disabled = true;
      try { await api("POST", base + "/refresh"); location.reload(); }
      catch (e) { show($("#op-status"), "re-read failed: " + e.message, "body small error"); refresh.disabled = false; }
    });
    deviceObjects(ep, base);
    inferenceForm(ep, base);
  },

  models() {
    const form = $("#upload");
    if (!form) return;
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      const msg = $("#upload-msg");
      show(msg, "uploading and compiling… (a Keras model takes a while)", "small");
      const button = $("button[type=submit]", form);
      button.disabled = true;
      try {
        const data = new FormData();
        for (const input of $$("input[name]", form)) {       // empty file inputs are left out, not sent as ""
          if (input.type === "file") { if (input.files[0]) data.append(input.name, input.files[0], input.files[0].name); }
          else if (input.value.trim()) data.append(input.name, input.value.trim());
        }
        const answer = await api("POST", "/api/models", data);
        const m = answer.model || answer;
        location.href = "/console/models/" + encodeURIComponent(m.name) + "?version=" + encodeURIComponent(m.version);
      } catch (e) { show(msg, e.message, "small error"); button.disabled = false; }
    });
  },

  deployments() {
    const form = $("#create");
    if (!form) return;
    const rows = () => $$("#targets tbody tr[data-endpoint]");
    const canaries = () => Number($("#pick-canaries").value) || 0;
    const select = pred => {
      let n = 0;
      for (const r of rows()) {
        const on = pred(r);
        $(".target", r).checked = on;
        $(".canary", r).checked = on && n < canaries();
        n += on ? 1 : 0;
      }
      summary();
    };
    const summary = () => {
      const t = rows().filter(r => $(".target", r).checked).length;
      const c = rows().filter(r => $(".target", r).checked && $(".canary", r).checked).length;
      show($("#create-summary"), t + " device" + (t === 1 ? "" : "s") + (c ? ", " + c + " canar" + (c === 1 ? "y" : "ies") + " first" : ""));
    };
    $("#pick-all").addEventListener("click", () => select(() => true));
    $("#pick-clear").addEventListener("click", () => select(() => false));
    $("#pick-tag").addEventListener("change", ev => { if (ev.target.value) select(r => r.dataset.tags.split("\n").includes(ev.target.value)); });
    $("#pick-percent-go").addEventListener("click", () => {
      // a percentage of the registered fleet: the first ceil(p * n) devices of a shuffled order, shown before
      // the deployment is made so the operator sees (and may change) exactly who gets it
      const p = Math.max(0, Math.min(100, Number($("#pick-percent").value) || 0));
      const all = rows().map(r => r.dataset.endpoint);
      for (let i = all.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [all[i], all[j]] = [all[j], all[i]]; }
      const chosen = new Set(all.slice(0, Math.ceil(p / 100 * all.length)));
      select(r => chosen.has(r.dataset.endpoint));
    });
    rows().forEach(r => $$("input", r).forEach(c => c.addEventListener("change", summary)));
    if (rows().some(r => $(".target", r).checked)) select(r => $(".target", r).checked);
    summary();
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      show($("#create-error"), "");
      const targets = rows().filter(r => $(".target", r).checked);
      const body = { model: $("#dep-model").value, devices: targets.map(r => r.dataset.endpoint),
                     canary: targets.filter(r => $(".canary", r).checked).map(r => r.dataset.endpoint) };
      try {
        const dep = await api("POST", "/api/deployments", body);
        location.href = "/console/deployments/" + dep.id;
      } catch (e) { show($("#create-error"), e.message); }
    });
  },

  deployment() {
    const id = $("#deployment").dataset.id;
    const live = $("#live");
    const classes = JSON.parse($("#badge-classes").textContent);
    const render = dep => {
      $("#dep-state").replaceChildren(badge(dep.state, classes[dep.state] || "idle"));
      show($("#dep-reason"), dep.reason || "");
      const counts = {};
      for (const d of dep.devices) {
        counts[d.state] = (counts[d.state] || 0) + 1;
        const row = $$("#dep-devices tbody tr").find(r => r.dataset.endpoint === d.endpoint);
        if (!row) continue;
        $(".state", row).replaceChildren(badge(d.state, classes[d.state] || "idle"));
        const prog = $(".progress", row);
        if (d.delivered) prog.replaceChildren(bar(d.delivered[0], d.delivered[1]),
          el("span", { class: "small", text: human(d.delivered[0], "B") + " / " + human(d.delivered[1], "B") }));
        show($(".variant", row), d.variant_id || "–");
        show($(".reason", row), d.reason || "");
        $(".updated", row).replaceChildren(timeCell(d.updated_at));
      }
      show($("#dep-counts"), Object.entries(counts).map(([k, v]) => v + " " + k).join(" · "));
      const body = $("#dep-history tbody");
      body.replaceChildren(...dep.history.map(h => el("tr", {},
        el("td", { class: "nowrap" }, timeCell(h.at)), el("td", { class: "endpoint", text: h.endpoint }),
        el("td", {}, badge(h.state, classes[h.state] || "idle")), el("td", { class: "small", text: h.message || "" }))));
      const halt = $("#halt");
      if (halt) halt.disabled = dep.state !== "running";
      const back = $("#rollback");
      if (back) back.disabled = dep.state === "running" ||
        !dep.devices.some(d => d.state === "active" && d.previous && d.previous.sha256);
    };
    const source = new EventSource("/api/deployments/" + id + "/events");
    source.onmessage = ev => { render(JSON.parse(ev.data)); show(live, "live", "small okmsg"); };
    source.addEventListener("end", () => { source.close(); show(live, "finished", "small"); });
    source.onerror = () => show(live, "reconnecting…", "small error");
    for (const [button, action] of [["#halt", "halt"], ["#rollback", "rollback"]]) {
      const b = $(button);
      if (b) b.addEventListener("click", async () => {
        if (!confirm(action === "halt" ? "Halt this deployment? Devices not yet updated are skipped."
                                       : "Reinstall each updated device's previous model?")) return;
        b.disabled = true;
        try { await api("POST", "/api/deployments/" + id + "/" + action); location.reload(); }
        catch (e) { show($("#dep-reason"), e.message, "small error"); b.disabled = false; }
      });
    }
  },

  audit() { liveFilter($("#audit-search"), () => $$("#audit tbody tr[data-search]")); },

  tokens() {
    $("#new-token").addEventListener("submit", async ev => {
      ev.preventDefault();
      show($("#token-error"), "");
      try {
        const t = await api("POST", "/api/tokens", { name: $("#token-name").value, role: $("#token-role").value });
        show($("#token-secret"), t.token);
        $("#token-made").hidden = false;
      } catch (e) { show($("#token-error"), e.message); }
    });
    $$("#tokens .revoke").forEach(b => b.addEventListener("click", async () => {
      const id = b.closest("tr").dataset.id;
      if (!confirm("Revoke token " + id + "? Its sessions end at once.")) return;
      try { await api("DELETE", "/api/tokens/" + encodeURIComponent(id)); location.reload(); }
      catch (e) { show($("#token-error"), e.message); }
    }));
  },
};

// ---- device page: the LwM2M object tree and the inference form -------------------------------------------
function formatValue(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function deviceObjects(ep, base) {
  // the web API's device management (web/lwm2m.py): values come as [{path, type, value}]
  const status = $("#op-status");
  if (!status) return;
  const cell = path => { const row = $$("#objects tr[data-path]").find(r => r.dataset.path === path); return row && $(".value", row); };
  const put = values => {
    for (const { path, value } of values || []) {
      const c = cell(path) || cell(path.split("/").slice(0, 4).join("/"));   // /3/0/6/1 lands in /3/0/6's row
      if (!c) continue;
      const multiple = path.split("/").length > 4;
      const type = c.closest("tr").dataset.type;
      const text = type === "Time" && typeof value === "number"
        ? new Date(value * 1000).toISOString().replace(/\.\d+Z$/, "Z") + " (" + value + ")" : formatValue(value);
      c.textContent = multiple && c.dataset.filled === "1" ? c.textContent + ", " + text : text;
      c.dataset.filled = "1";
      c.classList.add("changed");
      setTimeout(() => { c.classList.remove("changed"); c.dataset.filled = ""; }, 1500);
    }
  };
  const run = async (label, fn) => {
    show(status, label + "…", "body small");
    try { const r = await fn(); show(status, label + ": " + (r || "done"), "body small okmsg"); }
    catch (e) { show(status, label + " failed: " + e.message, "body small error"); }
  };
  const lwm2m = path => base + "/lwm2m" + path;
  const read = async path => { const r = await api("GET", lwm2m(path)); put(r.values); return "2.05 Content (" + r.format + ")"; };
  $$("#objects .read-instance").forEach(b => b.addEventListener("click", () => run("read " + b.dataset.path, () => read(b.dataset.path))));
  const observed = new Set();
  let events = null;
  const listen = () => {
    if (events) return;
    events = new EventSource("/api/events?endpoint=" + encodeURIComponent(ep));
    events.addEventListener("notification", ev => {
      const note = JSON.parse(ev.data);
      if (!observed.has(note.path)) return;
      put(note.values);
      show(status, "notification " + note.count + " for " + note.path, "body small okmsg");
    });
    events.addEventListener("observation-ended", ev => {
      const note = JSON.parse(ev.data);
      if (observed.delete(note.path)) show(status, "the device ended the observation of " + note.path, "body small error");
    });
  };
  for (const row of $$("#objects tr[data-path]")) {
    const path = row.dataset.path;
    const on = (sel, fn) => { const b = $(sel, row); if (b) b.addEventListener("click", () => fn(b)); };
    on(".op-read", () => run("read " + path, () => read(path)));
    on(".op-execute", () => run("execute " + path, async () => (await api("POST", lwm2m(path), {})).code));
    on(".op-write", () => {
      const v = prompt("Value to write to " + path + " (" + row.dataset.type + (row.dataset.type === "Opaque" ? ", hex" : "") + ")");
      if (v === null) return;
      const value = /^(Integer|Float|Unsigned Integer|Time)$/.test(row.dataset.type) && v.trim() !== "" ? Number(v) : v;
      run("write " + path, async () => (await api("PUT", lwm2m(path), { value })).code);
    });
    on(".op-observe", b => {
      if (observed.has(path)) {
        run("cancel observation of " + path, async () => {
          await api("DELETE", lwm2m(path) + "/observe");
          observed.delete(path);
          b.textContent = "Observe";
          return "cancelled";
        });
        return;
      }
      run("observe " + path, async () => {
        listen();
        const r = await api("POST", lwm2m(path) + "/observe", {});
        if (!r.active) return "the device answered without starting an observation";
        observed.add(r.path);
        put(r.values);
        b.textContent = "Stop";
        return "observing; notifications appear here as they come";
      });
    });
  }
}

function parseValues(text) {
  const t = text.trim();
  if (!t) return null;
  if (t.startsWith("[")) return JSON.parse(t);
  return t.split(/[\s,;]+/).filter(Boolean).map(x => {
    const n = Number(x);
    if (Number.isNaN(n)) throw new Error("not a number: " + x);
    return n;
  });
}

// A NumPy .npy file (format 1.0-3.0, little-endian or byte-sized numbers, C order) -> a flat array of numbers.
function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((m, i) => bytes[i] !== m)) throw new Error("not a .npy file (no \\x93NUMPY magic)");
  const view = new DataView(buffer);
  const major = bytes[6];
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = (major === 1 ? 10 : 12) + headerLen;
  if (start > bytes.length) throw new Error(".npy header longer than the file");
  const header = new TextDecoder("latin1").decode(bytes.subarray(major === 1 ? 10 : 12, start));
  const descr = (header.match(/'descr':\s*'([^']+)'/) || [])[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(".npy in Fortran order is not supported");
  const types = { "<f4": [4, "getFloat32"], "<f8": [8, "getFloat64"], "|i1": [1, "getInt8"], "|u1": [1, "getUint8"],
                  "<i2": [2, "getInt16"], "<i4": [4, "getInt32"], "<u2": [2, "getUint16"], "<i8": [8, "getBigInt64"] };
  const type = types[descr];
  if (!type) throw new Error(".npy dtype " + descr + " is not supported (float32/64, int8/16/32/64, uint8/16)");
  const [size, getter] = type;
  const n = Math.floor((bytes.length - start) / size);
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = Number(view[getter](start + i * size, true));
  return out;
}

async function inputFromFile(file) {
  if (file.size > 4 << 20) throw new Error("input file larger than 4 MB");
  if (/\.npy$/i.test(file.name)) return parseNpy(await file.arrayBuffer());
  const data = JSON.parse(await file.text());
  return Array.isArray(data) ? data : data.input;
}

function inferenceForm(ep, base) {
  const form = $("#infer");
  if (!form || !$("button[type=submit]", form)) return;
  const labels = JSON.parse(($("#model-labels") || { textContent: "[]" }).textContent);
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    show($("#infer-error"), "");
    const button = $("button[type=submit]", form);
    button.disabled = true;
    try {
      const file = $("#infer-file").files[0];
      const input = file ? await inputFromFile(file) : parseValues($("#infer-values").value);
      if (!input) throw new Error("choose a file or type the input values");
      const resp = await api("POST", base + "/infer", { input });
      const r = resp.results[0];
      showResult(r, labels);
      if ($("#infer-keep").checked) {
        await api("POST", base + "/telemetry/results", { model: resp.model, class: r["class"], label: r.label,
          scores: r.scores, latency_us: r.latency_us });
        show($("#infer-error"), "kept", "okmsg");
      }
    } catch (e) { show($("#infer-error"), e.message, "error"); }
    finally { button.disabled = false; }
  });
}

function showResult(r, labels) {
  $("#infer-result").hidden = false;
  show($("#infer-label"), r.label === null || r.label === undefined ? "(no label)" : String(r.label));
  show($("#infer-class"), String(r["class"]));
  show($("#infer-latency"), r.latency_us === undefined || r.latency_us === null ? "–" : (r.latency_us / 1000).toFixed(2) + " ms on the device");
  const scores = r.scores || [];
  const lo = Math.min(...scores, 0), hi = Math.max(...scores, 1e-9);
  $("#infer-scores").replaceChildren(...scores.flatMap((s, i) => {
    const top = i === r["class"];
    return [el("span", { class: top ? "top" : "", text: labels[i] !== undefined ? labels[i] : "class " + i }),
            bar(s - lo, hi - lo), el("span", { class: "mono" + (top ? " top" : ""), text: s.toFixed(4) })];
  }));
}
