'use strict';
// The live dashboard: one fetch() stream of server-sent events (EventSource cannot send X-Auth-Token), a snapshot first,
// then changes merged into the page. No timer asks the server anything; the only timer re-ages "last heard" on the page.
(() => {
  const $ = s => document.querySelector(s);
  const TOKEN = 'volumebackup-token', IN_FLIGHT = new Set(['creating', 'restoring', 'deleting']), KEEP_FINISHED = 20;
  const state = { jobs: new Map(), failures: [], agents: new Map(), repository: null, throughput: new Map(), downAfter: 60, bucket: 10, skew: 0 };
  let controller = null, retryIn = 1000, pending = false;

  const el = (tag, attrs = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
    e.append(...children.filter(c => c !== null && c !== undefined));
    return e;
  };
  const bytes = n => {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    for (n = Number(n) || 0; n >= 1024 && i < units.length - 1; i++) n /= 1024;
    return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
  };
  const now = () => Date.now() - state.skew;
  const ago = t => {
    const s = Math.max(0, Math.round((now() - Date.parse(t)) / 1000));
    return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
  };

  function setConnection(text, live) {
    $('#connection').textContent = text;
    $('#connection').classList.toggle('live', live);
  }

  function showSignin(message) {
    controller?.abort();
    $('#board').hidden = true;
    $('#signout').hidden = true;
    $('#signin').hidden = false;
    $('#signin-error').textContent = message || '';
    setConnection('signed out', false);
    $('#token').focus();
  }

  // Cinder's error shape: {"forbidden": {"code": 403, "message": "..."}}.
  async function reason(response) {
    try { return Object.values(await response.json())[0].message; } catch { return `HTTP ${response.status}`; }
  }

  async function connect() {
    controller?.abort();
    const mine = controller = new AbortController();
    setConnection('connecting…', false);
    let response;
    try {
      response = await fetch('/dashboard/events', { headers: { 'X-Auth-Token': sessionStorage.getItem(TOKEN), Accept: 'text/event-stream' }, cache: 'no-store', signal: mine.signal });
    } catch {
      if (!mine.signal.aborted) reconnect();
      return;
    }
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(TOKEN);
      showSignin(await reason(response));
      return;
    }
    if (!response.ok) { reconnect(); return; }
    $('#signin').hidden = true;
    $('#board').hidden = false;
    $('#signout').hidden = false;
    setConnection('live', true);
    retryIn = 1000;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, '\n');
        for (let end; (end = buffer.indexOf('\n\n')) >= 0; buffer = buffer.slice(end + 2)) dispatch(buffer.slice(0, end));
      }
    } catch { /* the stream broke: reconnect below, unless signed out */ }
    if (!mine.signal.aborted) reconnect();
  }

  function reconnect() {
    setConnection(`reconnecting in ${Math.round(retryIn / 1000)} s…`, false);
    setTimeout(connect, retryIn);
    retryIn = Math.min(retryIn * 2, 30000);
  }

  function dispatch(block) {
    let type = 'message', data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) type = line.slice(6).trim();
      else if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(5).replace(/^ /, '');
    }
    if (!data) return;
    const message = JSON.parse(data);
    if (type === 'snapshot') snapshot(message);
    else if (type === 'job') job(message);
    else if (type === 'agent') state.agents.set(`${message.binary} ${message.host}`, message);
    else if (type === 'repository') state.repository = message;
    else if (type === 'throughput') state.throughput.set(Date.parse(message.at), message.bytes);
    render();
  }

  function snapshot(s) {
    state.skew = Date.now() - Date.parse(s.now);
    state.downAfter = s.down_after_seconds;
    state.bucket = s.bucket_seconds;
    state.jobs = new Map(s.jobs.map(j => [j.id, j]));
    state.failures = s.failures;
    state.agents = new Map(s.agents.map(a => [`${a.binary} ${a.host}`, a]));
    state.repository = s.repository;
    state.throughput = new Map(s.throughput.map(p => [Date.parse(p.at), p.bytes]));
  }

  function job(update) {
    const merged = { ...state.jobs.get(update.id) };
    const before = merged.bytes_done || 0;
    for (const [k, v] of Object.entries(update)) if (v !== null) merged[k] = v;
    if (merged.bytes_done < before) merged.bytes_done = before;              // a late progress event never moves a bar back
    if (merged.status === 'available' && merged.bytes_total) merged.bytes_done = merged.bytes_total;
    state.jobs.set(update.id, merged);
    if (merged.status === 'error' || merged.status === 'error_deleting')
      state.failures = [merged, ...state.failures.filter(f => f.id !== merged.id)].slice(0, 10);
  }

  // Events come in bursts: draw once per frame.
  function render() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  }

  function draw() {
    const jobs = [...state.jobs.values()].sort((a, b) =>
      (IN_FLIGHT.has(b.status) - IN_FLIGHT.has(a.status)) || Date.parse(b.updated_at) - Date.parse(a.updated_at));
    const running = jobs.filter(j => IN_FLIGHT.has(j.status));
    const finished = jobs.filter(j => !IN_FLIGHT.has(j.status)).slice(0, KEEP_FINISHED);
    for (const j of jobs) if (!running.includes(j) && !finished.includes(j)) state.jobs.delete(j.id);
    drawJobs([...running, ...finished]);
    drawAgents(running);
    drawFailures();
    drawStats(running);
    drawChart();
  }

  function progress(j) {
    if (j.kind === 'restore' && IN_FLIGHT.has(j.status) && !j.bytes_total)   // until its first progress event
      return el('div', { class: 'bar indeterminate', role: 'progressbar', 'aria-label': 'restore in progress' }, el('span'));
    const pct = j.status === 'available' ? 100 : j.bytes_total ? Math.min(100, Math.floor(100 * (j.bytes_done || 0) / j.bytes_total)) : 0;
    const bar = el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct, 'aria-label': `${pct} percent` }, el('span'));
    bar.firstChild.style.width = `${pct}%`;
    return el('span', {}, bar, el('span', { class: 'pct' }, `${pct}%`));
  }

  function drawJobs(jobs) {
    $('#jobs tbody').replaceChildren(...jobs.map(j => el('tr', { 'data-id': j.id, 'data-kind': j.kind },
      el('td', { class: 'name', title: j.id }, j.name || j.id.slice(0, 8)),
      el('td', {}, j.kind || 'backup'),
      el('td', { class: `status status-${j.status}` }, j.status || ''),
      el('td', { class: 'phase' }, IN_FLIGHT.has(j.status) ? j.phase || '' : '–'),
      el('td', {}, progress(j)),
      el('td', {}, [j.zone, j.host].filter(Boolean).join(' · ')),
      el('td', {}, j.updated_at ? ago(j.updated_at) : ''))));
    $('#jobs-empty').hidden = jobs.length > 0;
  }

  function drawAgents(running) {
    const queued = new Map(), busy = new Map();
    for (const j of running) {
      if (j.phase === 'queued') queued.set(j.zone, (queued.get(j.zone) || 0) + 1);
      else if (j.host) busy.set(j.host, (busy.get(j.host) || 0) + 1);
    }
    const agents = [...state.agents.values()].sort((a, b) => a.zone.localeCompare(b.zone) || a.binary.localeCompare(b.binary) || a.host.localeCompare(b.host));
    $('#agents tbody').replaceChildren(...agents.map(a => {
      const up = now() - Date.parse(a.last_heartbeat) < state.downAfter * 1000;
      const health = a.disabled ? 'disabled' : up ? 'up' : 'down';
      const backup = a.binary === 'cinder-backup';
      return el('tr', { 'data-host': a.host, 'data-binary': a.binary },
        el('td', {}, a.zone), el('td', {}, a.binary), el('td', {}, a.host),
        el('td', { class: `health health-${health}` }, health), el('td', {}, ago(a.last_heartbeat)),
        el('td', {}, backup ? String(busy.get(a.host) || 0) : '–'), el('td', {}, backup ? String(queued.get(a.zone) || 0) : '–'));
    }));
  }

  function drawFailures() {
    $('#failures').replaceChildren(...state.failures.map(f => el('li', { 'data-id': f.id },
      el('strong', {}, f.name || f.id.slice(0, 8)), ` ${f.status} · ${f.zone || ''} · ${f.updated_at ? ago(f.updated_at) : ''}`,
      el('span', { class: 'reason' }, f.fail_reason || 'no reason given'))));
    $('#failures-empty').hidden = state.failures.length > 0;
  }

  function drawStats(running) {
    $('#stat-running').textContent = running.filter(j => j.phase !== 'queued').length;
    $('#stat-queued').textContent = running.filter(j => j.phase === 'queued').length;
    const since = now() - 30000;
    let recent = 0;
    for (const [at, b] of state.throughput) if (at + state.bucket * 1000 > since) recent += b;
    $('#stat-throughput').textContent = `${bytes(recent / 30)}/s`;
    const r = state.repository;
    $('#stat-logical').textContent = r ? bytes(r.logical_bytes) : '–';
    $('#stat-backups').textContent = r ? r.backups : 0;
    $('#stat-stored').textContent = r ? bytes(r.stored_bytes) : '–';
    $('#stat-ratio').textContent = r && r.ratio ? `${r.ratio.toFixed(2)} : 1` : '–';
  }

  function drawChart() {
    const step = state.bucket * 1000, count = Math.round(3600000 / step);
    const last = Math.floor(now() / step) * step;
    for (const at of state.throughput.keys()) if (at <= last - count * step) state.throughput.delete(at);
    const rates = Array.from({ length: count }, (_, i) => (state.throughput.get(last - (count - 1 - i) * step) || 0) / state.bucket);
    const max = Math.max(...rates, 1), w = 720, h = 180;
    const points = rates.map((r, i) => `${(i * w / (count - 1)).toFixed(1)},${(h - 4 - r / max * (h - 12)).toFixed(1)}`);
    const svg = $('#chart');
    const area = document.createElementNS('http://www.w3.org/2000/svg', 'path');
    area.setAttribute('class', 'area');
    area.setAttribute('d', `M0,${h} L${points.join(' L')} L${w},${h} Z`);
    svg.querySelector('path')?.remove();
    svg.append(area);
    $('#chart-max').textContent = `peak ${bytes(max)}/s`;
  }

  $('#signin').addEventListener('submit', e => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN, $('#token').value.trim());
    $('#token').value = '';
    connect();
  });
  $('#signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN);
    showSignin('');
  });
  setInterval(() => { if (!$('#board').hidden) render(); }, 5000);   // ages "last heard" and health; asks the server nothing
  if (sessionStorage.getItem(TOKEN)) connect(); else showSignin('');
})();
