// latch status page: polls the admin API's status JSON and draws it.
// Plain JavaScript, no dependencies: it runs on an air-gapped network.
'use strict';
(function () {
  const POLL_MS = 1500;
  const TOKEN_KEY = 'latch-admin-token';
  const COLORS = ['#2f6fdf', '#d9822b', '#2a9d5c', '#b8399b', '#7a5bd6', '#c23b3b', '#178a94', '#8a7a12'];
  const $ = (sel) => document.querySelector(sel);
  const meta = (name) => document.querySelector('meta[name="' + name + '"]').content;
  const statusPath = meta('latch-status-path');
  const tokenRequired = meta('latch-token-required') === 'true';
  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let polling = false;

  // ---- helpers ----
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }
  function age(s) {
    if (s == null || s < 0) return 'never';
    s = Math.round(s);
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  }
  function num(v, digits) {
    if (v == null) return '–';
    return v.toFixed(digits == null ? (v < 10 ? 2 : v < 100 ? 1 : 0) : digits);
  }
  function badge(text, kind) { return el('span', { class: 'badge ' + (kind || text), text: text }); }
  function bar(fraction, label) {
    const outer = el('span', { class: 'bar', title: label });
    const inner = el('span', { class: 'fill' });
    inner.style.width = Math.max(0, Math.min(1, fraction)) * 100 + '%';
    outer.append(inner);
    return el('span', { class: 'bar-cell' }, outer, el('span', { class: 'bar-label', text: label }));
  }
  function setCell(row, name, content) {
    const td = row.querySelector('td[data-col="' + name + '"]');
    if (typeof content === 'string') {
      if (td.textContent !== content) td.textContent = content;
    } else {
      td.replaceChildren(content);
    }
  }

  // ---- messages ----
  function showBanner(text) {
    const b = $('#banner');
    b.textContent = text;
    b.hidden = !text;
  }
  function showResult(text, ok) {
    const r = $('#result');
    r.textContent = text;
    r.dataset.kind = ok ? 'ok' : 'error';
    r.hidden = false;
  }

  // ---- API ----
  async function api(method, path) {
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    let resp;
    try {
      resp = await fetch(path, { method, headers, cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      return { ok: false, status: 0, error: 'latch admin API unreachable' };
    }
    const text = await resp.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    let error = '';
    if (resp.status === 401) error = 'admin token rejected (401)';
    else if (!resp.ok) error = (body && body.error) || text.trim() || ('HTTP ' + resp.status);
    return { ok: resp.ok, status: resp.status, body, error };
  }

  // ---- token ----
  function askToken(message) {
    $('#token-form').hidden = false;
    if (message) showBanner(message);
    $('#token-input').focus();
  }
  $('#token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = $('#token-input').value.trim();
    $('#token-input').value = '';
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    $('#token-form').hidden = true;
    showBanner('');
    poll();
  });
  $('#token-forget').addEventListener('click', () => {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    askToken('Token forgotten.');
  });
  $('#token-change').addEventListener('click', () => askToken(''));

  // ---- confirmation ----
  function confirmAction(text) {
    const d = $('#confirm');
    $('#confirm-text').textContent = text;
    return new Promise((resolve) => {
      const done = (v) => () => {
        $('#confirm-ok').onclick = $('#confirm-cancel').onclick = d.oncancel = null;
        d.close();
        resolve(v);
      };
      $('#confirm-ok').onclick = done(true);
      $('#confirm-cancel').onclick = done(false);
      d.oncancel = done(false);
      d.showModal();
    });
  }

  // ---- actions ----
  async function drain(id, undo) {
    const verb = undo ? 'Undrain' : 'Drain';
    const what = undo
      ? 'Undrain ' + id + '? It takes new sessions again (after slow start).'
      : 'Drain ' + id + '? It keeps its sessions and gets no new ones on this latch replica.';
    if (!(await confirmAction(what))) return;
    const r = await api('POST', '/admin/backends/' + encodeURIComponent(id) + (undo ? '/undrain' : '/drain'));
    showResult(r.ok ? id + (undo ? ' undrained.' : ' drained.') : verb + ' ' + id + ' failed: ' + r.error, r.ok);
    poll();
  }

  $('#session-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = $('#session-input').value.trim();
    const out = $('#session-result');
    if (!v) return;
    const r = await api('GET', '/admin/sessions/' + encodeURIComponent(v));
    if (!r.ok) {
      out.replaceChildren(el('p', { class: 'error', text: 'Lookup failed: ' + r.error }));
      return;
    }
    const list = el('ul');
    for (const [svc, b] of Object.entries(r.body.pins)) list.append(el('li', { text: svc + ' → ' + b }));
    const unpin = el('button', { type: 'button', class: 'danger', text: 'Unpin' });
    unpin.addEventListener('click', async () => {
      if (!(await confirmAction('Unpin session ' + r.body.session + '? Its next request picks a backend anew.'))) return;
      const u = await api('DELETE', '/admin/sessions/' + encodeURIComponent(v));
      showResult(u.ok ? 'Session ' + r.body.session + ' unpinned.' : 'Unpin failed: ' + u.error, u.ok);
      out.replaceChildren();
    });
    out.replaceChildren(el('p', { text: 'Session ' + r.body.session + ' is pinned:' }), list, unpin);
  });

  // ---- rendering ----
  const backendCols = [
    ['backend', 'Backend'], ['state', 'Health'], ['weight', 'Weight'], ['breaker', 'Breaker'],
    ['inflight', 'In flight'], ['ewma', 'EWMA'], ['rate', 'Req/s (1m)'], ['errors', 'Errors (1m)'],
    ['sessions', 'Sessions'], ['slow', 'Slow start'], ['action', ''],
  ];

  function serviceCard(svc) {
    let card = document.getElementById('svc-' + svc.name);
    if (card) return card;
    const head = el('tr');
    for (const [, label] of backendCols) head.append(el('th', { text: label }));
    card = el('article', { id: 'svc-' + svc.name, class: 'service', 'data-service': svc.name },
      el('h2', {}, el('span', { class: 'name', text: svc.name }), el('span', { class: 'svc-flags' })),
      el('p', { class: 'svc-meta muted' }),
      el('table', { class: 'cards backends' }, el('thead', {}, head), el('tbody')),
      el('div', { class: 'charts' }));
    $('#services').append(card);
    return card;
  }

  function backendRow(tbody, b) {
    let row = tbody.querySelector('tr[data-backend="' + CSS.escape(b.id) + '"]');
    if (row) return row;
    row = el('tr', { 'data-backend': b.id });
    for (const [name, label] of backendCols) row.append(el('td', { 'data-col': name, 'data-label': label }));
    const btn = el('button', { type: 'button' });
    btn.addEventListener('click', () => drain(b.id, btn.dataset.action === 'undrain'));
    row.querySelector('td[data-col="action"]').append(btn);
    tbody.append(row);
    return row;
  }

  function renderService(svc, now) {
    const card = serviceCard(svc);
    const flags = card.querySelector('.svc-flags');
    flags.replaceChildren(svc.stale ? badge('stale', 'critical') : badge('fresh', 'passing'));
    if (svc.panic) flags.append(badge('panic mode', 'warning'));
    card.querySelector('.svc-meta').textContent =
      (svc.stale ? 'Discovery stale (Consul unreachable): serving the snapshot of ' + age(svc.fresh_age_s) + ' ago. '
        : 'Discovery up to date. ') +
      'Last change ' + age(svc.updated_age_s) + ' ago · ' +
      (svc.sessions < 0 ? 'sessions unknown' : svc.sessions + ' live sessions');
    const tbody = card.querySelector('tbody');
    const seen = new Set();
    for (const b of svc.backends) {
      seen.add(b.id);
      const row = backendRow(tbody, b);
      row.dataset.state = b.state;
      row.className = 'state-' + b.state;
      setCell(row, 'backend', el('span', {}, el('strong', { text: b.id }), el('br'), el('span', { class: 'muted', text: b.address })));
      const st = el('span', {}, badge(b.state));
      if (b.drained && b.health !== 'draining') st.append(el('span', { class: 'muted', text: ' (admin; Consul: ' + b.health + ')' }));
      else if (!b.accepts_new && b.state === 'passing') st.append(el('span', { class: 'muted', text: ' no new sessions' }));
      setCell(row, 'state', st);
      setCell(row, 'weight', String(b.weight));
      const since = (now - Date.parse(b.breaker_since)) / 1000;
      setCell(row, 'breaker', el('span', {}, badge(b.breaker, b.breaker === 'closed' ? 'passing' : b.breaker === 'open' ? 'critical' : 'warning'),
        el('span', { class: 'muted', text: ' ' + age(since) })));
      setCell(row, 'inflight', String(b.in_flight));
      setCell(row, 'ewma', b.ewma_ms > 0 ? num(b.ewma_ms) + ' ms' : '–');
      setCell(row, 'rate', num(b.req_rate));
      const errPct = b.req_rate > 0 ? (100 * b.err_rate) / b.req_rate : 0;
      setCell(row, 'errors', b.err_rate > 0 ? num(b.err_rate) + '/s (' + num(errPct, 1) + '%)' : '0');
      setCell(row, 'sessions', b.sessions < 0 ? 'unknown' : bar(b.share, b.sessions + ' · ' + num(100 * b.share, 0) + '% of ' + num(100 * b.target, 0) + '%'));
      setCell(row, 'slow', b.slow_start >= 1 ? 'done' : bar(b.slow_start, num(100 * b.slow_start, 0) + '%'));
      const btn = row.querySelector('td[data-col="action"] button');
      const action = b.drained ? 'undrain' : 'drain';
      if (btn.dataset.action !== action) {
        btn.dataset.action = action;
        btn.textContent = b.drained ? 'Undrain' : 'Drain';
        btn.className = b.drained ? '' : 'danger';
      }
    }
    for (const row of tbody.querySelectorAll('tr[data-backend]')) if (!seen.has(row.dataset.backend)) row.remove();
    card.querySelector('.charts').replaceChildren(
      chart('Requests/s per backend, last ' + num(svc.window_s / 60, 0) + ' minutes', svc, 'requests'),
      chart('Re-pins/s per backend (sessions moved to it)', svc, 'repins'));
  }

  // niceCeil is the smallest of 1, 2, 2.5, 5 times a power of ten that is
  // at least v: the top of a chart's y axis, so its ticks are round.
  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v * (1 - 1e-9)) return m * p;
    return 10 * p;
  }

  // chart draws one line per backend as inline SVG, against a y axis in
  // units per second (0, half and the top, with grid lines) beside it.
  function chart(title, svc, field) {
    const NS = 'http://www.w3.org/2000/svg';
    const W = 320, H = 90, P = 4;
    const slots = Math.max(Math.round(svc.window_s / svc.step_s), 2); // the x axis spans the whole window
    let peak = 0, len = 0;
    for (const b of svc.backends) {
      for (const v of b[field] || []) peak = Math.max(peak, v);
      len = Math.max(len, (b[field] || []).length);
    }
    const top = niceCeil(peak);
    const ticks = [top, top / 2, 0];
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', title + ', y axis 0 to ' + num(top) + '/s');
    ticks.forEach((v) => {
      const y = H - P - (v / top) * (H - 2 * P);
      const line = document.createElementNS(NS, 'line');
      for (const [k, a] of [['x1', 0], ['y1', y], ['x2', W], ['y2', y]]) line.setAttribute(k, a);
      line.setAttribute('class', v === 0 ? 'axis' : 'grid');
      svg.append(line);
    });
    const legend = el('div', { class: 'legend' });
    svc.backends.forEach((b, i) => {
      const color = COLORS[i % COLORS.length];
      const vals = b[field] || [];
      if (vals.length > 1) {
        const pts = vals.map((v, j) => {
          const x = W - ((vals.length - 1 - j) / (slots - 1)) * W;
          const y = H - P - (v / top) * (H - 2 * P);
          return x.toFixed(1) + ',' + y.toFixed(1);
        });
        const line = document.createElementNS(NS, 'polyline');
        line.setAttribute('points', pts.join(' '));
        line.setAttribute('stroke', color);
        line.setAttribute('class', 'series');
        svg.append(line);
      }
      const sw = el('span', { class: 'swatch' });
      sw.style.background = color;
      legend.append(el('span', { class: 'key' }, sw, b.id));
    });
    const yaxis = el('div', { class: 'yaxis', 'aria-hidden': 'true' },
      ...ticks.map((v) => el('span', { class: 'tick', 'data-value': String(v), text: String(+v.toPrecision(3)) + '/s' })));
    const minutes = (len * svc.step_s) / 60;
    return el('figure', { class: 'chart' },
      el('figcaption', {}, el('span', { text: title }), el('span', { class: 'muted', text: ' · peak ' + num(peak) + '/s' +
        (len + 1 < slots ? ' · ' + num(minutes, 1) + ' of ' + num(svc.window_s / 60, 0) + ' min collected' : '') })),
      el('div', { class: 'plot' }, yaxis, svg), legend);
  }

  function renderRoutes(routes, conflicts) {
    const tbody = $('#routes tbody');
    const rows = (routes || []).map((r) => {
      const chain = el('span', { class: 'chain' });
      r.chain.forEach((s, i) => {
        if (i > 0) chain.append(el('span', { class: 'arrow', text: ' → ' }));
        chain.append(el('span', { class: 'step', text: s.policy }));
        if (i < r.chain.length - 1) chain.append(el('span', { class: 'muted', text: ' (' + s.handed_on + ')' }));
      });
      return el('tr', { 'data-route': r.name },
        el('td', { 'data-label': 'Route', text: r.name + (r.sticky ? '' : ' (not sticky)') }),
        el('td', { 'data-label': 'Match', text: (r.host || 'any host') + ' ' + r.path_prefix }),
        el('td', { 'data-label': 'Service', text: r.service }),
        el('td', { 'data-label': 'From', text: r.from_tags ? 'Consul tags' : 'config' }),
        el('td', { 'data-label': 'Chain' }, chain));
    });
    tbody.replaceChildren(...rows);
    $('#conflicts').replaceChildren(...(conflicts || []).map((c) => el('li', { text: 'Conflict: ' + c })));
  }

  function renderStore(s) {
    const facts = [
      ['Kind', s.kind],
      ['State', s.up && s.reachable ? badge('reachable', 'passing')
        : s.up ? badge('call failed', 'warning') : badge('breaker open: unreachable', 'critical')],
      ['Pending pins', String(s.pending_pins)],
      ['Cache hit ratio (1m)', s.cache_hit_ratio < 0 ? 'no lookups' : num(100 * s.cache_hit_ratio, 1) + '%'],
    ];
    $('#store').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, v)]));
  }

  function render(st) {
    const now = Date.parse(st.time);
    const names = new Set(st.services.map((s) => s.name));
    for (const card of document.querySelectorAll('#services article')) if (!names.has(card.dataset.service)) card.remove();
    for (const svc of st.services) renderService(svc, now);
    renderRoutes(st.routes, st.conflicts);
    $('#restart').replaceChildren(...(st.needs_restart || []).map((f) =>
      el('li', { text: 'Needs a restart: ' + f + ' (changed by a reload, not applied)' })));
    renderStore(st.store);
    $('#updated').textContent = 'updated ' + new Date(now).toLocaleTimeString();
    document.body.dataset.loaded = 'true';
  }

  async function poll() {
    if (polling) return;
    if (tokenRequired && !token) {
      askToken('This latch needs its admin token to show its status.');
      return;
    }
    polling = true;
    try {
      const r = await api('GET', statusPath);
      if (r.ok) {
        showBanner('');
        render(r.body);
      } else if (r.status === 401) {
        askToken('The admin token was rejected (401): what is shown is not current.');
      } else {
        showBanner('Status unavailable: ' + r.error + '. What is shown is not current.');
      }
    } finally {
      polling = false;
    }
  }

  poll();
  setInterval(poll, POLL_MS);
})();
