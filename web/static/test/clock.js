// Glass-to-glass latency measurement: a canvas painting the wall clock as binary
// blocks, and a decoder that reads them back from the frames a <video> presents.
//
// Clock: ms = round(performance.timeOrigin + performance.now()) mod 2^24, the same
// wall clock in every page of one browser. Pattern: 48 blocks of 40x40 px in three
// rows of 16 at the top of the frame (left to right, bit 0 first): bits 0-23 the
// clock, bits 24-47 a hash of it, so a blurred or half-updated frame is rejected
// (a wrong value passes with odds of about 2^-24).

export const WIDTH = 640;
export const HEIGHT = 360;
const BLOCK = 40;
const MOD = 1 << 24;

export function nowMs() {
  return performance.timeOrigin + performance.now();
}

const ROWS = 3;
const BITS = 16 * ROWS;

function hash24(v) {
  return Math.imul(v ^ 0x5a5a5a, 0x9e3779b1) >>> 8;
}

/** Bits (array of 48 0/1) for clock value v (24 bits). */
export function encode(v) {
  v &= MOD - 1;
  const h = hash24(v);
  const out = [];
  for (let i = 0; i < 24; i++) out.push((v >>> i) & 1);
  for (let i = 0; i < 24; i++) out.push((h >>> i) & 1);
  return out;
}

/** Clock value from 48 bits; null when the hash does not match. */
export function decode(bits) {
  let v = 0;
  let h = 0;
  for (let i = 0; i < 24; i++) v |= bits[i] << i;
  for (let i = 0; i < 24; i++) h |= bits[24 + i] << i;
  return (h >>> 0) === hash24(v) ? v : null;
}

/**
 * A 640x360 canvas stream that paints the clock at fps (frames requested right after
 * each paint, so the capture time is the painted time). Returns {stream, canvas, stop, frames}.
 */
export function clockStream(fps = 30) {
  const canvas = document.createElement('canvas');
  canvas.width = WIDTH;
  canvas.height = HEIGHT;
  const ctx = canvas.getContext('2d');
  const stream = canvas.captureStream(0);
  const track = stream.getVideoTracks()[0];
  const out = { stream, canvas, frames: 0, stop: null };
  const paint = () => {
    const t = nowMs();
    const bits = encode(Math.round(t) % MOD);
    ctx.fillStyle = '#404040';
    ctx.fillRect(0, 0, WIDTH, HEIGHT);
    for (let i = 0; i < BITS; i++) {
      ctx.fillStyle = bits[i] ? '#ffffff' : '#000000';
      ctx.fillRect((i % 16) * BLOCK, Math.floor(i / 16) * BLOCK, BLOCK, BLOCK);
    }
    // Some moving content below the pattern, like a real picture.
    ctx.fillStyle = '#3b9eff';
    ctx.fillRect((out.frames * 6) % WIDTH, 170, 60, 60);
    ctx.fillStyle = '#e4e8ed';
    ctx.font = '28px monospace';
    ctx.fillText(`${new Date(t).toISOString().slice(11, 23)}  #${out.frames}`, 20, 300);
    out.frames++;
    if (track.requestFrame) track.requestFrame();
  };
  paint();
  const timer = setInterval(paint, 1000 / fps);
  out.stop = () => { clearInterval(timer); track.stop(); };
  return out;
}

/**
 * Read the clock from every frame video presents (requestVideoFrameCallback +
 * canvas readback). latency = time the frame callback runs - painted time, in ms.
 * Returns {samples, bad, frames, reset(), stop()}.
 */
export function clockReader(video) {
  const c = document.createElement('canvas');
  c.width = 16 * 4;
  c.height = ROWS * 4;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  const r = { samples: [], bad: 0, frames: 0, last: null, stopped: false };
  r.reset = () => { r.samples = []; r.bad = 0; r.frames = 0; };
  r.stop = () => { r.stopped = true; };
  const onFrame = () => {
    if (r.stopped) return;
    video.requestVideoFrameCallback(onFrame);
    const vw = video.videoWidth;
    const vh = video.videoHeight;
    if (!vw || !vh) return;
    r.frames++;
    // Scale the pattern area down to 4x4 px per block, then read the centres.
    const srcH = (ROWS * BLOCK * vh) / HEIGHT;
    const srcW = (16 * BLOCK * vw) / WIDTH;
    ctx.drawImage(video, 0, 0, srcW, srcH, 0, 0, c.width, c.height);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    const bits = [];
    for (let i = 0; i < BITS; i++) {
      const x = (i % 16) * 4 + 1;
      const y = Math.floor(i / 16) * 4 + 1;
      let sum = 0;
      for (let dy = 0; dy < 2; dy++) {
        for (let dx = 0; dx < 2; dx++) {
          const o = ((y + dy) * c.width + (x + dx)) * 4;
          sum += px[o] + px[o + 1] + px[o + 2];
        }
      }
      bits.push(sum / 12 > 128 ? 1 : 0);
    }
    const v = decode(bits);
    if (v === null) { r.bad++; return; }
    if (v === r.last) return; // the same frame presented again
    r.last = v;
    // The callback runs once the frame has been handed to the compositor: its own
    // time is causal (never before the paint), unlike the vsync estimate in meta.
    const shown = nowMs();
    let lat = (((Math.round(shown) % MOD) - v) % MOD + MOD) % MOD;
    if (lat > MOD / 2) lat -= MOD; // shown before painted: a clock problem, kept visible
    r.samples.push(lat);
  };
  video.requestVideoFrameCallback(onFrame);
  return r;
}

export function percentile(xs, p) {
  if (!xs.length) return NaN;
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
