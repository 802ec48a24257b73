// The fleet view's page: a snapshot, then deltas, over server-sent events;
// the devices drawn on one canvas, repainting only the cells that changed.
'use strict';
(() => {
  const STATES = [
    ['t', 'on target'], ['d', 'downloading'], ['f', 'flashing'], ['w', 'pending'],
    ['p', 'provisioning'], ['x', 'failed'], ['o', 'offline'], ['r', 'deleted'],
  ];
  const NAME = Object.fromEntries(STATES);
  const rootStyle = getComputedStyle(document.documentElement);
  const COLOR = {};
  for (const [c] of STATES) COLOR[c.charCodeAt(0)] = rootStyle.getPropertyValue('--' + c).trim();
  const $ = (id) => document.getElementById(id);

  // fv is the page's model, also read by the browser test.
  const fv = window.fleetview = {
    n: 0, seq: 0, states: new Uint8Array(0), cix: new Int32Array(0), commits: [''],
    stats: null, errors: [], frames: 0, lastFrameBytes: 0, maxFrameBytes: 0, lastRenderMs: 0, maxRenderMs: 0, reconnects: 0,
    // Render times (ms) of whole repaints and of repaints of changed cells.
    render: { full: { n: 0, last: 0, max: 0 }, delta: { n: 0, last: 0, max: 0, cells: 0 } },
    count(name) {
      const code = STATES.find(([, n]) => n === name)[0].charCodeAt(0);
      let k = 0;
      for (let i = 0; i < this.n; i++) if (this.states[i] === code) k++;
      return k;
    },
  };

  // ---- the grid ----
  const canvas = $('grid'), wrap = $('grid-wrap'), ctx = canvas.getContext('2d');
  let pitch = 10, size = 9, cols = 1, full = true, dirty = [];
  function layout() {
    const w = wrap.clientWidth || 600;
    const top = wrap.getBoundingClientRect().top + window.scrollY;
    const maxH = Math.max(200, window.innerHeight - top - 48);
    const n = Math.max(fv.n, 1);
    pitch = Math.max(3, Math.min(28, Math.floor(Math.sqrt((w * maxH) / n))));
    size = pitch >= 12 ? pitch - 2 : pitch >= 5 ? pitch - 1 : pitch;
    cols = Math.max(1, Math.floor(w / pitch));
    const rows = Math.ceil(fv.n / cols);
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = cols * pitch + 'px';
    canvas.style.height = rows * pitch + 'px';
    canvas.width = Math.ceil(cols * pitch * dpr);
    canvas.height = Math.ceil(rows * pitch * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    full = true;
  }
  // cellCenter is where cell i is drawn, in viewport pixels.
  fv.cellCenter = (i) => {
    const r = canvas.getBoundingClientRect();
    return { x: r.left + (i % cols) * pitch + size / 2, y: r.top + Math.floor(i / cols) * pitch + size / 2 };
  };
  function paintCell(i) {
    const x = (i % cols) * pitch, y = Math.floor(i / cols) * pitch, s = fv.states[i];
    ctx.clearRect(x, y, pitch, pitch);
    if (s === 114 /* r: deleted, a hollow cell */) {
      ctx.strokeStyle = '#484f58';
      ctx.lineWidth = 1;
      ctx.strokeRect(x + 0.5, y + 0.5, size - 1, size - 1);
      return;
    }
    ctx.fillStyle = COLOR[s] || '#000';
    ctx.fillRect(x, y, size, size);
  }
  function render() {
    rafPending = false;
    const t0 = performance.now();
    const wasFull = full, cells = dirty.length;
    if (full) {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      // One pass per colour: few fillStyle changes for 10,000 cells.
      for (const [c] of STATES) {
        const code = c.charCodeAt(0);
        if (c === 'r') { for (let i = 0; i < fv.n; i++) if (fv.states[i] === code) paintCell(i); continue; }
        ctx.fillStyle = COLOR[code];
        for (let i = 0; i < fv.n; i++) {
          if (fv.states[i] === code) ctx.fillRect((i % cols) * pitch, Math.floor(i / cols) * pitch, size, size);
        }
      }
      full = false;
    } else {
      for (const i of dirty) paintCell(i);
    }
    dirty = [];
    renderStats();
    const dt = performance.now() - t0;
    fv.lastRenderMs = dt;
    fv.maxRenderMs = Math.max(fv.maxRenderMs, dt);
    const r = wasFull ? fv.render.full : fv.render.delta;
    r.n++; r.last = dt; r.max = Math.max(r.max, dt);
    if (!wasFull) r.cells = Math.max(r.cells, cells);
  }
  let rafPending = false;
  function schedule() {
    if (!rafPending) { rafPending = true; requestAnimationFrame(render); }
  }
  window.addEventListener('resize', () => { layout(); schedule(); });

  // ---- frames ----
  function applySnap(f) {
    fv.n = f.n;
    fv.states = new Uint8Array(f.n);
    for (let i = 0; i < f.n; i++) fv.states[i] = f.states.charCodeAt(i);
    fv.cix = Int32Array.from(f.cix);
    fv.commits = f.commits || [''];
    fv.seq = f.seq;
    fv.errors = f.stats.errors || [];
    applyStats(f.stats);
    layout();
    schedule();
  }
  function applyDelta(f) {
    if (f.n !== fv.n || f.seq !== fv.seq + 1) { reconnect(); return; } // missed a frame
    fv.seq = f.seq;
    if (f.commits) fv.commits = f.commits;
    for (let k = 0; k < f.idx.length; k++) {
      const i = f.idx[k];
      fv.states[i] = f.states.charCodeAt(k);
      fv.cix[i] = f.cix[k];
      if (!full) dirty.push(i);
    }
    if (f.stats.errors) fv.errors = f.stats.errors.concat(fv.errors).slice(0, 50); // the new ones
    applyStats(f.stats);
    schedule();
  }
  function applyStats(st) {
    fv.stats = st;
  }

  let es = null;
  function connect() {
    es = new EventSource('events');
    const on = (kind, fn) => es.addEventListener(kind, (e) => {
      fv.frames++;
      fv.lastFrameBytes = e.data.length;
      fv.maxFrameBytes = Math.max(fv.maxFrameBytes, e.data.length);
      fn(JSON.parse(e.data));
    });
    on('snap', applySnap);
    on('delta', applyDelta);
    es.onopen = () => setConn('live', 'live');
    es.onerror = () => setConn('lost', 'reconnecting…');
  }
  function reconnect() {
    fv.reconnects++;
    if (es) es.close();
    connect();
  }
  function setConn(status, text) {
    $('conn').dataset.status = status;
    $('conn-text').textContent = text;
  }

  // ---- figures ----
  const fmt = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
  const clock = (ms) => new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
  const short = (c) => (c ? c.slice(0, 7) : '–');
  function ago(ms, now) {
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 90) return s + ' s ago';
    if (s < 5400) return Math.round(s / 60) + ' min ago';
    return Math.round(s / 3600) + ' h ago';
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else if (k.startsWith('data-')) e.setAttribute(k, v); else e[k] = v;
    }
    for (const k of kids) e.append(k);
    return e;
  }
  let legendBuilt = false, shownErrSeq = -1;
  function renderStats() {
    const st = fv.stats;
    if (!st) return;
    const pct = st.active ? Math.floor((st.onTarget / st.active) * 100) : 0;
    $('progress-value').textContent = st.active ? pct + '%' : '–';
    $('progress-bar').style.width = (st.active ? (st.onTarget / st.active) * 100 : 0) + '%';
    $('progress-detail').textContent = `${st.onTarget.toLocaleString()} / ${st.active.toLocaleString()} on target`;
    $('rate').textContent = fmt(st.rate);
    const left = st.active - st.onTarget;
    $('eta').textContent = st.active === 0 ? '' : left === 0 ? 'converged' : st.rate > 0 ? `ETA ${Math.ceil(left / st.rate)} s for ${left.toLocaleString()}` : `${left.toLocaleString()} to go`;
    $('hook-rate').textContent = fmt(st.hookRate);
    const h = st.hooks || {};
    const hookTotal = Object.values(h).reduce((a, b) => a + b, 0);
    const kinds = ['update', 'restart', 'delete', 'unknown'].filter((k) => h[k]).map((k) => `${k} ${h[k].toLocaleString()}`);
    $('hook-total').textContent = `${hookTotal.toLocaleString()} total` + (kinds.length ? ` · ${kinds.join(' · ')}` : '');
    $('report-rate').textContent = fmt(st.reportRate);
    $('report-total').textContent = `${st.reports.toLocaleString()} total`;
    $('error-rate').textContent = fmt(st.errorRate);
    $('error-total').textContent = `${st.errorCount.toLocaleString()} total`;
    $('device-count').textContent = `${fv.n.toLocaleString()} · ${cols}×${Math.ceil(fv.n / cols)}`;
    $('clock').textContent = clock(st.time);

    const legend = $('legend');
    if (!legendBuilt) {
      for (const [c, name] of STATES) {
        legend.append(el('li', { 'data-state': c }, el('span', { class: 'sw', style: '' }), name, el('span', { class: 'n' })));
        legend.lastChild.firstChild.style.background = c === 'r' ? 'transparent' : rootStyle.getPropertyValue('--' + c);
        if (c === 'r') legend.lastChild.firstChild.style.outline = '1px solid #484f58';
      }
      legendBuilt = true;
    }
    for (const li of legend.children) {
      const n = st.counts[NAME[li.dataset.state]] || 0;
      li.querySelector('.n').textContent = n.toLocaleString();
      li.classList.toggle('zero', n === 0);
    }

    const tbody = $('apps').tBodies[0];
    tbody.replaceChildren(...(st.apps || []).map((a) => {
      const bar = el('div', { class: 'bar' }, el('div'));
      bar.firstChild.style.width = (a.devices ? (a.onTarget / a.devices) * 100 : 0) + '%';
      return el('tr', { 'data-app': String(a.id) },
        el('td', {}, a.name, ' ', el('span', { class: 'dim' }, '#' + a.id)),
        el('td', { class: 'commit', title: a.commit }, short(a.commit), ' ', el('span', { class: 'since' }, a.since ? ago(a.since, st.time) : '')),
        el('td', { class: 'num' }, `${a.onTarget.toLocaleString()} / ${a.devices.toLocaleString()}`),
        el('td', { class: 'barcol' }, bar));
    }));

    if (st.errSeq !== shownErrSeq) {
      shownErrSeq = st.errSeq;
      const ul = $('errors');
      $('error-count').textContent = fv.errors.length ? `${fv.errors.length} newest` : '';
      if (!fv.errors.length) {
        ul.replaceChildren(el('li', { class: 'none' }, 'no errors'));
      } else {
        ul.replaceChildren(...fv.errors.map((e) => el('li', { 'data-op': e.op },
          el('span', { class: 'meta' }, clock(e.time), ' '),
          el('span', { class: 'op' }, e.op), ' ',
          el('span', { class: 'meta' }, e.device >= 0 ? `#${e.device} ${e.serial}` : ''),
          el('span', { class: 'msg' }, e.message))));
      }
    }
    $('footer-stats').textContent = `frame ${fv.seq} · ${(fv.lastFrameBytes / 1024).toFixed(1)} KiB · render ${fv.lastRenderMs.toFixed(1)} ms (max ${fv.maxRenderMs.toFixed(1)} ms)` +
      (fv.reconnects ? ` · ${fv.reconnects} resyncs` : '');
  }

  // ---- the tooltip ----
  const tip = $('tip');
  let tipIndex = -1, tipTimer = 0;
  canvas.addEventListener('mousemove', (ev) => {
    const r = canvas.getBoundingClientRect();
    const col = Math.floor((ev.clientX - r.left) / pitch), row = Math.floor((ev.clientY - r.top) / pitch);
    const i = row * cols + col;
    if (col < 0 || col >= cols || i < 0 || i >= fv.n) { hideTip(); return; }
    const wr = wrap.getBoundingClientRect();
    tip.style.left = Math.min(ev.clientX - wr.left + 14, wr.width - 300) + 'px';
    tip.style.top = ev.clientY - wr.top + 14 + 'px';
    tip.hidden = false;
    if (i === tipIndex) return;
    tipIndex = i;
    showTip(i, null);
    clearTimeout(tipTimer);
    tipTimer = setTimeout(() => fetch('api/devices/' + i).then((r) => r.json()).then((d) => { if (tipIndex === i) showTip(i, d); }).catch(() => {}), 80);
  });
  canvas.addEventListener('mouseleave', hideTip);
  function hideTip() { tip.hidden = true; tipIndex = -1; }
  function showTip(i, d) {
    const state = NAME[String.fromCharCode(fv.states[i])];
    const commit = fv.commits[fv.cix[i]] || '';
    const rows = [['state', state], ['commit', commit || 'none']];
    if (d) {
      rows.unshift(['serial', d.serial + ' (' + d.name + ')']);
      if (d.uuid) rows.push(['uuid', d.uuid]);
      if (d.app || d.appId) rows.push(['app', (d.app || '') + ' #' + d.appId]);
      if (d.release && d.release !== commit) rows.push(['release', d.release]);
      if (d.working && d.working !== commit) rows.push(['updating to', d.working]);
      if (d.failure) rows.push(['failure', d.failure]);
    }
    tip.replaceChildren(el('b', {}, 'device #' + i), el('table', {}, ...rows.map(([k, v]) =>
      el('tr', {}, el('td', {}, k), el('td', { class: k === 'commit' || k === 'uuid' || k === 'release' || k === 'updating to' ? 'mono' : '' }, v)))));
    canvas.title = `#${i} ${state} ${commit}`;
  }

  connect();
})();
