// AudioWorklet: the microphone at the AudioContext's rate -> 16-bit PCM at `outRate` (16 kHz),
// posted to the page in frames of `frame` samples (1600: every 100 ms). Runs on the audio
// thread, so the main thread's work (the WebSocket, the page) never drops a sample.
//
// Downsampling: each output sample is the input low-passed at 0.45 x outRate (below the new
// Nyquist, so speech above 8 kHz does not fold back into the band the model hears) and read at
// its fractional input position: a windowed-sinc kernel (Blackman, HALF input samples either
// side) evaluated from a table. Any input rate works (48000, 44100, ...); at outRate it is a copy.

const HALF = 24; // kernel half-width in input samples at the cutoff's scale
const TABLE = 256; // kernel table steps per input sample (linear interpolation between them)

class PcmDownsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { outRate = 16000, frame = 1600 } = options.processorOptions || {};
    this.step = sampleRate / outRate; // input samples per output sample (sampleRate: the context's)
    this.copy = Math.abs(this.step - 1) < 1e-9;
    // low-pass cutoff as a fraction of the input rate's Nyquist; the kernel stretches by 1 / g
    this.g = Math.min(1, 0.9 / this.step);
    this.half = Math.ceil(HALF / this.g); // input samples either side an output sample reads
    this.table = this.kernel();
    // unread input, index 0 at input time `base`: it starts with `half` zeros, so that output 0
    // is at input sample 0
    this.base = -this.half;
    this.input = new Float32Array(this.half);
    this.t = 0; // the next output sample's input time
    this.out = new Int16Array(frame);
    this.filled = 0;
    this.port.onmessage = (e) => {
      if (e.data === "flush") { // Stop: what is left, then a marker the page waits for
        this.post(this.filled);
        this.port.postMessage("flushed");
      }
    };
  }

  kernel() {
    const n = this.half * TABLE;
    const table = new Float32Array(n + 2);
    for (let i = 0; i <= n; i++) {
      const d = i / TABLE; // distance in input samples
      const x = Math.PI * this.g * d;
      const sinc = i === 0 ? 1 : Math.sin(x) / x;
      const w = 0.42 + 0.5 * Math.cos((Math.PI * d) / this.half) + 0.08 * Math.cos((2 * Math.PI * d) / this.half);
      table[i] = this.g * sinc * w;
    }
    return table;
  }

  emit(v) {
    const s = Math.max(-1, Math.min(1, v));
    this.out[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff; // as wav.js writes a WAV
    if (this.filled === this.out.length) this.post(this.filled);
  }

  post(n) {
    if (n === 0) return;
    const frame = this.out.slice(0, n);
    this.port.postMessage(frame, [frame.buffer]);
    this.filled = 0;
  }

  process(inputs, outputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // no input yet: keep the node alive
    const block = channels[0]; // mono: the first channel (getUserMedia's audio is mono here)
    if (this.copy) {
      for (let i = 0; i < block.length; i++) this.emit(block[i]);
      return true;
    }
    const joined = new Float32Array(this.input.length + block.length);
    joined.set(this.input);
    joined.set(block, this.input.length);
    const end = this.base + joined.length; // input time just past the last sample held
    while (Math.floor(this.t) + this.half < end) {
      const centre = Math.floor(this.t);
      let acc = 0;
      for (let k = centre - this.half + 1; k <= centre + this.half; k++) {
        const pos = Math.abs(this.t - k) * TABLE;
        const i = Math.floor(pos);
        if (i >= this.table.length - 1) continue;
        const f = pos - i;
        acc += joined[k - this.base] * (this.table[i] * (1 - f) + this.table[i + 1] * f);
      }
      this.emit(acc);
      this.t += this.step;
    }
    const keep = Math.floor(this.t) - this.half + 1; // the oldest input the next output reads
    this.input = joined.slice(keep - this.base);
    this.base = keep;
    // outputs stay silent: the node is connected to the destination only so that it is pulled
    return true;
  }
}

registerProcessor("pcm-downsampler", PcmDownsampler);
