// Shared helpers for the gateway pages. No DOM access at module load time.

/** Stream names: 1-64 chars of [A-Za-z0-9._-] (PROTOCOL.md), not . or .. */
export const STREAM_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

export function validStreamName(name) {
  return typeof name === 'string' && STREAM_NAME_RE.test(name) && name !== '.' && name !== '..';
}

/** Query parameters of the current page. */
export function params() {
  return new URLSearchParams(location.search);
}

/** Build an element: el('a', {href: '/x', class: 'btn'}, 'text', child). Text is never parsed as HTML. */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Human names for codec strings (avc1.42c01f -> H.264 ...). */
export function codecName(codec) {
  if (!codec) return '?';
  const c = String(codec).toLowerCase();
  if (c.startsWith('avc1') || c.startsWith('avc3') || c === 'h264') return 'H.264';
  if (c.startsWith('hvc1') || c.startsWith('hev1') || c === 'h265') return 'H.265';
  if (c.startsWith('vp09') || c === 'vp9') return 'VP9';
  if (c.startsWith('vp08') || c === 'vp8') return 'VP8';
  if (c.startsWith('av01') || c === 'av1') return 'AV1';
  if (c === 'opus') return 'Opus';
  if (c.startsWith('mp4a')) return 'AAC';
  if (c === 'flac' || c === 'fla') return 'FLAC';
  return String(codec);
}

export function formatBitrate(bps) {
  if (!Number.isFinite(bps) || bps <= 0) return '—';
  if (bps >= 1e6) return (bps / 1e6).toFixed(2) + ' Mb/s';
  if (bps >= 1e3) return (bps / 1e3).toFixed(0) + ' kb/s';
  return Math.round(bps) + ' b/s';
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  seconds = Math.floor(seconds);
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

/** One-line summary of a track object from /api/streams or an init message. */
export function describeTrack(t) {
  if (!t) return '';
  const parts = [codecName(t.codec)];
  if (t.width && t.height) parts.push(`${t.width}×${t.height}`);
  if (t.fps) parts.push(`${Math.round(t.fps * 10) / 10} fps`);
  if (t.sampleRate) parts.push(`${(t.sampleRate / 1000).toFixed(t.sampleRate % 1000 ? 1 : 0)} kHz`);
  if (t.channels) parts.push(t.channels === 1 ? 'mono' : t.channels === 2 ? 'stereo' : `${t.channels} ch`);
  if (t.bitrate) parts.push(formatBitrate(t.bitrate));
  return parts.join(' ');
}

/** Read an HTTP error response: JSON {"error": ...} per protocol, else text. */
export async function responseError(res) {
  let msg = '';
  try {
    const text = await res.text();
    try {
      const j = JSON.parse(text);
      msg = (j && (j.error || j.message)) || text;
    } catch {
      msg = text;
    }
  } catch {
    /* body unreadable */
  }
  msg = String(msg || res.statusText || '').trim();
  return `HTTP ${res.status}${msg ? ': ' + msg : ''}`;
}
