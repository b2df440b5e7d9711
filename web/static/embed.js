// The embed demo page: shows the snippet with this gateway's origin and plays
// ?stream= in an <mse-player>. (A file, not an inline script: the pages' CSP
// allows scripts from the gateway only.)
const q = new URLSearchParams(location.search);
document.getElementById('snippet').textContent = document.getElementById('snippet').textContent.replace('GATEWAY', location.origin);
const el = document.getElementById('demo');
for (const a of ['latency', 'mode', 'token', 'keep']) if (q.get(a)) el.setAttribute(a, q.get(a));
el.setAttribute('stream', q.get('stream') || 'demo');
window.player = el.player;
el.addEventListener('state', () => { window.player = el.player; document.body.dataset.state = el.state; });
