"use strict";
// The upload page: POST /api/analyze (draw=embed) -> annotated image and landmarks@1 side by side.
const $ = (id) => document.getElementById(id);
let urls = [];

function fillSelect(sel, values, current) {
  sel.replaceChildren(...values.map((v) => new Option(v, v, false, v === current)));
}

async function loadOptions() {
  const r = await fetch("/api/options");
  if (!r.ok) return;
  const o = await r.json();
  const d = o.defaults;
  fillSelect($("a-task"), o.installed.task || [], d.task);
  fillSelect($("a-pose"), o.installed.pose_model || [], d.pose_model);
  fillSelect($("a-hand"), o.installed.hand_model || [], d.hand_model);
  fillSelect($("a-precision"), o.installed.precision || [], d.precision);
  $("image").title = `up to ${o.max_upload_mb} MB; larger than ${o.max_side} px is scaled down`;
}

function dataUrlToBlob(url) {
  // (fetch() of a data: URL is blocked by the page's connect-src 'self' policy)
  const [head, b64] = url.split(",", 2);
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Blob([bytes], {type: head.slice(5).split(";")[0]});
}

function summary(msg) {
  const parts = ["pose", "face", "left_hand", "right_hand"].filter((k) => msg[k]);
  const found = parts.length ? parts.join(", ") : "no person found";
  return `${msg.frame.width}×${msg.frame.height}: ${found} (${(msg.latency_ms.total || 0).toFixed(0)} ms)`;
}

async function analyze(ev) {
  ev.preventDefault();
  const file = $("image").files[0];
  if (!file) return;
  const status = $("analyze-status");
  status.textContent = "analyzing…";
  status.className = "full";
  const form = new FormData();
  form.append("task", $("a-task").value);
  form.append("pose_model", $("a-pose").value);
  form.append("hand_model", $("a-hand").value);
  form.append("precision", $("a-precision").value);
  form.append("draw", "embed");
  form.append("image", file, file.name);
  try {
    const r = await fetch("/api/analyze", {method: "POST", body: form});
    const d = await r.json();
    if (!r.ok) {
      status.textContent = `refused (${r.status}): ${d.error}`;
      status.className = "full bad";
      return;
    }
    urls.forEach((u) => URL.revokeObjectURL(u));
    const text = JSON.stringify(d.message, null, 1);
    const jsonUrl = URL.createObjectURL(new Blob([text], {type: "application/json"}));
    const imgBlob = dataUrlToBlob(d.image);
    const imgUrl = URL.createObjectURL(imgBlob);
    urls = [jsonUrl, imgUrl];
    $("annotated").src = imgUrl;
    $("annotated").alt = `annotated ${file.name}`;
    $("json").textContent = text;
    $("dl-json").href = jsonUrl;
    $("dl-image").href = imgUrl;
    $("links").hidden = false;
    status.textContent = summary(d.message);
    status.className = "full yes";
    document.body.dataset.result = d.message.pose ? "person" : "none";
  } catch (e) {
    status.textContent = `failed: ${e}`;
    status.className = "full bad";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  loadOptions();
  $("upload").addEventListener("submit", analyze);
});
