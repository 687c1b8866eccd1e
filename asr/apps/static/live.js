// Live recognition: the microphone -> AudioWorklet (pcm-worklet.js: 16 kHz Int16 frames of
// 100 ms) -> WebSocket /stream (the protocol: asr/apps/serve_stream.py's docstring) -> the partial
// text as it grows, each finished segment with its word times, then the final text.
const LIVE_RATE = 16000;
const LIVE_FRAME = 1600; // samples per binary message: 100 ms

class LiveSession {
  // on: { ready(m), partial(m), final(segment), sent(seconds), failed(reason) }; start()
  // resolves once the server is ready and the microphone open, stop() with the "done" message;
  // a failure (the server's error, a closed connection) calls on.failed once and rejects both
  constructor(mode, on) {
    this.mode = mode;
    this.on = on;
    this.frames = []; // every Int16Array sent: the page keeps what the server heard
    this.samples = 0;
    this.failed = null;
  }

  async start() {
    // made before any await: a context made later may start suspended (no user gesture left)
    this.context = new AudioContext();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.ws = new WebSocket(`${scheme}//${location.host}/stream`);
    this.ws.binaryType = "arraybuffer";
    this.done = new Promise((resolve, reject) => { this.resolveDone = resolve; this.rejectDone = reject; });
    this.done.catch(() => {}); // a failure is reported through start() or stop(), not as unhandled
    const ready = new Promise((resolve) => { this.resolveReady = resolve; });
    this.ws.onopen = () => this.ws.send(JSON.stringify({ type: "config", sample_rate: LIVE_RATE, mode: this.mode }));
    this.ws.onmessage = (e) => this.message(JSON.parse(e.data));
    this.ws.onclose = (e) => this.fail(e.reason || `the connection closed (code ${e.code})`);
    await Promise.race([ready, this.done]);
    const stream = await navigator.mediaDevices.getUserMedia({
      // what the microphone hears, not a call's processing of it
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    if (this.closed) { // the session failed while the microphone opened: let it go at once
      stream.getTracks().forEach((t) => t.stop());
      throw new Error(this.failed);
    }
    this.stream = stream;
    await this.context.audioWorklet.addModule("/static/pcm-worklet.js");
    await this.context.resume();
    if (this.closed) throw new Error(this.failed);
    this.source = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "pcm-downsampler", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      processorOptions: { outRate: LIVE_RATE, frame: LIVE_FRAME },
    });
    this.node.port.onmessage = (e) => (e.data === "flushed" ? this.onFlushed() : this.send(e.data));
    this.source.connect(this.node);
    this.node.connect(this.context.destination); // silent; a node nobody pulls is not run
  }

  message(m) {
    if (m.type === "ready") { this.resolveReady(); this.on.ready(m); }
    else if (m.type === "partial") this.on.partial(m);
    else if (m.type === "final") this.on.final(m.segment);
    else if (m.type === "done") { this.finished = true; this.resolveDone(m); }
    else if (m.type === "error") this.fail(m.error);
  }

  send(pcm) {
    if (this.failed || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(pcm.buffer);
    this.frames.push(pcm);
    this.samples += pcm.length;
    this.on.sent(this.samples / LIVE_RATE);
  }

  // -> the "done" message, after the last samples and {"type": "end"}
  async stop() {
    if (this.node && !this.failed) {
      const flushed = new Promise((resolve) => { this.onFlushed = resolve; });
      this.node.port.postMessage("flush"); // the worklet's last, short frame, then "flushed"
      await flushed;
    }
    this.closeMicrophone();
    if (!this.failed) this.ws.send(JSON.stringify({ type: "end" }));
    return this.done;
  }

  fail(reason) {
    if (this.finished || this.failed) return;
    this.failed = reason;
    this.closeMicrophone();
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close();
    this.rejectDone(new Error(reason));
    this.on.failed(reason);
  }

  closeMicrophone() {
    if (this.closed) return;
    this.closed = true;
    if (this.source) this.source.disconnect();
    if (this.node) this.node.disconnect();
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    this.context.close();
  }

  // a WAV of everything sent, sample for sample
  wav() { return encodeWav(this.frames, LIVE_RATE); }
}

// --- the page's Live controls ---

let live = null;
let liveFinals = [];

// running: Live and Record off; stoppable: Stop live on (once the microphone is open)
function liveButtons(running, stoppable = false) {
  $("live").disabled = running;
  $("live-stop").disabled = !stoppable;
  $("record").disabled = running;
}

function showLive(partial) {
  const committed = liveFinals.map((s) => s.text).join(" ");
  $("live-final").textContent = committed;
  $("live-partial").textContent = (committed && partial ? " " : "") + partial;
}

function addSegment(segment) {
  liveFinals.push(segment);
  const li = document.createElement("li");
  const time = document.createElement("span");
  time.className = "seg-time";
  time.textContent = `${fmt(segment.start)}–${fmt(segment.end)} s`;
  li.append(time);
  for (const w of segment.words) li.append(wordChip(w));
  $("segments").append(li);
}

$("live").addEventListener("click", async () => {
  showError("");
  liveFinals = [];
  $("segments").replaceChildren();
  showLive("");
  $("live-text").removeAttribute("data-first-text-at");
  $("live-box").hidden = false;
  $("live-status").textContent = "connecting…";
  liveButtons(true);
  let listening = "";
  const session = new LiveSession(liveMode(), {
    ready: (m) => {
      listening = `listening (mode ${m.mode}, chunks of ${m.chunk_ms} ms)`;
      $("live-status").textContent = listening + "…";
    },
    partial: (m) => {
      // how much audio had been sent when words first showed: the browser test reads it
      if (m.text && !$("live-text").hasAttribute("data-first-text-at")) {
        $("live-text").dataset.firstTextAt = (session.samples / LIVE_RATE).toFixed(3);
      }
      showLive(m.partial);
    },
    final: (segment) => { addSegment(segment); showLive(""); },
    sent: (seconds) => { $("live-status").textContent = `${listening}: ${seconds.toFixed(1)} s sent`; },
    failed: (reason) => {
      showError(reason);
      if (live === session) live = null;
      liveButtons(false);
      $("live-status").textContent = "";
    },
  });
  live = session;
  try {
    await session.start();
    if (!session.failed) liveButtons(true, true);
  } catch (e) {
    session.fail(`the microphone could not be opened (${e.message})`); // said already if the server refused
  }
});

$("live-stop").addEventListener("click", async () => {
  const session = live;
  if (!session) return;
  live = null;
  $("live-stop").disabled = true;
  $("live-status").textContent = "finishing…";
  let done;
  try {
    done = await session.stop();
  } catch {
    return; // on.failed has said why
  }
  $("live-final").textContent = done.text;
  $("live-partial").textContent = "";
  $("live-status").textContent = `${done.duration.toFixed(2)} s of audio, ${liveFinals.length} segment(s)`;
  setAudio(session.wav(), "live.wav"); // play it back, or Transcribe it whole
  liveButtons(false);
});

// the mode chosen for uploads when the model streams in it, else greedy
function liveMode() {
  const mode = $("mode").value;
  return streamModes.includes(mode) ? mode : "greedy";
}
