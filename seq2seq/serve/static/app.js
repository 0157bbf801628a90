// The page of `seq2seq serve`: POST /v1/translate with the text's lines, show the best translation of
// each line, the n-best list of the first, and its attention as a heatmap. No build step, no library.
"use strict";

const $ = (id) => document.getElementById(id);
let defaults = { beam_size: 5 };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("key").value || localStorage.getItem("seq2seq-key");
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

function fillSelect(select, upTo, chosen) {
  select.innerHTML = "";
  for (let i = 1; i <= upTo; i++) {
    const o = document.createElement("option");
    o.value = o.textContent = String(i);
    if (i === chosen) o.selected = true;
    select.appendChild(o);
  }
}

async function loadInfo() {
  const r = await fetch("/info", { headers: headers() });
  if (r.status === 401) {
    $("keybox").hidden = false;
    status("This server needs an API key.", true);
    return;
  }
  if (!r.ok) { status("The server is not ready: " + ((await r.json()).error || r.status), true); return; }
  const info = await r.json();
  defaults = info.decoding;
  $("pair").textContent = info.source_language + " \u2192 " + info.target_language;
  const scores = Object.entries(info.results || {}).map(([s, x]) => s + ": BLEU " + x.bleu.toFixed(2));
  $("about").textContent = "model " + info.name + ", checkpoint " + info.checkpoint +
    (scores.length ? " (" + scores.join(", ") + ")" : "");
}

function drawHeatmap(record) {
  const canvas = $("heatmap");
  const hyp = record && record.hypotheses[0];
  if (!hyp || !hyp.attention || !hyp.attention.length) { canvas.width = canvas.height = 0; return; }
  const src = record.source_tokens, out = hyp.tokens.slice();
  while (out.length < hyp.attention.length) out.push("</s>");
  const ctx = canvas.getContext("2d");
  const font = "13px system-ui, sans-serif";
  ctx.font = font;
  const cell = 22;
  const left = Math.ceil(Math.max(...out.map((t) => ctx.measureText(t).width))) + 10;
  const top = Math.ceil(Math.max(...src.map((t) => ctx.measureText(t).width))) + 10;
  const ratio = window.devicePixelRatio || 1;
  const w = left + cell * src.length, h = top + cell * out.length;
  canvas.width = w * ratio; canvas.height = h * ratio;
  canvas.style.width = w + "px"; canvas.style.height = h + "px";
  ctx.scale(ratio, ratio);
  ctx.font = font;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
  hyp.attention.forEach((row, i) => row.forEach((a, j) => {
    const v = Math.round(255 * (1 - Math.min(1, Math.max(0, a))));
    ctx.fillStyle = `rgb(${v},${v},255)`;
    ctx.fillRect(left + j * cell, top + i * cell, cell - 1, cell - 1);
  }));
  ctx.fillStyle = "#1b1b1b"; ctx.textBaseline = "middle";
  out.forEach((t, i) => { ctx.textAlign = "right"; ctx.fillText(t, left - 5, top + i * cell + cell / 2); });
  src.forEach((t, j) => {
    ctx.save(); ctx.translate(left + j * cell + cell / 2, top - 5); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "left"; ctx.fillText(t, 0, 0); ctx.restore();
  });
}

async function translate() {
  const text = $("source").value;
  if (!text.trim()) { status("Type a sentence first.", true); return; }
  if ($("key").value) localStorage.setItem("seq2seq-key", $("key").value);
  const body = { text: text.replace(/\r?\n$/, "").split(/\r?\n/), format: "json",
                 beam_size: Number($("beam").value), n_best: Number($("nbest").value) };
  $("translate").disabled = true;
  status("Translating\u2026");
  try {
    const r = await fetch("/v1/translate", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    const answer = await r.json();
    if (r.status === 401) $("keybox").hidden = false;
    if (!r.ok) { status(answer.error || ("HTTP " + r.status), true); return; }
    const records = answer.translations;
    $("result").textContent = records.map((x) => (x.hypotheses[0] ? x.hypotheses[0].text : "")).join("\n");
    const list = $("nbestlist");
    list.innerHTML = "";
    if (body.n_best > 1 && records[0]) {
      records[0].hypotheses.forEach((h) => {
        const li = document.createElement("li");
        li.textContent = h.text + "  (" + h.score.toFixed(4) + ")";
        list.appendChild(li);
      });
    }
    $("output").hidden = false;
    drawHeatmap(records.find((x) => x.hypotheses.length));
    status("Done.");
    document.body.dataset.state = "done";
  } catch (e) {
    status("Could not reach the server: " + e, true);
  } finally {
    $("translate").disabled = false;
  }
}

function nbestRange() {
  const beam = Number($("beam").value);
  const current = Number($("nbest").value) || 1;
  fillSelect($("nbest"), beam, Math.min(current, beam));
}

document.addEventListener("DOMContentLoaded", async () => {
  fillSelect($("beam"), 12, 5);
  fillSelect($("nbest"), 5, 1);
  $("beam").addEventListener("change", nbestRange);
  $("translate").addEventListener("click", translate);
  $("source").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) translate(); });
  await loadInfo();
  fillSelect($("beam"), Math.max(12, defaults.beam_size), defaults.beam_size);
  nbestRange();
  document.body.dataset.state = "ready";
});
