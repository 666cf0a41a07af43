// transformer_np's attention explorer: reads the page's embedded data, draws the head view and the model view.
// Hand-written, no library, no network.  Weights: per attention, base64 of float32 (L, H, Tq, Tk), little-endian.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const state = { att: 0, layer: 0, head: 0, focus: null };

  function decode(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }
  const atts = data.attentions.map((a) => Object.assign({}, a, { w: decode(a.weights) }));

  // weights[l][h][q][k] of the current attention
  function weight(a, l, h, q, k) {
    const nq = a.queries.length, nk = a.keys.length;
    return a.w[((l * a.heads + h) * nq + q) * nk + k];
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function select(id, label, options, value, onchange) {
    const wrap = el("label", {}, label + " ");
    const s = el("select", { id: id });
    options.forEach((o, i) => s.appendChild(el("option", { value: String(i) }, o)));
    s.value = String(value);
    s.addEventListener("change", () => onchange(parseInt(s.value, 10)));
    wrap.appendChild(s);
    return wrap;
  }

  function controls() {
    const c = document.getElementById("controls");
    c.textContent = "";
    const a = atts[state.att];
    c.appendChild(select("attention", "attention", atts.map((x) => x.name), state.att, (v) => {
      state.att = v; state.layer = Math.min(state.layer, atts[v].layers - 1);
      state.head = Math.min(state.head, atts[v].heads - 1); state.focus = null; draw();
    }));
    c.appendChild(select("layer", "layer", a.layer_names, state.layer, (v) => { state.layer = v; draw(); }));
    c.appendChild(select("head", "head", Array.from({ length: a.heads }, (_, i) => String(i)), state.head,
      (v) => { state.head = v; draw(); }));
  }

  // a label as drawn: at most 16 characters (the whole token is in the tooltip)
  function short(text) {
    return text.length <= 16 ? text : text.slice(0, 15) + "…";
  }

  function esc(text) {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  // head view: queries left, keys right, one line per (query, key) with the weight as opacity.  The SVG is
  // written as markup (the HTML parser gives it its namespace), so the page names no URL at all.
  function headView() {
    const a = atts[state.att];
    const box = document.getElementById("head-view");
    const rowH = 18, width = 420, nq = a.queries.length, nk = a.keys.length;
    const height = Math.max(nq, nk) * rowH + 10, xq = 130, xk = width - 130;
    const parts = [`<h2>head view: layer ${esc(a.layer_names[state.layer])}, head ${state.head}</h2>`,
      `<svg id="head-svg" width="${width}" height="${height}">`];
    for (let q = 0; q < nq; q++) {
      for (let k = 0; k < nk; k++) {
        const w = weight(a, state.layer, state.head, q, k);
        if (w <= 0) continue;
        const shown = state.focus === null || state.focus === q ? w : 0;
        parts.push(`<line x1="${xq}" y1="${q * rowH + 14}" x2="${xk}" y2="${k * rowH + 14}" stroke="#1f77b4" ` +
          `stroke-width="2" stroke-opacity="${shown}" data-q="${q}" data-k="${k}" data-w="${w}"></line>`);
      }
    }
    a.queries.forEach((t, q) => parts.push(`<text x="${xq - 6}" y="${q * rowH + 18}" text-anchor="end" ` +
      `class="token query" data-i="${q}"><title>${esc(t)}</title>${esc(short(t))}</text>`));
    a.keys.forEach((t, k) => parts.push(`<text x="${xk + 6}" y="${k * rowH + 18}" text-anchor="start" ` +
      `class="token key" data-i="${k}"><title>${esc(t)}</title>${esc(short(t))}</text>`));
    parts.push("</svg>");
    box.innerHTML = parts.join("");
    box.querySelectorAll("text.query").forEach((t) => {
      const q = parseInt(t.getAttribute("data-i"), 10);
      t.addEventListener("mouseenter", () => { state.focus = q; focusLines(); });
      t.addEventListener("mouseleave", () => { state.focus = null; focusLines(); });
    });
  }

  function focusLines() {
    document.querySelectorAll("#head-svg line").forEach((line) => {
      const q = parseInt(line.getAttribute("data-q"), 10);
      const w = line.getAttribute("data-w");
      line.setAttribute("stroke-opacity", state.focus === null || state.focus === q ? w : "0");
    });
  }

  // model view: every layer x head as a small image of its weight matrix; a click opens it in the head view
  function modelView() {
    const a = atts[state.att];
    const box = document.getElementById("model-view");
    box.textContent = "";
    box.appendChild(el("h2", {}, "model view: layers (rows) x heads (columns) — click one"));
    const grid = el("div", { class: "grid", style: `grid-template-columns: repeat(${a.heads}, auto)` });
    const nq = a.queries.length, nk = a.keys.length, size = 64;
    for (let l = 0; l < a.layers; l++) {
      for (let h = 0; h < a.heads; h++) {
        const cv = el("canvas", { width: String(size), height: String(size), class: "thumb",
          "data-layer": String(l), "data-head": String(h), title: `layer ${a.layer_names[l]}, head ${h}` });
        if (l === state.layer && h === state.head) cv.classList.add("selected");
        const ctx = cv.getContext("2d");
        const img = ctx.createImageData(size, size);
        for (let y = 0; y < size; y++) {
          const q = Math.floor((y * nq) / size);
          for (let x = 0; x < size; x++) {
            const k = Math.floor((x * nk) / size);
            const v = Math.round(255 * (1 - Math.min(1, weight(a, l, h, q, k))));
            const i = 4 * (y * size + x);
            img.data[i] = v; img.data[i + 1] = v; img.data[i + 2] = 255; img.data[i + 3] = 255;
          }
        }
        ctx.putImageData(img, 0, 0);
        cv.addEventListener("click", () => { state.layer = l; state.head = h; draw(); });
        grid.appendChild(cv);
      }
    }
    box.appendChild(grid);
  }

  // generation view: step through greedy generation; for the chosen layer and head, the attention of the position
  // that predicted the step's token over every position so far, the top-k next-token probabilities, the cache
  const gen = data.generation ? data.generation.steps.map((st) => Object.assign({}, st,
    { w: decode(st.weights), c: st.cross ? decode(st.cross) : null })) : null;
  state.step = 0;

  // one row of tokens, each shaded by its weight in (layer, head) of w (L, H, n)
  function weightRow(id, cls, w, heads, layer, head, tokens) {
    const n = tokens.length, parts = [`<div id="${id}">`];
    for (let s = 0; s < n; s++) {
      const v = w[(layer * heads + head) * n + s];
      parts.push(`<span class="${cls}" data-s="${s}" data-w="${v}" title="${v.toFixed(4)}" ` +
        `style="background: rgba(31,119,180,${v})">${esc(tokens[s] === undefined ? "" : tokens[s])}</span>`);
    }
    return parts.concat("</div>").join("");
  }

  // the generation view's position labels, in the blocks its weights were summed in (1: one per token)
  function positionLabels(tokens) {
    const b = data.generation.block || 1;
    if (b === 1) return tokens;
    const out = [];
    for (let i = 0; i < tokens.length; i += b) out.push(`${tokens[i]}…[${i}:${Math.min(i + b, tokens.length)}]`);
    return out;
  }

  function generationView() {
    const box = document.getElementById("generation-view");
    if (!gen) { box.textContent = ""; return; }
    const st = gen[state.step], S = st.positions, source = data.generation.source;
    const layer = Math.min(state.layer, st.layers - 1), head = Math.min(state.head, st.heads - 1);
    const labels = data.generation.prompt.concat(gen.slice(0, state.step).map((g) => g.token));
    const parts = [`<h2>generation view: step ${state.step + 1} of ${gen.length}, layer ${layer}, head ${head}</h2>`,
      `<input type="range" id="step" min="0" max="${gen.length - 1}" value="${state.step}">`,
      `<p id="generated">${esc(labels.join(""))}<mark id="new-token">${esc(st.token)}</mark></p>`,
      `<p id="kv">KV cache after this step: ${S} position${S === 1 ? "" : "s"}` +
        (source ? ` of self-attention and the source's ${source.length} cross-attention keys and values` : "") +
        `, ${(st.kv_bytes / 1024).toFixed(1)} KiB</p>`,
      `<p class="gen-label">${source ? "masked self-attention over the output so far" : "attention over every position so far"}` +
        " (the position that predicted the new token)" +
        ((data.generation.block || 1) > 1 ? `; positions summed in blocks of ${data.generation.block}` : "") + ":</p>",
      weightRow("gen-attention", "gen-token", st.w, st.heads, layer, head, positionLabels(labels.slice(0, S)))];
    if (source) {
      parts.push("<p class=\"gen-label\">cross-attention over the source:</p>",
        weightRow("gen-cross", "gen-source", st.c, st.heads, layer, head, positionLabels(source)));
    }
    const variant = data.generation.compare;
    parts.push("<table id=\"top-k\"><tr><th>float32: next token</th><th>probability</th>" +
      (variant ? `<th>${esc(variant)}: next token</th><th>probability</th>` : "") + "</tr>");
    st.top.forEach(([tok, prob], i) => {
      let row = `<tr><td>${esc(JSON.stringify(tok))}</td><td>${prob.toFixed(4)}</td>`;
      if (variant) {
        const [vt, vp] = st.compare.top[i];
        row += `<td>${esc(JSON.stringify(vt))}</td><td>${vp.toFixed(4)}</td>`;
      }
      parts.push(row + "</tr>");
    });
    parts.push("</table>");
    if (variant) {
      const worst = Math.max(...gen.map((g) => g.compare.kl), 1e-12);
      parts.push(`<p id="kl">KL(float32 ‖ ${esc(variant)}) at this step: <b>${st.compare.kl.toExponential(3)}</b> nats` +
        (st.compare.same_choice ? "" : " — the variant would choose another token") + "</p>",
        "<div id=\"kl-steps\">KL per step: ");
      gen.forEach((g, i) => parts.push(`<span class="kl-bar${i === state.step ? " current" : ""}" data-kl="${g.compare.kl}" ` +
        `title="step ${i + 1}: ${g.compare.kl.toExponential(3)}" style="height:${4 + 40 * g.compare.kl / worst}px"></span>`));
      parts.push("</div>");
    }
    box.innerHTML = parts.join("");
    document.getElementById("step").addEventListener("input", (e) => {
      state.step = parseInt(e.target.value, 10);
      generationView();
    });
  }

  function draw() {
    controls();
    headView();
    modelView();
    generationView();
  }

  document.getElementById("title").textContent = data.title;
  document.getElementById("note").textContent = data.block > 1
    ? `Long input: tokens grouped in blocks of ${data.block} (a block's row is the mean of its queries' rows, ` +
      "its column the sum of its keys' weights)."
    : "Line opacity = attention weight; hover a query token (left) to keep only its lines.";
  window.explorer = { state: state, weight: (l, h, q, k) => weight(atts[state.att], l, h, q, k), draw: draw };
  draw();
})();
