// carla-rl live view: one EventSource per selected env; every update redraws the canvases (latest wins).
// No libraries and no requests outside this server, so the page works without internet.
"use strict";

const $ = (id) => document.getElementById(id);
const view = {
  env: null, source: null, map: null, mapPaths: null, route: [], episodes: [], state: null,
  frames: 0, zoom: 3.0, follow: true, cameraSeq: -1, cameraBusy: false, lastUpdate: 0,
};

// --- connection -------------------------------------------------------------------------------------------
async function start() {
  const envs = await (await fetch("/api/envs")).json();
  const select = $("env-select");
  for (const env of envs) {
    const option = document.createElement("option");
    option.value = option.textContent = env.label;
    select.appendChild(option);
  }
  const wanted = new URLSearchParams(location.search).get("env");
  if (wanted && envs.some((e) => e.label === wanted)) select.value = wanted;
  select.addEventListener("change", () => connect(select.value));
  $("follow").addEventListener("click", () => {
    view.follow = !view.follow;
    $("follow").setAttribute("aria-pressed", String(view.follow));
    $("follow").textContent = view.follow ? "follow ego" : "whole map";
    draw();
  });
  $("topdown").addEventListener("wheel", (event) => {
    event.preventDefault();
    view.zoom = Math.min(40, Math.max(0.3, view.zoom * (event.deltaY < 0 ? 1.2 : 1 / 1.2)));
    if (!view.follow) { view.follow = true; $("follow").textContent = "follow ego"; }
    draw();
  }, { passive: false });
  setInterval(checkStale, 1000);
  connect(select.value);
}

function connect(label) {
  if (view.source) view.source.close();
  Object.assign(view, { env: label, map: null, mapPaths: null, route: [], episodes: [], state: null, cameraSeq: -1 });
  $("camera").removeAttribute("src");
  setStatus("connecting…", "");
  const source = new EventSource(`/api/stream?env=${encodeURIComponent(label)}`);
  view.source = source;
  source.addEventListener("map", (e) => { setMap(JSON.parse(e.data)); draw(); });
  source.addEventListener("route", (e) => { view.route = JSON.parse(e.data).points; draw(); });
  source.addEventListener("episodes", (e) => { view.episodes = JSON.parse(e.data); drawReturns(); });
  source.addEventListener("state", (e) => onState(JSON.parse(e.data)));
  source.onerror = () => setStatus("disconnected (retrying)", "stale");
}

function setStatus(text, cls) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + cls;
}

function checkStale() {
  if (view.state && performance.now() - view.lastUpdate > 3000) setStatus("no steps for 3 s", "stale");
}

// --- one update -------------------------------------------------------------------------------------------
function onState(state) {
  view.state = state;
  view.lastUpdate = performance.now();
  setStatus("live", "live");
  show("f-env_id", state.env_id, state.env_id);
  show("f-episode", state.episode, String(state.episode));
  show("f-step", state.step, String(state.step));
  show("f-reward", state.reward, state.reward.toFixed(4));
  show("f-speed", state.speed, state.speed.toFixed(2));
  show("f-throttle", state.action.throttle, state.action.throttle.toFixed(3));
  show("f-steer", state.action.steer, state.action.steer.toFixed(3));
  show("f-brake", state.action.brake, state.action.brake.toFixed(3));
  show("f-reason", state.reason, state.reason || (state.terminated || state.truncated ? "ended" : "running"));
  $("rate").textContent = state.rate_hz ? state.rate_hz.toFixed(0) : "–";
  bar("bar-throttle", 0, state.action.throttle);
  bar("bar-brake", 0, state.action.brake);
  const steer = Math.max(-1, Math.min(1, state.action.steer));
  bar("bar-steer", Math.min(0.5, 0.5 + steer / 2), Math.abs(steer) / 2);
  showTerms(state.terms);
  draw();
  fetchCamera(state.camera_seq);
  view.frames += 1;
  show("frames", view.frames, String(view.frames));
}

// Text for people, data-value with the exact number for tests and scripts.
function show(id, value, text) {
  const el = $(id);
  el.textContent = text;
  el.dataset.value = typeof value === "number" ? String(value) : value;
}

function bar(id, left, width) {
  const el = $(id);
  el.style.left = `${(left * 100).toFixed(1)}%`;
  el.style.width = `${(Math.max(0, Math.min(1, width)) * 100).toFixed(1)}%`;
}

function showTerms(terms) {
  const body = $("terms").tBodies[0];
  for (const [name, value] of Object.entries(terms)) {
    let row = body.querySelector(`tr[data-term="${name}"]`);
    if (!row) {
      row = body.insertRow();
      row.dataset.term = name;
      const th = document.createElement("th");
      th.textContent = name;
      row.appendChild(th);
      row.insertCell();
    }
    const cell = row.cells[row.cells.length - 1];
    cell.textContent = value.toFixed(4);
    cell.dataset.value = String(value);
  }
}

function fetchCamera(seq) {
  // latest wins: ask for the next image only when the previous one has loaded
  if (seq === view.cameraSeq || view.cameraBusy || !seq) return;
  view.cameraBusy = true;
  view.cameraSeq = seq;
  const img = $("camera");
  const done = () => { view.cameraBusy = false; };
  img.onload = done;
  img.onerror = done;
  img.src = `/api/camera?env=${encodeURIComponent(view.env)}&seq=${seq}`;
}

// --- the top-down map -------------------------------------------------------------------------------------
function setMap(map) {
  view.map = map;
  $("map-name").textContent = map.name;
  const paths = { road: new Path2D(), walk: new Path2D(), other: new Path2D() };
  for (const lane of map.lanes) {
    const p = lane.points;
    const path = lane.kind === "driving" ? paths.road : lane.kind === "sidewalk" ? paths.walk : paths.other;
    path.moveTo(p[0], p[1]);
    for (let i = 2; i < p.length; i += 2) path.lineTo(p[i], p[i + 1]);
    path.closePath();
  }
  view.mapPaths = paths;
}

function worldTransform(canvas) {
  // map frame: x east, y north; canvas: y down. Returns [scale, cx, cy] with (cx, cy) the centre in metres.
  const s = view.state;
  if (view.follow && s) return [view.zoom, s.ego.x, s.ego.y];
  if (view.map) {
    const [x0, y0, x1, y1] = view.map.bounds;
    const scale = 0.95 * Math.min(canvas.width / (x1 - x0), canvas.height / (y1 - y0));
    return [scale, (x0 + x1) / 2, (y0 + y1) / 2];
  }
  return [view.zoom, 0, 0];
}

function draw() {
  const canvas = $("topdown");
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#2a3a2a";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const [scale, cx, cy] = worldTransform(canvas);
  ctx.setTransform(scale, 0, 0, -scale, canvas.width / 2 - cx * scale, canvas.height / 2 + cy * scale);
  const px = 1 / scale;  // one screen pixel in metres
  if (view.mapPaths) {
    ctx.fillStyle = "#6d6d6d"; ctx.fill(view.mapPaths.walk);
    ctx.fillStyle = "#4f4f4f"; ctx.fill(view.mapPaths.other);
    ctx.fillStyle = "#3a3a3a"; ctx.fill(view.mapPaths.road);
    ctx.strokeStyle = "#8a8a8a"; ctx.lineWidth = px; ctx.stroke(view.mapPaths.road);
  }
  const route = view.route;
  if (route.length >= 4) {
    ctx.strokeStyle = "rgba(255, 238, 88, 0.8)";
    ctx.lineWidth = Math.max(0.6, 2 * px);
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(route[0], route[1]);
    for (let i = 2; i < route.length; i += 2) ctx.lineTo(route[i], route[i + 1]);
    ctx.stroke();
    ctx.fillStyle = "#ef5350";
    ctx.beginPath();
    ctx.arc(route[route.length - 2], route[route.length - 1], Math.max(2.0, 5 * px), 0, 2 * Math.PI);
    ctx.fill();
  }
  const s = view.state;
  if (s) {
    for (const [x, y, yaw, length, width] of s.traffic) box(ctx, x, y, yaw, length, width, "#ff9800");
    box(ctx, s.ego.x, s.ego.y, s.ego.yaw, 4.8, 2.1, "#29b6f6", px);
  }
}

function box(ctx, x, y, yaw, length, width, color, px) {
  ctx.save();
  ctx.translate(x, y);
  ctx.rotate(yaw);
  ctx.fillStyle = color;
  ctx.fillRect(-length / 2, -width / 2, length, width);
  if (px) {  // the ego: a heading tick, and a halo that stays visible when zoomed out
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = Math.max(0.2, px);
    ctx.beginPath(); ctx.moveTo(0, 0); ctx.lineTo(length / 2 + 1.5, 0); ctx.stroke();
    ctx.beginPath(); ctx.arc(0, 0, Math.max(3.5, 8 * px), 0, 2 * Math.PI); ctx.stroke();
  }
  ctx.restore();
}

// --- the returns chart ------------------------------------------------------------------------------------
function drawReturns() {
  const canvas = $("returns");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 32;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#1f2226"; ctx.fillRect(0, 0, W, H);
  const eps = view.episodes;
  ctx.fillStyle = "#aab"; ctx.font = "11px sans-serif";
  if (!eps.length) { ctx.fillText("no episode finished yet", pad, H / 2); return; }
  const values = eps.map((e) => e.return);
  let lo = Math.min(0, ...values), hi = Math.max(0, ...values);
  if (hi - lo < 1e-9) hi = lo + 1;
  const x = (i) => pad + (eps.length === 1 ? 0.5 : i / (eps.length - 1)) * (W - 2 * pad);
  const y = (v) => H - pad / 2 - ((v - lo) / (hi - lo)) * (H - pad);
  ctx.strokeStyle = "#555"; ctx.beginPath(); ctx.moveTo(pad, y(0)); ctx.lineTo(W - pad / 2, y(0)); ctx.stroke();
  ctx.fillText(hi.toFixed(1), 2, y(hi) + 4); ctx.fillText(lo.toFixed(1), 2, y(lo));
  ctx.strokeStyle = "#90a4ae"; ctx.beginPath();
  eps.forEach((e, i) => (i ? ctx.lineTo(x(i), y(e.return)) : ctx.moveTo(x(i), y(e.return))));
  ctx.stroke();
  eps.forEach((e, i) => {
    ctx.fillStyle = e.success ? "#66bb6a" : "#ef5350";
    ctx.beginPath(); ctx.arc(x(i), y(e.return), 3, 0, 2 * Math.PI); ctx.fill();
  });
  const last = eps[eps.length - 1];
  ctx.fillStyle = "#e6e6e6";
  ctx.fillText(`episode ${last.episode}: ${last.return.toFixed(2)} (${last.reason || "?"})`, pad, 12);
}

start();
