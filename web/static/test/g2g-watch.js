// Clock viewer for the glass-to-glass latency test: plays the stream with MSEPlayer
// and reads the painted clock from every presented frame.
// Query: stream=NAME, mode=auto|worker|main, latency=target seconds.
// Test hook: window.g2g = {player, reader}; window.player = the MSEPlayer.
import { MSEPlayer } from '/player.js';
import { clockReader, percentile } from '/test/clock.js';

const q = new URLSearchParams(location.search);
const name = q.get('stream') || 'g2g';
const video = document.getElementById('video');
const target = parseFloat(q.get('latency')) || 0.2;
const player = new MSEPlayer(video, { stream: name, mode: q.get('mode') || 'auto', targetLatency: target });
window.player = player;
const reader = clockReader(video);
window.g2g = { player, reader };
document.getElementById('name').textContent = name;
player.addEventListener('state', (e) => {
  document.body.dataset.state = e.detail.state;
  document.getElementById('state').textContent = `${e.detail.state} (${player.mode || '?'})`;
});
player.start();
setInterval(() => {
  document.getElementById('lat').textContent =
    `${reader.samples.length} samples, p50 ${percentile(reader.samples, 50)} ms, p95 ${percentile(reader.samples, 95)} ms; player latency ${player.stats.latency} s`;
}, 1000);
