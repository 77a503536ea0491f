// The run page: fills index.html from window.GRAPHFLOW_PAGE (page_data.js, written by the report.page node),
// window.GRAPHFLOW_GLB (asset.glb.js: the glb as base64) and window.GRAPHFLOW_RUN (report.js, written by
// `graphflow run --out` once the run is complete). A classic script: pages opened from file:// may not load modules.
(function () {
  'use strict';
  const PAGE = window.GRAPHFLOW_PAGE || { title: 'graphflow run', instances: [] };
  const RUN = window.GRAPHFLOW_RUN || null;
  const state = { ready: false, modelLoaded: false, framed: null, graphNodes: [] };
  window.graphflowPage = state;  // for tests and the curious: what the page did

  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  };
  const SVG = 'http://www.w3.org/2000/svg';
  const svg = (tag, attrs, text) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  };
  const fmtS = (s) => (s >= 100 ? s.toFixed(0) : s >= 10 ? s.toFixed(1) : s >= 0.1 ? s.toFixed(2) : s.toFixed(3)) + ' s';
  const fmtM = (m) => (m >= 1 ? (+m.toFixed(2)) + ' m' : m >= 0.01 ? (+(m * 100).toFixed(1)) + ' cm' : (+(m * 1000).toFixed(1)) + ' mm');

  // ------------------------------------------------------------------ viewer
  const viewer = document.getElementById('viewer');
  const status = document.getElementById('viewer-status');

  function glbUrl() {
    const b64 = window.GRAPHFLOW_GLB;
    if (!b64) return null;
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return URL.createObjectURL(new Blob([bytes], { type: 'model/gltf-binary' }));
  }

  function sceneBox() {
    const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (const inst of PAGE.instances) for (let a = 0; a < 3; a++) {
      lo[a] = Math.min(lo[a], inst.bbox[0][a]); hi[a] = Math.max(hi[a], inst.bbox[1][a]);
    }
    return [lo, hi];
  }

  // Orbit for one box: along its thin axis from the scene's side for flat things (a wall, a floor, a rug),
  // else from the front-right, above; the distance fits the box's bounding sphere in the field of view.
  function orbitFor(box) {
    const [lo, hi] = box, c = [0, 1, 2].map((a) => (lo[a] + hi[a]) / 2), ext = [0, 1, 2].map((a) => hi[a] - lo[a]);
    const [slo, shi] = sceneBox(), sc = [0, 1, 2].map((a) => (slo[a] + shi[a]) / 2);
    const radius = Math.max(0.05, 0.5 * Math.hypot(ext[0], ext[1], ext[2]));
    const dist = radius / Math.sin((32 / 2) * Math.PI / 180) * 1.05;
    let theta = 35, phi = 62;
    const thin = ext.indexOf(Math.min(...ext));
    if (ext[thin] < 0.15 * Math.max(...ext)) {
      if (thin === 1) { phi = 25; theta = 20; }
      else if (thin === 2) { theta = sc[2] >= c[2] ? 0 : 180; phi = 75; }
      else { theta = sc[0] >= c[0] ? 90 : -90; phi = 75; }
    }
    return { target: c, orbit: `${theta}deg ${phi}deg ${dist.toFixed(3)}m` };
  }

  function frame(inst) {
    const { target, orbit } = orbitFor(inst.bbox);
    viewer.cameraTarget = target.map((v) => v.toFixed(4) + 'm').join(' ');
    viewer.cameraOrbit = orbit;
    state.framed = { name: inst.name, target };
    for (const b of document.querySelectorAll('#instance-list button')) {
      b.setAttribute('aria-pressed', String(b.dataset.instance === inst.name));
    }
  }

  function frameAll() {
    viewer.cameraTarget = 'auto auto auto';
    viewer.cameraOrbit = '35deg 62deg auto';
    state.framed = null;
    for (const b of document.querySelectorAll('#instance-list button')) b.setAttribute('aria-pressed', 'false');
  }

  function instanceList() {
    const list = document.getElementById('instance-list');
    const all = el('button', { type: 'button', 'data-instance': '' }, el('span', { text: 'whole asset' }));
    all.addEventListener('click', frameAll);
    list.append(el('li', {}, all));
    for (const inst of PAGE.instances) {
      const b = el('button', { type: 'button', 'data-instance': inst.name, 'aria-pressed': 'false' },
        el('span', { text: inst.name }), el('small', { text: inst.material }));
      b.addEventListener('click', () => frame(inst));
      list.append(el('li', {}, b));
    }
  }

  // Generated equirectangular environments (canvas -> data URL: no file, no fetch of a file).
  function skyUrl(kind) {
    const c = document.createElement('canvas'); c.width = 512; c.height = 256;
    const g = c.getContext('2d');
    const grad = g.createLinearGradient(0, 0, 0, 256);
    if (kind === 'sunset') {
      grad.addColorStop(0, '#5d7fb8'); grad.addColorStop(0.4, '#f0c08a'); grad.addColorStop(0.5, '#fbe3bf');
      grad.addColorStop(0.52, '#9a8672'); grad.addColorStop(1, '#4d4338');
    } else {
      grad.addColorStop(0, '#dfe6ee'); grad.addColorStop(0.5, '#c4ccd6'); grad.addColorStop(0.52, '#8a8f96'); grad.addColorStop(1, '#55595e');
    }
    g.fillStyle = grad; g.fillRect(0, 0, 512, 256);
    if (kind === 'sunset') {
      const sun = g.createRadialGradient(150, 112, 0, 150, 112, 26);
      sun.addColorStop(0, '#ffffff'); sun.addColorStop(0.4, '#fff3d6'); sun.addColorStop(1, 'rgba(255,220,170,0)');
      g.fillStyle = sun; g.fillRect(100, 60, 100, 100);
    }
    return c.toDataURL('image/png');
  }

  function lighting() {
    const env = document.getElementById('environment'), exposure = document.getElementById('exposure');
    const sky = document.getElementById('skybox');
    const apply = () => {
      const v = env.value;
      const url = v === 'neutral' || v === 'legacy' ? v : skyUrl(v);
      viewer.environmentImage = url;
      viewer.skyboxImage = sky.checked && url.startsWith('data:') ? url : null;
      state.environment = v;
    };
    env.addEventListener('change', apply);
    sky.addEventListener('change', apply);
    exposure.addEventListener('input', () => { viewer.exposure = parseFloat(exposure.value); });
  }

  function startViewer() {
    const url = glbUrl();
    if (!url) { status.textContent = 'index_files/asset.glb.js is missing: no model to show'; return; }
    viewer.addEventListener('load', () => {
      state.modelLoaded = true;
      const kb = Math.round((PAGE.glb_bytes || 0) / 1024);
      status.textContent = `asset.glb, ${kb} KiB` + (PAGE.asset_summary && PAGE.asset_summary.triangles
        ? `, ${PAGE.asset_summary.triangles} triangles` : '');
    });
    viewer.addEventListener('error', (e) => {
      status.textContent = 'the viewer could not load the asset';
      console.error('model-viewer:', e.detail && e.detail.type, String(e.detail && e.detail.sourceError));
    });
    viewer.src = url;
  }

  // ------------------------------------------------------------------ per instance
  function niceLength(pxPerM) {
    const steps = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100];
    let best = steps[0];
    for (const s of steps) if (s * pxPerM <= 110) best = s;
    return best;
  }

  function scaleBar(pxPerM) {
    if (!pxPerM) return el('div', { class: 'scalebar', text: 'no real-world scale' });
    const m = niceLength(pxPerM);
    return el('div', { class: 'scalebar' }, el('span', { class: 'bar', style: `width:${(m * pxPerM).toFixed(1)}px` }),
      el('span', { text: fmtM(m) }));
  }

  function panel(caption, href, body, pxPerM) {
    return el('div', { class: 'panel' }, body, el('a', { class: 'caption', href, text: caption, target: '_blank' }),
      scaleBar(pxPerM));
  }

  function swatchPanels(inst) {
    if (!inst.swatches.length) {
      return [el('div', { class: 'panel' }, el('div', { class: 'empty', text: 'no swatch image bound (material class only)' }),
        el('span', { class: 'caption', text: 'swatch' }))];
    }
    return inst.swatches.map((s, i) => {
      const w = s.width_m * inst.px_per_metre, h = w * s.px[1] / s.px[0];
      const img = el('img', { src: s.src, alt: `${inst.name} swatch ${i + 1}`, width: w.toFixed(1), height: h.toFixed(1) });
      if (w / s.px[0] > 1.5) img.classList.add('pixelated');
      const win = el('div', { class: 'window' }, img);
      const label = `swatch${inst.swatches.length > 1 ? ' ' + (i + 1) : ''} (${fmtM(s.width_m)} wide, as given)`;
      return panel(label, s.src, win, inst.px_per_metre);
    });
  }

  function mapPanel(inst, slot, label, channel, whole) {
    const src = inst.maps[slot];
    const [aw, ah] = inst.atlas_px;
    let zoom, pxPerM = null;
    if (!whole && inst.texels_per_metre && inst.px_per_metre) {
      zoom = inst.px_per_metre / inst.texels_per_metre; pxPerM = inst.px_per_metre;
    } else {
      zoom = Math.min(200 / aw, 200 / ah); pxPerM = inst.texels_per_metre ? inst.texels_per_metre * zoom : null;
    }
    const img = el('img', { src, alt: `${inst.name} ${label}`, width: (aw * zoom).toFixed(1), height: (ah * zoom).toFixed(1) });
    if (channel) img.classList.add(channel);
    if (zoom > 1.5) img.classList.add('pixelated');
    const win = el('div', { class: 'window' }, img);
    if (!whole) requestAnimationFrame(() => { win.scrollLeft = inst.focus[0] * zoom; win.scrollTop = inst.focus[1] * zoom; });
    return panel(label, src, win, pxPerM);
  }

  function runNotes(inst) {
    if (!RUN) return [];
    const notes = RUN.nodes.filter((e) => e.item === inst.name && e.note).map((e) => `${e.node}: ${e.note}`);
    const warned = (RUN.warnings || []).filter((w) => w.includes(`[${inst.name}]`) || w.includes(`'${inst.name}'`));
    return [...new Set([...notes, ...warned])];
  }

  // Issue 25's tile seams (report.page's `tile_seams`): per direction a / b / c and the verdict against
  // a >= 0.85, 0.67 <= b <= 1.5, c >= 0.7 (computed by the node), or why it is not measurable.
  function tileSeams(inst) {
    const t = inst.tile_seams;
    if (!t) return null;
    const label = el('span', { class: 'k', text: 'tile seams (largest chart, swatch frame): ' });
    if (!t.measurable) return el('div', { class: 'tile-seams' }, label, el('span', { text: t.why }));
    const f = (v) => (v === null ? '–' : v.toFixed(2));
    const ratios = (r) => `a ${f(r.a)} / b ${f(r.b)} / c ${f(r.c)}`;
    const part = (d) => {
      const r = t[d], own = t.swatch && t.swatch[d];
      if (typeof r === 'string') return el('span', { text: `${r} (${d})` });
      // the swatch itself repeated in the same frame: an edge on its own border reads as a seam however it is laid
      const ownText = own && typeof own === 'object' ? ` [swatch itself: ${ratios(own)} ${own.pass ? 'pass' : 'fail'}]` : '';
      return el('span', { class: r.pass ? 'pass' : 'fail', text: `${ratios(r)} (${d}) ${r.pass ? 'pass' : 'FAIL'}${ownText}` });
    };
    return el('div', { class: 'tile-seams', title: `period ${t.period_texels.join('×')} texels; want a ≥ 0.85, b in [0.67, 1.5], c ≥ 0.7` },
      label, part('x'), el('span', { text: ', ' }), part('y'));
  }

  function instanceCard(inst, whole) {
    const scale = inst.texels_per_metre ? `atlas scale ${Math.round(inst.texels_per_metre)} texels/m` : 'no atlas scale';
    const meta = [inst.material, inst.mode && `mode ${inst.mode}`, inst.swatch_m && `swatch ${fmtM(inst.swatch_m)} wide`,
      `${inst.triangles} triangles`, `atlas ${inst.atlas_px[0]}×${inst.atlas_px[1]}`, scale].filter(Boolean).join(' · ');
    const panels = el('div', { class: 'panels' }, ...swatchPanels(inst),
      mapPanel(inst, 'albedo', 'albedo', null, whole), mapPanel(inst, 'normal', 'normal', null, whole),
      mapPanel(inst, 'orm', 'roughness (G)', 'ch-g', whole), mapPanel(inst, 'orm', 'occlusion (R)', 'ch-r', whole));
    const rows = inst.measures.map(([label, value, key]) => el('div', { title: key }, el('span', { class: 'k', text: label + ': ' }),
      el('span', { text: value })));
    const table = rows.length ? el('div', { class: 'measures' }, ...rows) : el('p', { class: 'hint', text: 'no measures recorded' });
    const notes = runNotes(inst).map((n) => el('p', { class: 'note', text: n }));
    return el('article', { class: 'instance', id: `instance-${inst.ident}` },
      el('h3', { text: inst.name }), el('div', { class: 'meta', text: meta + (inst.prompt ? ` · “${inst.prompt}”` : '') }),
      panels, table, ...[tileSeams(inst)].filter(Boolean), ...notes);
  }

  function instances() {
    const box = document.getElementById('instances'), whole = document.getElementById('whole-atlas');
    const draw = () => { box.replaceChildren(...PAGE.instances.map((i) => instanceCard(i, whole.checked))); };
    whole.addEventListener('change', draw);
    draw();
  }

  // ------------------------------------------------------------------ graph
  function layers(graph) {
    const depth = {}, ids = Object.keys(graph.nodes);
    const visit = (id, seen) => {
      if (depth[id] != null) return depth[id];
      if (seen.has(id)) return 0;  // a cycle cannot reach a run; guard anyway
      seen.add(id);
      const ups = graph.nodes[id].inputs.map((e) => e.from).filter((f) => graph.nodes[f]);
      depth[id] = ups.length ? 1 + Math.max(...ups.map((u) => visit(u, seen))) : 0;
      return depth[id];
    };
    ids.forEach((id) => visit(id, new Set()));
    const cols = [];
    ids.forEach((id) => { (cols[depth[id]] = cols[depth[id]] || []).push(id); });
    return cols;
  }

  function nodeStats(id) {
    const entries = RUN.nodes.filter((e) => e.node === id);
    const count = (s) => entries.filter((e) => e.status === s).length;
    const seconds = entries.reduce((a, e) => a + (e.seconds || 0), 0);
    const ran = entries.filter((e) => e.status === 'ran');
    const cores = ran.length ? Math.max(...ran.map((e) => e.cpu_threads || 0)) : 0;
    const re = new RegExp(`(^|[^\\w])${id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\[|:)`);
    const warnings = (RUN.warnings || []).filter((w) => re.test(w));
    const status = count('failed') ? 'failed' : count('ran') ? 'ran' : count('cached') ? 'cached' : 'skipped';
    return { entries, ran: count('ran'), cached: count('cached'), failed: count('failed'), seconds, cores, warnings, status };
  }

  const BOX_W = 138, GAP_X = 30, GAP_Y = 12, PAD = 6;

  function nodeBox(id, type, st, x, y) {
    const items = st.entries.filter((e) => e.item != null);
    const h = 62 + (items.length ? 14 * Math.ceil(items.length / 9) : 0) + (st.warnings.length ? 14 : 0);
    const g = svg('g', { class: `node ${st.status}`, 'data-node': id, transform: `translate(${x},${y})` });
    g.append(svg('title', {}, `${id} (${type})`));
    g.append(svg('rect', { class: 'box', width: BOX_W, height: h, rx: 6 }));
    g.append(svg('text', { x: 8, y: 16, 'font-weight': 600 }, id));
    g.append(svg('text', { class: 'type', x: 8, y: 30 }, type));
    const what = [st.ran && `${st.ran} ran`, st.cached && `${st.cached} cached`, st.failed && `${st.failed} failed`].filter(Boolean).join(' · ');
    g.append(svg('text', { class: 'stat', x: 8, y: 44 }, what || 'not run'));
    g.append(svg('text', { class: 'stat', x: 8, y: 57 }, `${fmtS(st.seconds)}${st.cores ? ` · ${st.cores.toFixed(1)} cores` : ''}`));
    items.forEach((e, i) => {
      const r = svg('rect', { class: `s-${e.status}`, x: 8 + 13 * (i % 9), y: 64 + 14 * Math.floor(i / 9), width: 11, height: 11, rx: 2 });
      r.append(svg('title', {}, `${e.item}: ${e.status}, ${fmtS(e.seconds || 0)}` +
        (e.status === 'ran' ? `, ${(e.cpu_threads || 0).toFixed(2)} cores` : '') + (e.note ? ` — ${e.note}` : '')));
      g.append(r);
    });
    if (st.warnings.length) {
      const w = svg('text', { class: 'warn', x: 8, y: h - 6 }, `⚠ ${st.warnings.length} warning${st.warnings.length > 1 ? 's' : ''}`);
      w.append(svg('title', {}, st.warnings.join('\n')));
      g.append(w);
    }
    return { g, h };
  }

  function drawGraph() {
    const box = document.getElementById('graph');
    if (!RUN || !RUN.graph) {
      box.append(el('p', { class: 'hint', text: 'report.js is missing: it is written by `graphflow run --out DIR` beside report.json.' }));
      return;
    }
    const graph = RUN.graph, cols = layers(graph), pos = {};
    const root = svg('svg', {});
    const edges = svg('g', {}), nodesG = svg('g', {});
    root.append(edges, nodesG);
    let height = 0;
    cols.forEach((col, ci) => {
      let y = PAD;
      for (const id of col) {
        const st = nodeStats(id), x = PAD + ci * (BOX_W + GAP_X);
        const { g, h } = nodeBox(id, graph.nodes[id].type, st, x, y);
        nodesG.append(g); pos[id] = { x, y, h };
        state.graphNodes.push(id);
        y += h + GAP_Y;
      }
      height = Math.max(height, y);
    });
    for (const [id, spec] of Object.entries(graph.nodes)) {
      const sources = [...new Set(spec.inputs.map((e) => e.from).filter((f) => pos[f]))];
      sources.forEach((from, k) => {
        const e = spec.inputs.find((i) => i.from === from);
        const a = pos[from], b = pos[id];
        // each source enters at its own height on the target's left side; edges that skip columns are drawn light
        const x1 = a.x + BOX_W, y1 = a.y + 20, x2 = b.x, y2 = b.y + 10 + (40 * (k + 1)) / (sources.length + 1);
        const mx = x2 - Math.min(GAP_X * 0.8, (x2 - x1) / 2);
        const skip = b.x - a.x > BOX_W + GAP_X + 1;
        const p = svg('path', { class: skip ? 'edge skip' : 'edge', d: `M${x1},${y1} C${x1 + GAP_X * 0.6},${y1} ${mx},${y2} ${x2},${y2}` });
        p.append(svg('title', {}, `${from} → ${id}.${e.port}`));
        edges.append(p);
      });
    }
    const width = PAD * 2 + cols.length * (BOX_W + GAP_X) - GAP_X;
    root.setAttribute('width', width); root.setAttribute('height', height + PAD);
    root.setAttribute('viewBox', `0 0 ${width} ${height + PAD}`);
    const legend = el('div', { class: 'legend' }, ...['ran', 'cached', 'failed', 'skipped'].map((s) =>
      el('span', {}, el('i', { style: `background:var(--${s})` }), s)));
    box.append(legend, root);
  }

  function nodeTable() {
    const t = document.getElementById('node-table');
    if (!RUN) return;
    t.append(el('tr', {}, ...['node', 'item', 'status', 'seconds', 'cores', 'peak RSS', 'note / warnings'].map((h) => el('th', { text: h }))));
    for (const e of RUN.nodes) {
      const warn = (RUN.warnings || []).filter((w) => w.includes(e.item ? `${e.node}[${e.item}]` : `${e.node}:`));
      const text = [e.note, ...warn].filter(Boolean).join(' · ');
      t.append(el('tr', { 'data-status': e.status }, el('td', { text: e.node }), el('td', { text: e.item || '' }),
        el('td', { text: e.status }), el('td', { class: 'num', text: fmtS(e.seconds || 0) }),
        el('td', { class: 'num', text: e.status === 'ran' ? (e.cpu_threads || 0).toFixed(2) : '' }),
        el('td', { class: 'num', text: e.peak_rss_mb ? `${Math.round(e.peak_rss_mb)} MB` : '' }),
        el('td', { class: text ? 'warn' : '', text })));
    }
  }

  // ------------------------------------------------------------------ header
  function header() {
    const links = document.getElementById('links'), line = document.getElementById('runline');
    if (RUN && RUN.graph && RUN.graph.name) {
      const h1 = document.querySelector('header h1');
      h1.append(el('span', { class: 'graph-name', text: ` · ${RUN.graph.name}` }));
    }
    if (!RUN) { line.textContent = 'report.js is missing: run data (statuses, seconds, links) is written by `graphflow run --out DIR`.'; return; }
    const files = [];
    for (const o of Object.values(RUN.outputs || {})) {
      for (const f of o.files) if (!f.includes('/') && f !== 'index.html') files.push(f);
    }
    const folders = new Set();
    for (const o of Object.values(RUN.outputs || {})) for (const f of o.files) {
      const top = f.split('/')[0];
      if (f.includes('/') && top !== 'index_files') folders.add(top + '/');
    }
    for (const f of [...files, ...folders, 'report.json']) links.append(el('a', { href: f, text: f }));
    const n = RUN.nodes, count = (s) => n.filter((e) => e.status === s).length;
    line.textContent = `${new Set(n.map((e) => e.node)).size} nodes, ${n.length} runs: ${count('ran')} ran, ${count('cached')} cached` +
      (count('failed') ? `, ${count('failed')} failed` : '') + ` · ${fmtS(RUN.total_seconds || 0)} · executor ${RUN.executor}` +
      ` · ${(RUN.warnings || []).length} warnings`;
  }

  header();
  instanceList();
  lighting();
  instances();
  drawGraph();
  nodeTable();
  startViewer();
  state.ready = true;
})();
