"use strict";
// The live page: MJPEG <img>, numbers over server-sent events, controls -> POST /api/cmd.
const $ = (id) => document.getElementById(id);
let paused = false;

function fmt(v, unit, digits = 1) {
  return v === null || v === undefined ? "–" : `${Number(v).toFixed(digits)}${unit}`;
}

function fillSelect(sel, values, current) {
  sel.replaceChildren(...values.map((v) => new Option(v, v, false, v === current)));
}

function showModels(models) {
  const rows = Object.entries(models || {}).map(([part, name]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td"); a.textContent = part;
    const b = document.createElement("td"); b.textContent = name;
    tr.append(a, b);
    return tr;
  });
  $("models").replaceChildren(...rows);
}

function showLive(d) {
  $("n-fps").textContent = fmt(d.fps, "");
  $("n-latency").textContent = fmt(d.latency_ms, " ms");
  const p = $("n-person");
  p.textContent = d.person ? "yes" : "no";
  p.className = d.person ? "yes" : "no";
  $("n-state").textContent = d.state || "–";
  $("n-rss").textContent = fmt(d.rss_mb, " MB", 0);
  $("n-cpu").textContent = fmt(d.cpu_percent, " %", 0);
  $("n-temp").textContent = fmt(d.temperature_c, " °C");
  const m = $("n-mqtt");
  m.textContent = d.mqtt;
  m.className = d.mqtt === "connected" ? "yes" : (d.mqtt === "off" ? "no" : "bad");
  showModels(d.models);
  paused = d.state === "paused";
  $("c-pause").textContent = paused ? "Resume" : "Pause";
  document.body.dataset.frames = d.frames;
}

async function loadOptions() {
  const r = await fetch("/api/options");
  if (!r.ok) return;
  const o = await r.json();
  const cur = o.current;
  fillSelect($("c-task"), o.installed.task || [], cur.task);
  fillSelect($("c-pose"), o.installed.pose_model || [], cur.pose_model);
  fillSelect($("c-hand"), o.installed.hand_model || [], cur.hand_model);
  fillSelect($("c-precision"), o.installed.precision || [], cur.precision);
  $("c-fps").value = cur.max_fps;
  const s = await fetch("/api/status");
  if (s.ok) { const st = await s.json(); $("device").textContent = `${st.device_id || ""} · ${st.source || ""}`; }
}

async function send(cmd) {
  const out = $("cmd-result");
  out.textContent = "applying…";
  try {
    const r = await fetch("/api/cmd", {method: "POST", headers: {"Content-Type": "application/json"},
                                       body: JSON.stringify(cmd)});
    const d = await r.json();
    out.textContent = d.ok ? `applied (${cmd.cmd})` : `refused: ${d.error}`;
    out.className = d.ok ? "full yes" : "full bad";
  } catch (e) {
    out.textContent = `failed: ${e}`;
    out.className = "full bad";
  }
}

function connectEvents() {
  const es = new EventSource("/api/events");
  es.addEventListener("live", (ev) => showLive(JSON.parse(ev.data)));
  es.onerror = () => { $("n-state").textContent = "reconnecting…"; };
}

document.addEventListener("DOMContentLoaded", () => {
  $("video").src = "/stream.mjpg";
  connectEvents();
  loadOptions();
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    send({cmd: "set", task: $("c-task").value, pose_model: $("c-pose").value, hand_model: $("c-hand").value,
          precision: $("c-precision").value, max_fps: Number($("c-fps").value)});
  });
  $("c-pause").addEventListener("click", () => send({cmd: paused ? "resume" : "pause"}));
});
