// otelfleet topology page, routers section: polls /v1/routers and renders each OTLP
// router with its spans/s received and kept, and per backend spans/s sent, queue bytes,
// in flight, rerouted and dropped.
(function () {
  "use strict";
  const REFRESH_MS = 3000;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const num = (n) => !isFinite(n) ? "–" : n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e3 ? (n / 1e3).toFixed(1) + "k" : n >= 10 ? Math.round(n) : n.toFixed(1);
  function bytes(n) {
    const u = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + u[i];
  }

  function render(list) {
    const box = $("routers");
    if (!list.length) {
      box.innerHTML = `<p class="r-empty">no router is publishing its status</p>`;
      return;
    }
    box.innerHTML = list.map((r) => {
      const kept = r.received_per_sec > 0 ? ` (${(100 * r.kept_per_sec / r.received_per_sec).toFixed(0)}%)` : "";
      const rows = r.backends.map((b) => `<tr class="${b.leaving ? "r-leaving" : ""}">
          <td title="${esc(b.addr)}">${esc(b.key)}</td><td>${esc(b.region)}</td><td class="num">${(100 * b.share).toFixed(0)}%</td>
          <td class="num">${num(b.sent_per_sec)}</td><td class="num">${bytes(b.queue_bytes)}</td><td class="num">${b.in_flight}</td>
          <td class="num">${b.rerouted}</td><td class="num ${b.dropped > 0 ? "r-bad" : ""}">${b.dropped}</td></tr>`).join("");
      return `<article class="r-card">
        <header><b>${esc(r.router)}</b><span>${esc(r.region)} · ${esc(r.strategy)} · ${esc(r.grpc_addr)}</span>
          <span class="r-rates"><b class="num">${num(r.received_per_sec)}</b> spans/s received · <b class="num">${num(r.kept_per_sec)}</b> kept${kept}</span></header>
        <table><thead><tr><th>backend</th><th>region</th><th>share</th><th>sent/s</th><th>queue</th><th>in flight</th><th>rerouted</th><th>dropped</th></tr></thead>
        <tbody>${rows || `<tr><td colspan="8" class="r-empty">no backend</td></tr>`}</tbody></table></article>`;
    }).join("");
  }

  async function tick() {
    try {
      const res = await fetch("/v1/routers", { cache: "no-store" });
      if (res.ok) render((await res.json()).routers || []);
    } catch (e) { /* the main section shows the connection state */ }
    setTimeout(tick, REFRESH_MS);
  }
  tick();
})();
