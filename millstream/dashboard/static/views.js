// Building the page's pieces from the store. Text from Kafka goes in as text, never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const short = (path) => path.split("/").slice(-2).join("/");
export const last = (path) => path.split("/").pop();

export function fmt(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  const a = Math.abs(value);
  const digits = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : 3;
  return value.toLocaleString(undefined, { maximumFractionDigits: digits });
}

export function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toLocaleString();
}

export const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "");

// where a value sits against the tag's normal range: ok, out (of range), none (no range)
// or bad (no good value)
export function rangeOf(tag) {
  if (!tag || tag.quality === "BAD" || (tag.value === null && tag.text === null)) return "bad";
  const has = (x) => x !== null && x !== undefined;
  if (typeof tag.value !== "number" || (!has(tag.low) && !has(tag.high))) return "none";
  return (has(tag.low) && tag.value < tag.low) || (has(tag.high) && tag.value > tag.high) ? "out" : "ok";
}

const pct = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)}%`);

function tagRows(machine, twin, limit) {
  const rows = [];
  const specs = machine.tags.filter((t) => t.kind !== "setpoint" && t.kind !== "state");
  for (const spec of specs.slice(0, limit)) {
    const tag = twin?.tags?.[spec.name];
    const value = tag ? (tag.value !== null ? fmt(tag.value) : tag.text ?? "–") : "–";
    rows.push(h("tr", { dataset: { tag: spec.path } },
      h("td", {}, h("a", { href: `#/tag/${encodeURIComponent(spec.path)}` }, spec.name)),
      h("td", { class: "v", dataset: { range: tag ? rangeOf(tag) : "bad" },
        title: tag ? `${tag.quality} at ${time(tag.ts)}; normal ${fmt(spec.low)}…${fmt(spec.high)}` : "no value yet" }, value),
      h("td", { class: "u" }, spec.unit)));
  }
  return { rows, hidden: Math.max(0, specs.length - limit) };
}

export function machineCard(machine, twin, alarms, alert, { limit = 7, onOpen } = {}) {
  const state = twin?.state ?? "unknown";
  const { rows, hidden } = tagRows(machine, twin, limit);
  const oee = twin?.oee;
  const energy = twin?.energy;
  const cmd = twin?.last_command;
  return h("article", {
    class: "card", "data-testid": "machine-card", dataset: { machine: machine.path, state, ...(alert ? { alert } : {}) },
    onclick: onOpen ? (e) => { if (!e.target.closest("a,button")) onOpen(machine); } : null,
  },
  h("header", {},
    h("span", { class: "name" }, machine.name),
    h("span", { class: "state", dataset: { state }, title: twin ? `since ${time(twin.state_since)}` : "no twin record yet" }, state)),
  h("div", { class: "where" }, `${machine.area} · ${machine.line}`),
  alarms.length ? h("div", { class: "chips" }, alarms.slice(0, 3).map((a) => h("span", {},
    h("span", { class: "sev", dataset: { sev: a.severity } }, a.severity), " ",
    h("span", { class: "chip-msg" }, a.message || a.alarm_id)))) : null,
  h("table", { class: "tags" }, h("tbody", {}, rows)),
  hidden ? h("div", { class: "more" }, `+${hidden} more tags`) : null,
  oee ? h("div", { class: "kpi", title: `shift ${oee.shift}` },
    h("span", {}, "OEE ", h("b", {}, pct(oee.oee))), h("span", {}, "A ", h("b", {}, pct(oee.availability))),
    h("span", {}, "P ", h("b", {}, pct(oee.performance))), h("span", {}, "Q ", h("b", {}, pct(oee.quality))),
    energy ? h("span", {}, h("b", {}, fmt(energy.kwh)), " kWh") : null) : null,
  cmd ? h("div", { class: "lastcmd" }, `last command: ${last(cmd.setpoint)} → ${fmt(cmd.value)} `,
    h("span", { class: "verdict", dataset: { verdict: cmd.status } }, cmd.status)) : null,
  !twin ? h("div", { class: "more" }, "waiting for the twin…") : null);
}

export function alarmRow(a, actions, send) {
  const buttons = [];
  if (actions && a.state !== "shelved") {
    if (!a.acknowledged && a.state !== "acknowledged")
      buttons.push(h("button", { onclick: () => send(a, "ack"), "data-action": "ack" }, "Ack"));
    buttons.push(h("button", { onclick: () => send(a, "shelve", 3600), "data-action": "shelve" }, "Shelve 1 h"));
  }
  return h("tr", { dataset: { alarm: a.alarm_id, sev: a.severity } },
    h("td", {}, h("span", { class: "sev", dataset: { sev: a.severity } }, a.severity)),
    h("td", { class: "m" }, h("a", { href: `#/machine/${encodeURIComponent(a.asset)}` }, last(a.asset))),
    h("td", {}, a.message || a.alarm_id, a.tags?.length ? h("div", { class: "more" }, a.tags.map(last).join(", ")) : null),
    h("td", {}, a.state), h("td", { class: "t", title: new Date(a.started_at).toLocaleString() }, ago(a.started_at)),
    h("td", {}, buttons));
}

export function commandRow(c) {
  const checks = c.checks ? Object.entries(c.checks) : [];
  const refused = checks.filter(([, v]) => String(v).startsWith("refused"));
  return h("tr", { dataset: { command: c.command_id } },
    h("td", { class: "t" }, time(c.at)),
    h("td", { class: "m" }, c.machine ? last(c.machine) : ""),
    h("td", {}, c.setpoint ? last(c.setpoint) : "", " → ", h("b", {}, fmt(c.value))),
    h("td", {}, h("span", { class: "verdict", dataset: { verdict: c.verdict } }, c.verdict)),
    h("td", { title: checks.map(([k, v]) => `${k}: ${v}`).join("\n") },
      c.detail || "", refused.length ? h("div", { class: "more" }, refused.map(([k, v]) => `${k}: ${v}`).join("; ")) : null,
      c.rule ? h("div", { class: "more" }, `${c.rule}${c.issuer ? ` · signed by ${c.issuer}` : ""}`) : null));
}

export function anomalyRow(a) {
  return h("tr", {},
    h("td", { class: "t" }, time(a.window_start)),
    h("td", {}, h("a", { href: `#/tag/${encodeURIComponent(a.tag)}` }, short(a.tag))),
    h("td", {}, `${a.feature} ${fmt(a.value)}`),
    h("td", {}, `score ${fmt(a.score)} > ${fmt(a.threshold)}`));
}

export function fillTable(id, rows) {
  const table = document.getElementById(id);
  table.tBodies[0].replaceChildren(...rows);
  document.getElementById(`${id}-empty`).hidden = rows.length > 0;
}
