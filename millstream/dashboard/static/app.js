// The dashboard page: one EventSource (it reconnects by itself), a small store, and views
// chosen by the URL's hash: #/ (plant), #/area/A, #/line/A/L, #/machine/PATH, #/tag/PATH.
import { h, fmt, time, last, machineCard, alarmRow, commandRow, anomalyRow, fillTable } from "./views.js";
import { Trend, chartData } from "./trend.js";

const S = {
  plant: null, config: {}, machines: new Map(), tags: new Map(),
  twins: new Map(), alarms: new Map(), alerts: {}, anomalies: [], commands: new Map(),
  tag: null, range: "live", history: null, feed: {},
};
const RANGES = [["live", "Live"], [15 * 60e3, "15 min"], [3600e3, "1 h"], [6 * 3600e3, "6 h"],
  [24 * 3600e3, "24 h"], [7 * 86400e3, "7 d"], [30 * 86400e3, "30 d"]];
const $ = (id) => document.getElementById(id);
let es = null, route = { kind: "plant" }, trend = null, pending = false, streamTag = null;

// -- the event stream ------------------------------------------------------------------
function connect() {
  const tag = route.kind === "tag" ? route.path : null;
  if (es && streamTag === tag) return;
  if (es) es.close();
  streamTag = tag;
  setConn("connecting");
  es = new EventSource(`/api/events${tag ? `?tag=${encodeURIComponent(tag)}` : ""}`);
  es.onopen = () => setConn("live");
  es.onerror = () => setConn(es.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
  const on = (name, fn) => es.addEventListener(name, (e) => { fn(JSON.parse(e.data)); schedule(); });
  on("snapshot", (d) => {
    S.twins = new Map(d.twins.map((t) => [t.machine, t]));
    S.alarms = new Map(d.alarms.map((a) => [a.alarm_id, a]));
    S.alerts = d.alerts || {};
    S.anomalies = d.anomalies;
    S.commands = new Map(d.commands.map((c) => [c.command_id, c]));
    S.feed = d.feed || {};
    if (d.tag) S.tag = { path: d.tag.tag, trend: d.tag.trend, windows: new Map(d.tag.windows.map((w) => [w.window_ms, w])), anomalies: d.tag.anomalies };
    setConn("live");
  });
  on("twins", (d) => { d.twins.forEach((t) => S.twins.set(t.machine, t)); d.removed.forEach((m) => S.twins.delete(m)); });
  on("alerts", (d) => { for (const [m, s] of Object.entries(d)) { if (s) S.alerts[m] = s; else delete S.alerts[m]; } });
  on("alarm", (a) => { if (a.state === "closed") S.alarms.delete(a.alarm_id); else S.alarms.set(a.alarm_id, a); });
  on("anomaly", (a) => {
    S.anomalies.push(a); if (S.anomalies.length > 300) S.anomalies.shift();
    if (S.tag && a.tag === S.tag.path) S.tag.anomalies.push(a);
  });
  on("command", (c) => { S.commands.delete(c.command_id); S.commands.set(c.command_id, c); });
  on("aggregates", (d) => {
    if (!S.tag || d.tag !== S.tag.path) return;
    for (const r of d.rows) {
      const prev = S.tag.windows.get(r.window_ms);
      if (!prev || r.window_start >= prev.window_start) S.tag.windows.set(r.window_ms, r);
      if (r.window_ms === S.config.trend_window_ms) { S.tag.trend.push(r); if (S.tag.trend.length > 900) S.tag.trend.shift(); }
    }
  });
  on("feed", (f) => { S.feed = f; });
}

function setConn(state) {
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = { live: "live", connecting: "connecting…", reconnecting: "reconnecting…", closed: "disconnected" }[state];
}

function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; update(); });
}

// -- routing ---------------------------------------------------------------------------
function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const [kind, ...rest] = parts;
  if (kind === "area" && rest[0]) return { kind, area: rest[0] };
  if (kind === "line" && rest[1]) return { kind, area: rest[0], line: rest[1] };
  if ((kind === "machine" || kind === "tag") && rest.length) return { kind, path: rest.join("/") };
  return { kind: "plant" };
}

function onRoute() {
  route = parseRoute();
  if (route.kind === "tag" && S.tag?.path !== route.path) {
    S.tag = { path: route.path, trend: [], windows: new Map(), anomalies: [] };
    S.range = "live"; S.history = null;
  }
  if (route.kind !== "tag") S.tag = null;
  if (trend) { trend.destroy(); trend = null; }
  connect();
  renderView();
  update();
}

function crumbs() {
  const p = S.plant, out = [h("a", { href: "#/" }, `${p.enterprise} / ${p.site}`)];
  const m = route.path ? S.machines.get(route.kind === "tag" ? S.tags.get(route.path)?.machine : route.path) : null;
  const area = route.area ?? m?.area, line = route.line ?? m?.line;
  if (area) out.push(h("a", { href: `#/area/${encodeURIComponent(area)}` }, area));
  if (line) out.push(h("a", { href: `#/line/${encodeURIComponent(area)}/${encodeURIComponent(line)}` }, line));
  if (m) out.push(h("a", { href: `#/machine/${encodeURIComponent(m.path)}` }, m.name));
  if (route.kind === "tag") out.push(h("span", {}, last(route.path)));
  return out.flatMap((el, i) => (i ? [h("span", { class: "sep" }, "›"), el] : [el]));
}

function selected() {
  return [...S.machines.values()].filter((m) =>
    route.kind === "plant" || (route.kind === "area" && m.area === route.area) ||
    (route.kind === "line" && m.area === route.area && m.line === route.line));
}

// -- views -----------------------------------------------------------------------------
function renderView() {
  $("crumbs").replaceChildren(...crumbs());
  const view = $("view");
  if (route.kind === "tag") {
    const info = S.tags.get(route.path);
    if (!info) { view.replaceChildren(h("p", {}, `No tag ${route.path} in the catalog.`)); return; }
    const buttons = RANGES.map(([r, label]) => h("button", { "data-range": r, class: r === S.range ? "on" : null, onclick: () => pickRange(r) }, label));
    view.replaceChildren(
      h("h1", {}, info.spec.name, " ", h("small", {}, route.path)),
      h("div", { class: "detail" },
        h("div", {}, h("div", { id: "tag-now", class: "card" }), h("h2", { style: "margin-top:12px" }, "Windows"), h("div", { id: "tag-windows" })),
        h("div", {}, h("div", { class: "ranges" }, buttons, h("span", { class: "note", id: "range-note" })),
          h("div", { class: "chart", id: "trend", "data-testid": "trend" }))));
    trend = new Trend($("trend"), info.spec.unit);
    if (S.range !== "live") loadHistory();
    return;
  }
  const title = route.kind === "machine" ? (S.machines.get(route.path)?.name ?? route.path)
    : route.kind === "line" ? `${route.area} · ${route.line}` : route.kind === "area" ? route.area : "Plant";
  view.replaceChildren(h("h1", {}, title), h("div", { class: route.kind === "machine" ? "detail" : "cards", id: "cards" }));
}

// a machine's open alarms: the twin's list, updated by the alarm topic's newer records
function alarmsOf(machine) {
  const byId = new Map((S.twins.get(machine)?.alarms || []).map((a) => [a.alarm_id, a]));
  for (const a of S.alarms.values()) if (a.asset === machine) byId.set(a.alarm_id, a);
  return [...byId.values()].filter((a) => a.state !== "closed");
}

function update() {
  if (!S.plant) return;
  renderTree();
  const open = [...S.alarms.values()];
  $("alarm-count").textContent = `${open.length} alarm${open.length === 1 ? "" : "s"}`;
  $("alarm-count").classList.toggle("has-alarms", open.length > 0);
  const missing = S.feed.topics_missing || [];
  const recent = S.feed.last_error && Date.now() - (S.feed.last_error_at || 0) < 60e3;
  $("banner").hidden = !missing.length && !recent;
  $("banner").textContent = missing.length ? `Waiting for topic${missing.length > 1 ? "s" : ""} ${missing.join(", ")}: the stage that writes it has not started yet.`
    : recent ? `Kafka feed: ${S.feed.last_error}` : "";
  if (route.kind === "tag") updateTag();
  else if (route.kind === "machine") updateMachine();
  else $("cards").replaceChildren(...selected().map((m) => card(m)));
  const scope = route.kind === "plant" ? null : new Set((route.kind === "tag" ? [S.machines.get(S.tags.get(route.path)?.machine)] : route.kind === "machine" ? [S.machines.get(route.path)] : selected()).filter(Boolean).map((m) => m.path));
  const inScope = (machine) => !scope || scope.has(machine);
  fillTable("alarms", open.filter((a) => inScope(a.asset)).sort((a, b) => b.started_at - a.started_at).map((a) => alarmRow(a, S.config.alarm_actions, sendAction)));
  fillTable("commands", [...S.commands.values()].filter((c) => inScope(c.machine)).reverse().slice(0, 50).map(commandRow));
  fillTable("anomalies", S.anomalies.filter((a) => inScope(a.tag.split("/").slice(0, -1).join("/"))).slice(-40).reverse().map(anomalyRow));
}

const card = (m, opts = {}) => machineCard(m, S.twins.get(m.path), alarmsOf(m.path), S.alerts[m.path],
  { onOpen: (x) => { location.hash = `#/machine/${encodeURIComponent(x.path)}`; }, ...opts });

function updateMachine() {
  const m = S.machines.get(route.path);
  if (!m) { $("cards").replaceChildren(h("p", {}, `No machine ${route.path} in the catalog.`)); return; }
  const twin = S.twins.get(m.path);
  const kv = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  const rows = m.tags.map((t) => { const v = twin?.tags?.[t.name]; return kv(h("a", { href: `#/tag/${encodeURIComponent(t.path)}` }, t.name),
    v ? `${v.value !== null ? fmt(v.value) : v.text ?? "–"} ${t.unit} · ${v.quality} · ${time(v.ts)}` : "–"); });
  $("cards").replaceChildren(card(m, { limit: 99, onOpen: null }),
    h("div", { class: "panel" }, h("h2", {}, "Tags"), h("dl", { class: "kv" }, rows.flat())));
}

function updateTag() {
  const info = S.tags.get(route.path);
  if (!info || !trend) return;
  const machine = S.machines.get(info.machine), twin = S.twins.get(info.machine), v = twin?.tags?.[info.spec.name];
  $("tag-now").replaceChildren(h("dl", { class: "kv" },
    h("dt", {}, "value"), h("dd", { class: "v" }, v ? `${v.value !== null ? fmt(v.value) : v.text} ${info.spec.unit}` : "–"),
    h("dt", {}, "quality"), h("dd", {}, v ? `${v.quality} at ${time(v.ts)}` : "–"),
    h("dt", {}, "normal"), h("dd", {}, `${fmt(info.spec.low)} … ${fmt(info.spec.high)} ${info.spec.unit}`),
    h("dt", {}, "machine"), h("dd", {}, h("a", { href: `#/machine/${encodeURIComponent(machine.path)}` }, machine.name), ` (${twin?.state ?? "unknown"})`)));
  const ws = [...(S.tag?.windows.values() ?? [])].sort((a, b) => a.window_ms - b.window_ms);
  $("tag-windows").replaceChildren(h("table", { class: "list", "data-testid": "windows" }, h("tbody", {},
    h("tr", {}, ["window", "count", "min", "mean", "max", "std", "good"].map((c) => h("td", { class: "t" }, c))),
    ws.map((w) => h("tr", { title: `${time(w.window_start)} – ${time(w.window_end)}` },
      h("td", {}, `${w.window_ms / 1000} s`), h("td", {}, w.count), h("td", {}, fmt(w.min)), h("td", {}, fmt(w.mean)),
      h("td", {}, fmt(w.max)), h("td", {}, fmt(w.std)), h("td", {}, w.good_share === null ? "–" : `${Math.round(w.good_share * 100)}%`))))));
  if (S.range === "live") {
    const t = S.tag?.trend ?? [];
    const alarms = [...S.alarms.values()].filter((a) => (a.tags || []).includes(route.path)).map((a) => ({ t: a.started_at }));
    trend.set(chartData({ t: t.map((r) => r.window_start), value: t.map((r) => r.mean), min: t.map((r) => r.min), max: t.map((r) => r.max) },
      { anomalies: (S.tag?.anomalies ?? []).map((a) => ({ t: a.window_start, value: a.value, feature: a.feature })), alarms }, info.spec.low, info.spec.high));
    $("range-note").textContent = `live: ${S.config.trend_window_ms / 1000} s windows, last ${t.length}`;
  }
}

function pickRange(r) {
  S.range = r;
  document.querySelectorAll(".ranges button").forEach((b) => b.classList.toggle("on", b.dataset.range === String(r)));
  if (r === "live") update(); else loadHistory();
}

async function loadHistory() {
  const span = S.range, to = Date.now(), from = to - span, tag = route.path;
  $("range-note").textContent = "loading…";
  try {
    const res = await fetch(`/api/history?tag=${encodeURIComponent(tag)}&from=${from}&to=${to}`);
    const doc = await res.json();
    if (!res.ok) throw new Error(doc.error || res.statusText);
    if (S.range !== span || route.path !== tag || !trend) return;
    const info = S.tags.get(tag);
    trend.set(chartData(doc, { anomalies: doc.anomalies, alarms: doc.alarms }, info.spec.low, info.spec.high));
    $("range-note").textContent = `history: ${doc.t.length} points from ${doc.resolution === "raw" ? "readings" : `the ${doc.resolution} rollup`}${doc.truncated ? " (truncated)" : ""}`;
    $("trend").dataset.resolution = doc.resolution;
  } catch (err) {
    $("range-note").textContent = `history unavailable: ${err.message}`;
  }
}

function renderTree() {
  const p = S.plant, sel = route.path ?? "";
  const machinePath = route.kind === "tag" ? S.tags.get(route.path)?.machine : route.path;
  const link = (href, cls, on, ...kids) => h("a", { href, class: `${cls}${on ? " sel" : ""}` }, ...kids);
  const items = [link("#/", "l0", route.kind === "plant", `${p.site}`)];
  for (const a of p.areas) {
    items.push(link(`#/area/${encodeURIComponent(a.name)}`, "l1", route.kind === "area" && route.area === a.name, a.name));
    for (const l of a.lines) {
      items.push(link(`#/line/${encodeURIComponent(a.name)}/${encodeURIComponent(l.name)}`, "l2", route.kind === "line" && route.area === a.name && route.line === l.name, l.name));
      for (const m of l.machines) {
        const st = S.twins.get(m.path)?.state, alert = S.alerts[m.path];
        items.push(link(`#/machine/${encodeURIComponent(m.path)}`, "l3", sel === m.path,
          h("span", { class: "dot", dataset: { ...(st ? { state: st } : {}), ...(alert ? { alert } : {}) } }), m.name));
        if (machinePath === m.path) m.tags.forEach((t) => items.push(link(`#/tag/${encodeURIComponent(t.path)}`, "l4", sel === t.path, t.name)));
      }
    }
  }
  $("tree").replaceChildren(...items);
}

async function sendAction(alarm, verb, forS) {
  const res = await fetch(`/api/alarms/${encodeURIComponent(alarm.alarm_id)}/${verb}`, {
    method: "POST", headers: { "Content-Type": "application/json", "X-Millstream-Dashboard": "1" },
    body: JSON.stringify(forS ? { for_s: forS } : {}) });
  if (!res.ok) alert((await res.json()).error || res.statusText);
}

async function main() {
  const [plant, config] = await Promise.all([fetch("/api/plant").then((r) => r.json()), fetch("/api/config").then((r) => r.json())]);
  S.plant = plant; S.config = config;
  for (const a of plant.areas) for (const l of a.lines) for (const m of l.machines) {
    S.machines.set(m.path, m);
    for (const t of m.tags) S.tags.set(t.path, { machine: m.path, spec: t });
  }
  window.addEventListener("hashchange", onRoute);
  setInterval(schedule, 5000); // "n s ago" stays true without events
  onRoute();
}

main();
