// flakefleet ui: reads the fleet through the local `flakefleet ui` proxy and
// draws it. Everything shown is set as text (textContent, createElement):
// host output may hold markup and must stay text. No framework, no build step.
"use strict";

const REFRESH_MS = 2000;
const PAGE_SIZE = 10;
// The session's token lives in this tab's sessionStorage only. The printed
// link carries a one-time code instead, traded once for the token (POST
// /session) and then taken out of the address bar and the tab's history.
const TOKEN_KEY = "flakefleet-token";
let token = sessionStorage.getItem(TOKEN_KEY) || "";
const writes = document.body.dataset.writes === "true";

// What was last read; a failed read keeps it on screen.
const state = { fleet: null, page: null, release: null, error: null, refreshedAt: null, cursors: [], confirming: false };
let timer = null;

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

class ApiError extends Error {}

async function api(path, init) {
  let response;
  try {
    response = await fetch("/api/" + path, {
      cache: "no-store",
      ...init,
      headers: { "X-Flakefleet-Token": token, ...(init && init.headers) },
    });
  } catch (e) {
    throw new ApiError("the local flakefleet ui server did not answer: is it still running?");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    throw new ApiError(`${response.status}: the answer was not JSON`);
  }
  if (!response.ok) {
    const code = body && typeof body.error === "string" ? body.error : "error";
    const message = body && typeof body.message === "string" ? body.message : "";
    throw new ApiError(`${response.status} ${code}: ${message}`);
  }
  return body;
}

// ---- statuses: a mark and a word, colour only on top ----

const RELEASE_STATUS = {
  pending: ["…", "pending", "s-run"],
  in_progress: ["▶", "in progress", "s-run"],
  succeeded: ["✓", "succeeded", "s-good"],
  failed: ["✗", "failed", "s-bad"],
  rolled_back: ["↺", "rolled back", "s-bad"],
  halted: ["■", "halted", "s-warn"],
  no_instances: ["∅", "no instances", "s-warn"],
};

function statusBadge(status) {
  const [mark, word, cls] = RELEASE_STATUS[status] || ["?", String(status), ""];
  return el("span", { class: "status " + cls, "data-status": status }, `${mark} ${word}`);
}

const isFinal = (status) => status !== "pending" && status !== "in_progress";

const UNDELIVERED = ["Undeliverable", "Delivery Timed Out"];
const FINISHED = ["Success", "Failed", "TimedOut", "Cancelled"];
function verdict(outcome) {
  if (!outcome) return "pending";
  if (outcome.status === "Success") return "succeeded";
  if (FINISHED.includes(outcome.status) && UNDELIVERED.includes(outcome.detail)) return "unreachable";
  if (FINISHED.includes(outcome.status)) return "failed";
  return "pending";
}
const VERDICT_MARK = { succeeded: "✓", failed: "✗", unreachable: "⊘", pending: "…" };

function releaseLink(id) {
  if (!id) return el("span", {}, "none");
  return el("a", { href: "#release=" + encodeURIComponent(id), class: "mono" }, id);
}

function time(value) {
  if (value === null || value === undefined) return "";
  const date = new Date(value);
  return isNaN(date) ? String(value) : date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function duration(ms) {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

// ---- waves: one per staged wave, or the whole tag for an all-at-once release ----

function wavesOf(release) {
  const created = Date.parse(release.created_at);
  const ended = isFinal(release.status) ? Date.parse(release.updated_at) : null;
  if (release.rollout && release.rollout.waves.length) {
    return release.rollout.waves.map((wave, i) => ({
      name: i === 0 ? "Wave 1 (canary)" : `Wave ${i + 1}`,
      short: `W${i + 1}`,
      ids: wave.instance_ids,
      sent: wave.sent_ms ?? null,
      judged: wave.judged_ms ?? null,
      commands: wave.command_ids,
    }));
  }
  if (release.command_id) {
    return [{ name: "All at once", short: "All", ids: release.instances.map((o) => o.instance_id),
      sent: created, judged: ended, commands: [release.command_id] }];
  }
  return [];
}

function waveCounts(release, wave) {
  const byId = new Map((release.instances || []).map((o) => [o.instance_id, o]));
  const counts = { succeeded: 0, failed: 0, unreachable: 0, pending: 0 };
  for (const id of wave.ids) counts[verdict(byId.get(id))] += 1;
  return counts;
}

function waveBlock(release, wave) {
  const c = waveCounts(release, wave);
  const total = Math.max(wave.ids.length, 1);
  const bar = el("div", { class: "bar", role: "img",
    "aria-label": `${c.succeeded} succeeded, ${c.failed} failed, ${c.unreachable} unreachable, ${c.pending} pending` });
  for (const [key, cls] of [["succeeded", "b-ok"], ["failed", "b-bad"], ["unreachable", "b-unreach"], ["pending", "b-pending"]]) {
    if (!c[key]) continue;
    const part = el("span", { class: cls });
    part.style.width = `${(100 * c[key]) / total}%`; // CSSOM, which the CSP allows (no inline style attribute)
    bar.append(part);
  }
  const when = [];
  if (wave.sent !== null) when.push(`sent ${time(wave.sent)}`);
  if (wave.judged !== null) when.push(`judged ${time(wave.judged)}`);
  else if (wave.sent !== null) when.push("not judged yet");
  return el("div", { class: "wave", "data-wave": wave.short },
    el("p", {}, el("strong", {}, wave.name), `: ${wave.ids.length} instances — `,
      el("span", { class: "counts" },
        `✓ ${c.succeeded} succeeded · ✗ ${c.failed} failed · ⊘ ${c.unreachable} unreachable · … ${c.pending} pending`)),
    bar,
    when.length ? el("p", { class: "when" }, when.join(", ")) : null);
}

/** The waves on one time axis: a bar from sent to judged (open-ended while not judged). */
function timeline(release, waves, now) {
  const start = Date.parse(release.created_at);
  const times = waves.flatMap((w) => [w.sent, w.judged]).filter((t) => t !== null);
  const open = waves.some((w) => w.sent !== null && w.judged === null);
  const end = Math.max(start + 1000, ...times, open ? now : start);
  const width = 600, left = 44, right = 10, row = 22, top = 8;
  const height = top + waves.length * row + 22;
  const x = (t) => left + ((width - left - right) * (t - start)) / (end - start);
  // A wave can be judged unsent (a deadline passed before it went out).
  const label = waves.map((w) => {
    if (w.sent === null) return w.judged === null ? `${w.name} not sent yet` : `${w.name} stopped before it was sent`;
    const judged = w.judged === null ? "not judged yet" : `judged after ${duration(w.judged - start)}`;
    return `${w.name} sent after ${duration(w.sent - start)}, ${judged}`;
  }).join("; ");
  const chart = svg("svg", { class: "timeline", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `Timeline: ${label}` });
  chart.append(svg("line", { class: "t-axis", x1: left, x2: width - right, y1: height - 18, y2: height - 18 }));
  chart.append(svg("text", { x: left, y: height - 4 }, "0 s"));
  chart.append(svg("text", { x: width - right, y: height - 4, "text-anchor": "end" }, duration(end - start)));
  waves.forEach((w, i) => {
    const y = top + i * row;
    chart.append(svg("text", { x: 2, y: y + 13 }, w.short));
    if (w.sent === null) return;
    const to = w.judged ?? now;
    const bar = svg("rect", { class: w.judged !== null ? "t-done" : "t-open", x: x(w.sent), y: y + 2,
      width: Math.max(2, x(to) - x(w.sent)), height: row - 8, rx: 2, "data-wave": w.short });
    bar.append(svg("title", {}, w.judged !== null ? `${w.name}: sent ${time(w.sent)}, judged ${time(w.judged)}` : `${w.name}: sent ${time(w.sent)}, running`));
    chart.append(bar);
  });
  return chart;
}

function wavesSection(release) {
  const waves = wavesOf(release);
  if (!waves.length) return el("p", {}, "No command sent yet.");
  return el("div", { class: "waves" }, waves.map((w) => waveBlock(release, w)), timeline(release, waves, Date.now()));
}

// ---- the sections ----

function fact(term, ...value) {
  return [el("dt", {}, term), el("dd", {}, ...value)];
}

function renderFleet() {
  const fleet = state.fleet;
  if (!fleet) return;
  $("fleet-name").textContent = fleet.fleet;
  $("tag").textContent = `tag ${fleet.target_tag.key}=${fleet.target_tag.value} ·`;
  const desired = fleet.desired_release;
  const facts = [
    fact("Desired release", releaseLink(desired && desired.id), desired ? " " : "", desired ? statusBadge(desired.status) : "",
      desired ? el("span", { class: "mono" }, " ", desired.flakeref) : ""),
    fact("Last good release", releaseLink(fleet.last_good_release_id)),
    fact("Rollout", fleet.rollout ? el("span", {}, "in progress: ", releaseLink(fleet.rollout.release_id),
      ` (${fleet.rollout.kind}), wave ${fleet.rollout.wave}`, fleet.rollout.paused ? " — paused" : "",
      fleet.rollout.stopping ? ` — stopping: ${fleet.rollout.stopping}` : "") : "idle"),
  ];
  if (fleet.lease) facts.push(fact("Lease", `held by `, releaseLink(fleet.lease.release_id),
    fleet.lease.overdue ? " — overdue: the next reconcile settles it" : ""));
  $("fleet-facts").replaceChildren(...facts.flat());

  const halted = $("halted");
  if (fleet.halted) {
    halted.replaceChildren(el("strong", {}, "⚠ Fleet halted:"), fleet.halted.reason, " (release ",
      releaseLink(fleet.halted.release_id), "). Nothing happens on its own until an operator deploys or rolls back.");
    halted.hidden = false;
  } else {
    halted.hidden = true;
    halted.replaceChildren();
  }

  // Behind: not running the desired release's flakeref (a rollback's hosts
  // run the same flakeref under the release that first put it there).
  const rows = fleet.instances.map((i) => {
    const behind = desired && i.flakeref !== desired.flakeref;
    return el("tr", { "data-instance": i.instance_id, class: behind ? "is-behind" : null },
      el("td", { class: "mono" }, i.instance_id),
      el("td", {}, releaseLink(i.release_id)),
      el("td", { class: "mono" }, i.flakeref || ""),
      el("td", {}, behind ? el("span", { class: "behind" }, "⚠ behind the desired release") : el("span", {}, "✓ current")));
  });
  $("instances-table").replaceChildren(
    el("thead", {}, el("tr", {}, ["Instance", "Runs release", "Flakeref", "State"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 4 }, "No running instances carry the fleet's tag."))));

  const rollout = fleet.rollout && state.release && state.release.id === fleet.rollout.release_id ? state.release : null;
  $("rollout").hidden = !fleet.rollout;
  if (fleet.rollout) {
    $("rollout-body").replaceChildren(
      el("p", {}, releaseLink(fleet.rollout.release_id), ` ${fleet.rollout.kind}: ${fleet.rollout.succeeded} of ${fleet.rollout.targeted} succeeded, ${fleet.rollout.failed} failed, ${fleet.rollout.unreachable} unreachable, ${fleet.rollout.pending} pending`),
      rollout ? wavesSection(rollout) : el("p", {}, "Open the release for its waves."));
  }
}

function renderHistory() {
  const page = state.page;
  if (!page) return;
  const rows = page.releases.map((r) => el("tr", { "data-release": r.id },
    el("td", {}, releaseLink(r.id)),
    el("td", {}, r.kind),
    el("td", {}, statusBadge(r.status)),
    el("td", { class: "mono" }, r.flakeref),
    el("td", {}, time(r.created_at))));
  $("history-table").replaceChildren(
    el("thead", {}, el("tr", {}, ["Release", "Kind", "Status", "Flakeref", "Created"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 5 }, "No releases yet."))));
  $("older").disabled = !page.next_cursor;
  $("newer").disabled = state.cursors.length === 0;
}

function outcomeRows(release) {
  return (release.instances || []).map((o) => {
    const v = verdict(o);
    const tails = [];
    if (v === "failed" || v === "unreachable") {
      if (o.stderr_tail) tails.push(el("p", {}, "stderr:"), el("pre", { class: "tail stderr" }, o.stderr_tail));
      if (o.stdout_tail) tails.push(el("p", {}, "stdout:"), el("pre", { class: "tail stdout" }, o.stdout_tail));
      if (o.output_note) tails.push(el("p", {}, o.output_note));
    }
    return el("tr", { "data-outcome": o.instance_id },
      el("td", { class: "mono" }, o.instance_id),
      el("td", { class: "status" }, `${VERDICT_MARK[v]} ${v}`),
      el("td", {}, `${o.status} (${o.detail})`, o.exit_code !== undefined ? `, exit ${o.exit_code}` : ""),
      el("td", {}, tails));
  });
}

function rollbackControls(release) {
  if (!writes || release.status !== "succeeded") return null;
  const box = el("div", { class: "actions" });
  const ask = el("button", { type: "button", class: "danger", id: "rollback",
    onclick: () => { state.confirming = true; render(); $("confirm-rollback").focus(); } },
  "Roll back to this release");
  if (!state.confirming) {
    box.append(ask);
    return box;
  }
  box.append(el("div", { class: "confirm", role: "group", "aria-label": "Confirm the rollback" },
    el("p", {}, `Apply ${release.flakeref} (release ${release.id}) to the fleet again? A rollback release replaces the desired one.`),
    el("button", { type: "button", class: "danger", id: "confirm-rollback", onclick: (e) => rollBack(release, e.target) }, "Yes, roll back"),
    el("button", { type: "button", id: "cancel-rollback", onclick: () => { state.confirming = false; render(); $("rollback").focus(); } }, "Cancel")));
  return box;
}

async function rollBack(release, button) {
  button.disabled = true;
  const key = "ui-" + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
  try {
    const answer = await api("rollback", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ release_id: release.id, idempotency_key: key, reason: "rolled back from the status page" }) });
    state.confirming = false;
    location.hash = "#release=" + encodeURIComponent(answer.release.id);
  } catch (e) {
    state.error = e;
    button.disabled = false;
    render();
  }
}

function renderRelease() {
  const release = state.release;
  $("release").hidden = !release;
  if (!release) return;
  $("release-heading").textContent = `Release ${release.id}`;
  const facts = [
    fact("Status", statusBadge(release.status), release.status_reason ? ` — ${release.status_reason}` : ""),
    fact("Kind", `${release.kind} (${release.shape.replaceAll("_", " ")})`),
    fact("Phase", release.phase),
    fact("Flakeref", el("code", {}, release.flakeref)),
    fact("Created", time(release.created_at)),
    fact("Updated", time(release.updated_at)),
  ];
  if (release.revision) facts.push(fact("Revision", el("code", {}, release.revision)));
  if (release.requested_by) facts.push(fact("Requested by", release.requested_by));
  if (release.reason) facts.push(fact("Reason", release.reason));
  if (release.run_url && release.run_url.startsWith("https://")) {
    facts.push(fact("Run", el("a", { href: release.run_url, rel: "noreferrer noopener", target: "_blank" }, release.run_url)));
  }
  if (release.rollback_of) facts.push(fact("Puts back", releaseLink(release.rollback_of)));
  if (release.replaces) facts.push(fact("Replaces", releaseLink(release.replaces)));
  if (release.rolled_back_by) facts.push(fact("Rolled back by", releaseLink(release.rolled_back_by)));
  const failed = (release.instances || []).filter((o) => verdict(o) !== "succeeded");
  $("release-body").replaceChildren(...[
    el("dl", {}, facts.flat()),
    rollbackControls(release),
    el("h3", {}, "Waves"),
    wavesSection(release),
    el("h3", {}, `Instances (${(release.instances || []).length}, ${failed.length} not succeeded)`),
    el("div", { class: "scroll" }, el("table", { id: "outcomes-table" },
      el("thead", {}, el("tr", {}, ["Instance", "Verdict", "SSM status", "Output (failed only)"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, outcomeRows(release)))),
  ].filter(Boolean));
  // A tail ends with what went wrong: show its end.
  for (const pre of document.querySelectorAll("#release-body pre.tail")) pre.scrollTop = pre.scrollHeight;
}

function busy() {
  const fleet = state.fleet;
  return Boolean((fleet && (fleet.lease || fleet.rollout)) || (state.release && !isFinal(state.release.status)));
}

/** Where keyboard focus is, in terms that survive a re-render: its section,
 *  what it points to, and which of its kind it is there. */
function focusKey() {
  const active = document.activeElement;
  if (!active || active === document.body) return null;
  const scope = active.closest("section, header") || document.body;
  const name = (e) => `${e.tagName}|${e.getAttribute("href") || e.id || e.textContent}`;
  const same = [...scope.querySelectorAll("a, button")].filter((e) => name(e) === name(active));
  return { scope, name: name(active), nth: same.indexOf(active), name_of: name };
}

function restoreFocus(key) {
  if (!key || document.activeElement !== document.body) return;
  const again = [...key.scope.querySelectorAll("a, button")].filter((e) => key.name_of(e) === key.name)[key.nth];
  if (again) again.focus({ preventScroll: true });
}

function render() {
  // A refresh redraws the sections: keep the keyboard where it was.
  const focus = focusKey();
  renderFleet();
  renderHistory();
  renderRelease();
  restoreFocus(focus);
  const error = $("error");
  if (state.error) {
    error.replaceChildren(el("strong", {}, "✗ Could not refresh:"), state.error.message,
      state.refreshedAt ? " — showing what was read before." : "");
    error.hidden = false;
  } else {
    error.hidden = true;
    error.replaceChildren();
  }
  const when = state.refreshedAt ? `Last refreshed ${state.refreshedAt.toLocaleTimeString()}` : "Not read yet";
  const cadence = busy() ? "refreshing every 2 s while a rollout is in progress"
    : state.fleet ? "idle: not refreshing" : "trying again every 2 s";
  $("refreshed").textContent = `${when} · ${cadence}`;
  document.title = state.fleet ? `flakefleet · ${state.fleet.fleet}${busy() ? " · in progress" : ""}` : "flakefleet";
}

/** The release named in the address (`#release=ID`), if any. */
function named() {
  const match = /^#release=([0-9A-Za-z]+)$/.exec(location.hash);
  return match ? match[1] : null;
}

/** The release to show: the one named, else the rollout in flight, else the desired one. */
function selected() {
  const fleet = state.fleet;
  if (named() || !fleet) return named();
  if (fleet.rollout) return fleet.rollout.release_id;
  return fleet.desired_release ? fleet.desired_release.id : null;
}

function show(release) {
  if (!state.release || state.release.id !== release.id) state.confirming = false;
  state.release = release;
}

/** Trades the link's code (if any) for the token; the code leaves the URL either way. */
async function startSession() {
  const params = new URLSearchParams(location.search);
  const code = params.get("code");
  if (code === null) return null;
  params.delete("code");
  const rest = params.toString();
  history.replaceState(history.state, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  // This tab holds a session already: the code stays unspent for another tab.
  if (token) return null;
  try {
    const response = await fetch("/session", { method: "POST", cache: "no-store", headers: { "X-Flakefleet-Code": code } });
    const body = await response.json();
    if (!response.ok) return new ApiError(`${response.status} ${body.error}: ${body.message}`);
    token = body.token;
    sessionStorage.setItem(TOKEN_KEY, token);
    return null;
  } catch (e) {
    return new ApiError("the local flakefleet ui server did not answer: is it still running?");
  }
}

async function refresh() {
  clearTimeout(timer);
  timer = null;
  let error = null;
  const attempt = async (read) => { try { await read(); } catch (e) { error = error || e; } };
  const readRelease = (id) => attempt(async () => show((await api("releases/" + encodeURIComponent(id))).release));
  if (!token) error = new ApiError("no session in this tab: open the newest link `flakefleet ui` printed (each link opens one tab)");
  else {
    // The reads go out together; the release shown by default comes with
    // the fleet (its desired release, whole), which saves a round trip.
    const cursor = state.cursors[state.cursors.length - 1];
    const id = named();
    await Promise.all([
      attempt(async () => { state.fleet = (await api("fleet")).fleet; }),
      attempt(async () => { state.page = await api(`releases?limit=${PAGE_SIZE}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "")); }),
      id ? readRelease(id) : null,
    ]);
    const desired = state.fleet && state.fleet.desired_release;
    if (!id && selected()) {
      if (desired && desired.id === selected()) show(desired);
      else await readRelease(selected());
    }
  }
  state.error = error;
  if (!error) state.refreshedAt = new Date();
  render();
  // For `make bench`: when the first complete page was on screen.
  if (!error && !performance.getEntriesByName("flakefleet:rendered").length) performance.mark("flakefleet:rendered");
  // While a rollout runs (or nothing was read yet), again in 2 s; idle, never.
  if (token && (busy() || !state.fleet)) timer = setTimeout(refresh, REFRESH_MS);
}

$("refresh").addEventListener("click", refresh);
$("older").addEventListener("click", () => {
  if (state.page && state.page.next_cursor) { state.cursors.push(state.page.next_cursor); refresh(); }
});
$("newer").addEventListener("click", () => { state.cursors.pop(); refresh(); });
window.addEventListener("hashchange", refresh);
startSession().then((error) => {
  if (error) {
    state.error = error;
    render();
  } else refresh();
});
