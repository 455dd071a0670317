// The page of fer's web app (fer/web/app.py): live camera over a WebSocket, and uploads.
"use strict";

const $ = (id) => document.getElementById(id);
const COLOURS = {
  angry: "#d32f2f", disgust: "#388e3c", fear: "#7b1fa2", happy: "#f9a825", sad: "#1976d2",
  surprise: "#00acc1", neutral: "#757575", contempt: "#6d4c41", uncertain: "#b0b0b0",
};
// a face's top probability: its label's, or the best class's when the label is "uncertain"
const topOf = (face) => Math.max(...Object.values(face.probabilities));
const colourOf = (name, k) => COLOURS[name] || `hsl(${(k * 53) % 360}, 60%, 45%)`;
const pct = (p) => `${Math.round(100 * p)}%`;
const TIMELINE_SECONDS = 20;

const live = {
  ws: null, stream: null, inFlight: false, sentAt: 0, lastAnswer: 0, fps: null,
  selected: null, history: [], classNames: [], answer: null,
};
let maxUploadMb = Infinity;

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function choice() {
  return `model=${encodeURIComponent($("model").value)}&detector=${encodeURIComponent($("detector").value)}`;
}

function socketUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

async function loadConfig() {
  const config = await (await fetch("api/config")).json();
  for (const [id, names] of [["model", config.models], ["detector", config.detectors]]) {
    $(id).replaceChildren(...names.map((n) => new Option(n, n)));
  }
  maxUploadMb = config.max_upload_mb;
  $("neutral").hidden = !config.neutral_mark;
}

// ---- live ---------------------------------------------------------------------------------

async function startCamera() {
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    setStatus(`camera: ${error.message}`, true);
    return;
  }
  const video = $("video");
  video.srcObject = live.stream;
  await video.play();
  connect();
  $("start").disabled = true;
  $("stop").disabled = false;
  $("neutral").disabled = false;
}

function connect() {
  if (live.ws) live.ws.close();
  Object.assign(live, { inFlight: false, selected: null, history: [], fps: null, lastAnswer: 0 });
  const ws = new WebSocket(socketUrl(`/ws/live?${choice()}`));
  live.ws = ws;
  ws.onmessage = (event) => onAnswer(JSON.parse(event.data));
  ws.onclose = () => {
    if (live.ws === ws) {
      live.ws = null;
      setStatus("disconnected from the server", true);
    }
  };
}

function stopCamera() {
  const ws = live.ws;
  live.ws = null;
  if (ws) ws.close();
  if (live.stream) live.stream.getTracks().forEach((t) => t.stop());
  live.stream = null;
  $("start").disabled = false;
  $("stop").disabled = true;
  $("neutral").disabled = true;
  const overlay = $("overlay");
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  setStatus("stopped");
}

const grab = document.createElement("canvas");

// One frame in flight at a time: the newest camera frame is sent when the last answer is in.
function sendFrame() {
  const video = $("video");
  const ws = live.ws;
  if (live.inFlight && performance.now() - live.sentAt > 5000) live.inFlight = false; // an answer lost
  if (!ws || ws.readyState !== WebSocket.OPEN || live.inFlight || !video.videoWidth) return;
  const scale = Math.min(1, 640 / video.videoWidth);
  grab.width = Math.round(video.videoWidth * scale);
  grab.height = Math.round(video.videoHeight * scale);
  grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
  live.inFlight = true;
  grab.toBlob((blob) => {
    if (live.ws === ws && ws.readyState === WebSocket.OPEN && blob) {
      live.sentAt = performance.now();
      ws.send(blob);
    } else {
      live.inFlight = false;
    }
  }, "image/jpeg", 0.8);
}

// The server takes the faces of the frame last answered as their people at rest.
function markNeutral() {
  if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify({ mark: "neutral" }));
}

function onAnswer(answer) {
  if (answer.ready) {
    setStatus(`live: ${answer.model}, ${answer.detector}`);
    return;
  }
  live.inFlight = false;
  if (answer.error) {
    setStatus(answer.error, true);
    return;
  }
  if (answer.marked !== undefined) setStatus(`neutral reference: ${answer.marked} face(s) marked`);
  const now = performance.now();
  if (live.lastAnswer) {
    const fps = 1000 / Math.max(now - live.lastAnswer, 1);
    live.fps = live.fps === null ? fps : 0.9 * live.fps + 0.1 * fps;
  }
  live.lastAnswer = now;
  $("fps").textContent = live.fps === null ? "-" : live.fps.toFixed(1);
  $("latency").textContent = Math.round(now - live.sentAt);
  $("server-ms").textContent = answer.server_ms;
  $("dropped").textContent = answer.dropped;
  live.classNames = answer.class_names;
  live.answer = answer;
  const ids = answer.faces.map((f) => f.id);
  if (answer.faces.length && !ids.includes(live.selected)) select(answer.faces[0].id);
  const face = answer.faces.find((f) => f.id === live.selected);
  if (face) live.history.push({ t: now / 1000, p: face.probabilities });
  live.history = live.history.filter((h) => now / 1000 - h.t < TIMELINE_SECONDS);
  drawOverlay(answer);
  listFaces(answer.faces);
  const times = live.history.map((h) => h.t - now / 1000);
  drawChart($("timeline"), times, live.history.map((h) => h.p), live.classNames, [-TIMELINE_SECONDS, 0]);
  sendFrame();
}

function select(id) {
  if (live.selected !== id) live.history = [];
  live.selected = id;
  $("timeline-face").textContent = `face #${id}`;
}

function drawOverlay(answer) {
  const canvas = $("overlay");
  canvas.width = answer.width;
  canvas.height = answer.height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "bold 14px system-ui, sans-serif";
  for (const face of answer.faces) {
    const [x1, y1, x2, y2] = face.box;
    const colour = colourOf(face.label, 0);
    ctx.lineWidth = face.id === live.selected ? 4 : 2;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `#${face.id} ${face.label} ${pct(topOf(face))}`;
    const width = ctx.measureText(text).width + 8;
    const top = Math.max(0, y1 - 20);
    ctx.fillStyle = colour;
    ctx.fillRect(x1, top, width, 20);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x1 + 4, top + 15);
    // probability bars under the box, one a class
    answer.class_names.forEach((name, k) => {
      const y = y2 + 4 + 7 * k;
      ctx.fillStyle = "rgba(0, 0, 0, 0.5)";
      ctx.fillRect(x1, y, x2 - x1, 6);
      ctx.fillStyle = colourOf(name, k);
      ctx.fillRect(x1, y, (x2 - x1) * face.probabilities[name], 6);
    });
  }
}

function bars(probabilities, classNames) {
  const grid = document.createElement("div");
  grid.className = "bars";
  const best = Math.max(...classNames.map((n) => probabilities[n]));
  for (const name of classNames) {
    const p = probabilities[name];
    const bar = document.createElement("span");
    bar.className = p === best ? "bar top" : "bar";
    bar.style.width = pct(p);
    const label = document.createElement("span");
    label.textContent = name;
    const value = document.createElement("span");
    value.textContent = pct(p);
    const track = document.createElement("span");
    track.className = "track-bar";
    track.append(bar);
    grid.append(label, track, value);
  }
  return grid;
}

function listFaces(faces) {
  $("live-faces").replaceChildren(
    ...faces.map((face) => {
      const item = document.createElement("li");
      item.dataset.id = face.id;
      item.dataset.label = face.label;
      item.dataset.box = face.box.join(",");
      item.className = face.id === live.selected ? "selected" : "";
      const title = document.createElement("b");
      title.className = "face-label";
      title.textContent = `#${face.id} ${face.label} ${pct(topOf(face))}`;
      item.append(title, bars(face.probabilities, live.classNames));
      item.onclick = () => select(face.id);
      return item;
    }),
  );
}

function clickOverlay(event) {
  const answer = live.answer;
  if (!answer) return;
  const rect = $("overlay").getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * answer.width;
  const y = ((event.clientY - rect.top) / rect.height) * answer.height;
  const face = answer.faces.find((f) => x >= f.box[0] && x <= f.box[2] && y >= f.box[1] && y <= f.box[3]);
  if (face) select(face.id);
}

// A line a class over time; `range` is the time axis [from, to] in seconds.
function drawChart(canvas, times, probabilities, classNames, range) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const left = 30;
  const bottom = height - 18;
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  ctx.strokeStyle = "#ccc";
  ctx.fillStyle = "#555";
  for (const v of [0, 0.5, 1]) {
    const y = bottom - v * (bottom - 8);
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(width, y);
    ctx.stroke();
    ctx.fillText(v.toFixed(1), 4, y + 4);
  }
  const [from, to] = range;
  const xOf = (t) => left + ((t - from) / Math.max(to - from, 1e-9)) * (width - left - 4);
  ctx.fillText(`${from.toFixed(1)} s`, left, height - 4);
  ctx.fillText(`${to.toFixed(1)} s`, width - 40, height - 4);
  classNames.forEach((name, k) => {
    ctx.strokeStyle = colourOf(name, k);
    ctx.lineWidth = 2;
    ctx.beginPath();
    times.forEach((t, i) => {
      const y = bottom - probabilities[i][name] * (bottom - 8);
      if (i === 0) ctx.moveTo(xOf(t), y);
      else ctx.lineTo(xOf(t), y);
    });
    ctx.stroke();
  });
  legend(canvas, classNames);
}

function legend(canvas, classNames) {
  let box = canvas.nextElementSibling;
  if (!box || !box.classList.contains("legend")) {
    box = document.createElement("div");
    box.className = "legend";
    canvas.after(box);
  }
  box.replaceChildren(
    ...classNames.map((name, k) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = colourOf(name, k);
      item.append(swatch, name);
      return item;
    }),
  );
}

// ---- uploads ------------------------------------------------------------------------------

function showError(text) {
  $("upload-error").textContent = text;
  $("upload-error").hidden = !text;
}

async function upload(file) {
  showError("");
  $("result").hidden = true;
  $("track-timelines").replaceChildren();
  if (file.size > maxUploadMb * 2 ** 20) {
    showError(`${file.name}: larger than the server's limit of ${maxUploadMb} MB`);
    return;
  }
  $("progress").hidden = false;
  $("progress").removeAttribute("value");
  $("progress-text").textContent = `uploading ${file.name}`;
  let response;
  let body;
  try {
    response = await fetch(`api/upload?${choice()}&name=${encodeURIComponent(file.name)}`, {
      method: "POST",
      body: file,
    });
    body = await response.json().catch(() => ({ detail: `${response.status} ${response.statusText}` }));
  } catch (error) {
    body = { detail: `the upload failed: ${error.message}` };
  }
  if (!response || !response.ok) {
    $("progress").hidden = true;
    $("progress-text").textContent = "";
    showError(`${file.name}: ${body.detail}`);
    return;
  }
  if (body.kind === "image") showImage(body);
  else watchVideo(body);
}

function faceRows(rows, classNames, head) {
  $("upload-faces").tHead.rows[0].replaceChildren(
    ...head.map((text) => {
      const th = document.createElement("th");
      th.textContent = text;
      return th;
    }),
  );
  $("upload-faces").tBodies[0].replaceChildren(
    ...rows.map((row) => {
      const tr = document.createElement("tr");
      const cells = [`#${row.id}`, row.label, row.score === null || row.score === undefined ? "-" : row.score];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      const td = document.createElement("td");
      td.append(bars(row.probabilities, classNames));
      tr.append(td);
      return tr;
    }),
  );
}

function showImage(result) {
  $("progress").hidden = true;
  $("progress-text").textContent = `${result.name}: ${result.faces.length} face(s)`;
  $("annotated-video").hidden = true;
  $("annotated-image").src = result.annotated;
  $("annotated-image").hidden = false;
  $("csv").href = result.predictions;
  faceRows(result.faces, result.class_names, ["face", "label", "detector score", "probabilities"]);
  $("result").hidden = false;
}

function watchVideo(job) {
  const ws = new WebSocket(socketUrl(`/ws/jobs/${job.id}`));
  $("progress").value = 0;
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.error) {
      showError(`${job.name}: ${message.error}`);
      $("progress").hidden = true;
    } else if (message.done) {
      ws.close();
      showVideo(job, message);
    } else if (message.total) {
      $("progress").value = message.progress / message.total;
      $("progress-text").textContent = `${job.name}: frame ${message.progress} of ${message.total}`;
    } else {
      $("progress-text").textContent = `${job.name}: frame ${message.progress}`;
    }
  };
}

function showVideo(job, result) {
  $("progress").hidden = true;
  $("progress-text").textContent = `${job.name}: ${result.frames} frames, ${result.tracks.length} track(s), ${result.fps} FPS`;
  $("annotated-image").hidden = true;
  $("annotated-video").src = result.annotated;
  $("annotated-video").hidden = false;
  $("csv").href = result.predictions;
  const mean = (track) =>
    Object.fromEntries(
      result.class_names.map((n) => [n, track.probabilities.reduce((s, p) => s + p[n], 0) / track.probabilities.length]),
    );
  const rows = result.tracks.map((t) => ({ id: t.id, label: t.label, score: t.frames, probabilities: mean(t) }));
  faceRows(rows, result.class_names, ["face", "most frequent label", "frames", "mean probabilities"]);
  $("track-timelines").replaceChildren(
    ...result.tracks.map((track) => {
      const box = document.createElement("div");
      box.className = "track";
      const title = document.createElement("h4");
      title.textContent = `face #${track.id}: ${track.label} (${track.frames} frames)`;
      const canvas = document.createElement("canvas");
      canvas.width = 640;
      canvas.height = 160;
      box.append(title, canvas);
      const last = track.time[track.time.length - 1];
      setTimeout(() => drawChart(canvas, track.time, track.probabilities, result.class_names, [0, Math.max(last, 1)]));
      return box;
    }),
  );
  $("result").hidden = false;
}

// ---- wiring -------------------------------------------------------------------------------

$("start").onclick = startCamera;
$("stop").onclick = stopCamera;
$("neutral").onclick = markNeutral;
$("overlay").onclick = clickOverlay;
for (const id of ["model", "detector"]) $(id).onchange = () => live.ws && connect();
$("file").onchange = () => $("file").files[0] && upload($("file").files[0]);
const drop = $("drop");
drop.ondragover = (event) => {
  event.preventDefault();
  drop.classList.add("over");
};
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files[0]) upload(event.dataTransfer.files[0]);
};
setInterval(sendFrame, 100); // restarts the send loop if an answer never came
loadConfig().then(() => setStatus("ready"), (error) => setStatus(`cannot reach the server: ${error.message}`, true));
