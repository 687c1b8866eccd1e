// The page: one audio (a chosen file or a recording) -> POST /transcribe -> transcript,
// clickable words, spectrogram (and attention for LAS models). Live recognition: live.js.
const $ = (id) => document.getElementById(id);
let audio = null; // { blob, name }
let recorder = null;
let streamModes = []; // the modes /stream decodes in (none: the model cannot stream)
let canStream = false;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setAudio(blob, name) {
  audio = { blob, name };
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(blob);
  player.hidden = false;
  $("transcribe").disabled = false;
  $("result").hidden = true;
  showError("");
}

async function loadModel() {
  const m = await (await fetch("/model")).json();
  const cer = m.dev_cer === null ? "?" : (100 * m.dev_cer).toFixed(1) + " %";
  $("model").textContent =
    `${m.checkpoint}: ${m.kind} model, preset ${m.preset ?? "?"}, language ${m.lang}, units ${m.units}, ` +
    `${m.steps ?? "?"} training steps, dev CER ${cer}` + (m.lm ? `; LM ${m.lm}` : "; no LM");
  streamModes = m.stream_modes || [];
  canStream = m.streaming;
  $("live").disabled = !canStream;
  $("live").title = m.streaming ? "recognise the microphone as you speak"
    : "this model cannot stream: train it with --streaming for live recognition";
  for (const [name, description] of Object.entries(m.modes)) {
    const option = new Option(`${name}: ${description}`, name);
    option.selected = name === m.default_mode;
    $("mode").add(option);
  }
}

function fmt(t) { return t === null ? "?" : t.toFixed(2); }

// a word and its times; a click plays the audio from its start
function wordChip(w) {
  const span = document.createElement("span");
  span.className = "word";
  span.dataset.start = w.start ?? "";
  span.append(w.word);
  const time = document.createElement("small");
  time.textContent = `${fmt(w.start)}–${fmt(w.end)} s`;
  span.append(time);
  span.addEventListener("click", () => {
    if (w.start === null) return;
    const player = $("player");
    player.currentTime = w.start;
    player.play();
  });
  return span;
}

function showResult(r) {
  $("text").textContent = r.text;
  $("stats").textContent =
    `${r.duration.toFixed(2)} s of audio, decoded in ${r.decode_seconds.toFixed(3)} s (mode ${r.mode})`;
  const words = $("words");
  words.replaceChildren();
  for (const w of r.words) words.append(wordChip(w));
  $("spectrogram").src = r.spectrogram || "";
  $("spectrogram").hidden = !r.spectrogram;
  $("attention-box").hidden = !r.attention;
  if (r.attention) $("attention").src = r.attention;
  $("result").hidden = false;
}

async function transcribe() {
  if (!audio) return;
  const form = new FormData();
  form.append("file", audio.blob, audio.name);
  form.append("mode", $("mode").value);
  form.append("plots", "1");
  $("transcribe").disabled = true;
  $("busy").hidden = false;
  showError("");
  try {
    const response = await fetch("/transcribe", { method: "POST", body: form });
    let body;
    try { body = await response.json(); } catch { body = { error: `${response.status} ${response.statusText}` }; }
    if (!response.ok) {
      $("result").hidden = true;
      showError(body.error || `error ${response.status}`);
    } else {
      showResult(body);
    }
  } catch (e) {
    showError(`the server could not be reached (${e.message})`);
  } finally {
    $("transcribe").disabled = false;
    $("busy").hidden = true;
  }
}

$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  if (f) setAudio(f, f.name);
});

$("record").addEventListener("click", async () => {
  showError("");
  try {
    recorder = new WavRecorder();
    await recorder.start();
  } catch (e) {
    showError(`the microphone could not be opened (${e.message})`);
    return;
  }
  $("record").disabled = true;
  $("live").disabled = true; // one use of the microphone at a time
  $("stop").disabled = false;
  $("rec-status").textContent = "recording…";
});

$("stop").addEventListener("click", async () => {
  const blob = await recorder.stop();
  $("record").disabled = false;
  $("live").disabled = !canStream;
  $("stop").disabled = true;
  $("rec-status").textContent = `recorded ${(blob.size / 1024).toFixed(0)} kB`;
  setAudio(blob, "recording.wav");
});

$("transcribe").addEventListener("click", transcribe);
loadModel().catch((e) => showError(`could not read /model (${e.message})`));
