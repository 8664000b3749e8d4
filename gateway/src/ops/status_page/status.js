// Switchyard status page: draws GET /admin/status and redraws it every few seconds.
// Builds the DOM with textContent only (no HTML from data), so nothing in a provider's error
// message can become markup; loads nothing from anywhere but this origin.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(location.search);
  const refreshSecs = Math.min(60, Math.max(1, Number(params.get("refresh")) || 5));

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells) {
    const tr = document.createElement("tr");
    for (const c of cells) tr.appendChild(c instanceof Node ? wrapTd(c) : el("td", c));
    return tr;
  }
  function wrapTd(node) { const td = document.createElement("td"); td.appendChild(node); return td; }
  function fill(tbody, rows, empty, cols) {
    tbody.replaceChildren();
    if (rows.length === 0) {
      const td = el("td", empty, "muted"); td.colSpan = cols;
      const tr = document.createElement("tr"); tr.appendChild(td); tbody.appendChild(tr);
    }
    for (const r of rows) tbody.appendChild(r);
  }
  const usd = (v) => "$" + Number(v || 0).toFixed(v >= 100 ? 0 : 2);
  const ms = (v) => (v === null || v === undefined) ? "–" : (v >= 1000 ? (v / 1000).toFixed(1) + " s" : Math.round(v) + " ms");
  const pct = (v) => (100 * (v || 0)).toFixed(1) + "%";

  function spark(svg, series, secondSeries) {
    svg.replaceChildren();
    const all = series.concat(secondSeries || []).map((v) => v || 0);
    const max = Math.max(...all, 1e-9);
    const line = (values, cls) => {
      const p = document.createElementNS(SVG, "polyline");
      const step = 180 / Math.max(1, values.length - 1);
      p.setAttribute("points", values.map((v, i) => (i * step).toFixed(1) + "," + (39 - 38 * (v || 0) / max).toFixed(1)).join(" "));
      if (cls) p.setAttribute("class", cls);
      svg.appendChild(p);
    };
    line(series);
    if (secondSeries) line(secondSeries, "second");
  }

  function drawTraffic(t) {
    const card = (name) => document.querySelector('[data-series="' + name + '"]');
    const w = t.window;
    const set = (name, value, a, b) => {
      const c = card(name);
      c.querySelector(".value").textContent = value;
      spark(c.querySelector("svg"), a, b);
    };
    set("rps", w.rps.toFixed(2) + " (" + w.requests + " in 15 min)", t.rps);
    set("error_rate", pct(w.error_rate), t.error_rate);
    set("latency", ms(w.latency_p50_ms) + " / " + ms(w.latency_p95_ms), t.latency_p50_ms, t.latency_p95_ms);
    set("ttft", ms(w.ttft_p50_ms), t.ttft_p50_ms);
  }

  function drawProviders(list) {
    const rows = list.map((p) => {
      const up = p.status === "healthy";
      const state = el("span", up ? "up" : "down", "state " + (up ? "ok" : "bad"));
      const tr = row([p.name, p.kind, state, p.consecutive_failures, p.queue === undefined ? "–" : p.queue, p.last_error || ""]);
      tr.dataset.provider = p.name;
      tr.dataset.status = p.status;
      return tr;
    });
    fill(document.querySelector("#providers tbody"), rows, "no providers", 6);
  }

  function drawModels(models) {
    const box = document.getElementById("models");
    box.replaceChildren();
    for (const m of models) {
      const div = el("div", null, "model");
      div.dataset.model = m.name;
      const title = el("strong", m.name);
      div.append(title, el("span", " · " + m.strategy, "muted"));
      const ul = document.createElement("ul");
      for (const d of m.deployments) {
        const li = el("li", d.provider + " / " + d.model + " ");
        const cls = d.circuit === "closed" ? "ok" : (d.circuit === "open" ? "bad" : "warn");
        const st = el("span", "circuit " + d.circuit, "state " + cls);
        li.dataset.circuit = d.circuit;
        li.appendChild(st);
        li.appendChild(el("span", " errors " + pct(d.error_rate) + (d.ewma_ttfb_ms ? ", ttfb " + ms(d.ewma_ttfb_ms) : ""), "muted"));
        if (typeof d.score === "number") {
          // Reputation: a small meter (the share of traffic `reliability` would give it).
          li.dataset.score = String(d.score);
          const meter = el("span", null, "meter" + (d.score < 0.5 ? " low" : ""));
          const fillMeter = document.createElement("span");
          fillMeter.style.width = (Math.max(0, Math.min(1, d.score)) * 100).toFixed(0) + "%";
          meter.appendChild(fillMeter);
          li.append(el("span", " score " + d.score.toFixed(2) + " ", "score"), meter);
        }
        ul.appendChild(li);
      }
      div.appendChild(ul);
      box.appendChild(div);
    }
  }

  function drawBudgets(budgets) {
    const box = document.getElementById("budgets");
    box.replaceChildren();
    if (budgets.length === 0) box.appendChild(el("p", "no budgets configured", "muted"));
    for (const b of budgets) {
      const div = el("div", null, "budget");
      div.dataset.scope = b.scope;
      const used = b.limit_usd > 0 ? (b.spent_usd + b.reserved_usd) / b.limit_usd : 0;
      const reset = b.resets_at ? " · resets " + new Date(b.resets_at * 1000).toISOString().replace(".000Z", "Z") : "";
      div.appendChild(el("div", b.scope + " · " + b.period + " · " + usd(b.spent_usd) + " of " + usd(b.limit_usd) + reset));
      const bar = el("div", null, "bar" + (used >= 1 ? " full" : (b.over_soft_ratio ? " soft" : "")));
      const fillBar = document.createElement("span");
      fillBar.style.width = Math.min(100, used * 100).toFixed(1) + "%";
      bar.appendChild(fillBar);
      div.appendChild(bar);
      box.appendChild(div);
    }
  }

  function drawCache(c) {
    const box = document.getElementById("cache");
    box.hidden = !c;
    if (!c) return;
    const rate = c.hit_rate;
    box.dataset.hitRate = rate === null ? "" : String(rate);
    document.getElementById("cache-rate").textContent = rate === null ? "–" : pct(rate);
    box.querySelector(".bar span").style.width = ((rate || 0) * 100).toFixed(1) + "%";
    document.getElementById("cache-detail").textContent =
      c.hits + " hits · " + c.misses + " misses · " + usd(c.saved_usd) + " saved";
  }

  function drawGuardrails(list) {
    const box = document.getElementById("guardrails");
    box.hidden = !list;
    if (!list) return;
    const rows = list.map((a) => {
      const tr = row([a.guardrail, a.action, a.phase, a.count]);
      tr.dataset.guardrail = a.guardrail;
      return tr;
    });
    fill(box.querySelector("tbody"), rows, "no actions yet", 4);
  }

  function draw(s) {
    const overall = document.getElementById("overall");
    overall.textContent = s.status;
    overall.className = "badge " + s.status;
    document.getElementById("meta").textContent = "v" + s.version + " · config " + s.config_generation + " · " + s.active_requests + " in flight · " + s.generated_at;
    drawTraffic(s.traffic);
    drawProviders(s.providers);
    drawModels(s.models);
    drawBudgets(s.budgets);
    drawCache(s.cache);
    drawGuardrails(s.guardrails);
    const keys = (s.top_keys_today || []).map((k) => row([k.key || "(anonymous)", k.requests, usd(k.cost_usd)]));
    fill(document.querySelector("#top-keys tbody"), keys, s.top_keys_today === null ? "no spend ledger" : "no spend today", 3);
    const errs = s.last_errors.map((e) => row([e.time.replace("T", " "), e.status, e.code, e.model || "", e.provider || ""]));
    fill(document.querySelector("#errors tbody"), errs, "no errors", 5);
    document.body.dataset.generated = String(s.generated_unix);
  }

  async function refresh() {
    const problem = document.getElementById("problem");
    try {
      const r = await fetch("/admin/status", { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { location.reload(); return; }
      if (!r.ok) throw new Error("status endpoint answered " + r.status);
      draw(await r.json());
      problem.hidden = true;
    } catch (e) {
      problem.textContent = "Could not refresh: " + e.message;
      problem.hidden = false;
    }
    setTimeout(refresh, refreshSecs * 1000);
  }
  refresh();
})();
