// otelfleet topology page: polls /v1/topology and renders regions and collectors.
(function () {
  "use strict";
  const REFRESH_MS = 3000;
  const PER_REGION = 200;
  const $ = (id) => document.getElementById(id);
  let lastOK = 0;

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function si(n, unit) {
    if (!isFinite(n)) return "–";
    const a = Math.abs(n);
    const [d, s] = a >= 1e9 ? [1e9, "G"] : a >= 1e6 ? [1e6, "M"] : a >= 1e3 ? [1e3, "k"] : [1, ""];
    const v = n / d;
    if (d === 1) return (a >= 10 || Number.isInteger(v) ? Math.round(v) : v.toFixed(1)) + (unit || "");
    return v.toFixed(v >= 100 ? 0 : 1) + s + (unit || "");
  }
  function bytes(n) {
    if (!isFinite(n)) return "–";
    const u = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + u[i];
  }
  const pct = (f, digits) => isFinite(f) ? (f * 100).toFixed(digits == null ? 0 : digits) + "%" : "–";
  const ms = (v) => !isFinite(v) ? "–" : v >= 100 ? v.toFixed(0) + " ms" : v.toFixed(1) + " ms";
  function age(msAge) {
    if (msAge < 0) return "never";
    const s = msAge / 1000;
    return s < 60 ? s.toFixed(s < 10 ? 1 : 0) + "s" : s < 3600 ? (s / 60).toFixed(0) + "m" : (s / 3600).toFixed(1) + "h";
  }
  const level = (u) => (u >= 0.9 ? "hot" : u >= 0.7 ? "warn" : "ok");
  const colour = { ok: "#34d399", warn: "#fbbf24", hot: "#f87171" };

  function bar(util, stale, big) {
    const w = Math.max(0, Math.min(1, util || 0)) * 100;
    const cls = stale ? "stale" : level(util || 0);
    return `<div class="bar ${cls} ${big ? "big" : ""}" title="utilisation ${pct(util, 1)}"><i style="width:${w.toFixed(1)}%"></i></div>`;
  }
  function stat(label, value, extra) {
    return `<div class="stat"><small>${label}</small><b class="num">${value}</b>${extra ? `<em>${extra}</em>` : ""}</div>`;
  }

  function renderGlobal(t) {
    const g = t.global;
    const sampling = g.effective_sampling_rate == null ? "–" : pct(g.effective_sampling_rate, g.effective_sampling_rate < 0.1 ? 1 : 0);
    $("global").innerHTML = [
      stat("healthy collectors", `${g.healthy}<em>/ ${g.collectors}</em>`),
      stat("regions", g.regions),
      stat("spans / s", si(g.spans_per_sec)),
      stat("bytes / s", bytes(g.bytes_per_sec)),
      stat("capacity", si(g.capacity_qps), "spans/s"),
      stat("avg latency", ms(g.avg_latency_ms)),
      stat("error rate", pct(g.error_rate, 2)),
      stat("sampling", sampling),
    ].join("");
    const u = Math.max(0, Math.min(1, g.utilization || 0));
    const c = 2 * Math.PI * 50;
    const arc = $("gauge-arc");
    arc.setAttribute("stroke-dasharray", `${(u * c).toFixed(1)} ${c.toFixed(1)}`);
    arc.style.stroke = colour[level(g.utilization || 0)];
    $("g-util").textContent = pct(g.utilization);
    const problems = g.unhealthy + g.stale + g.degraded;
    document.title = (problems ? `(${problems}) ` : "") + "otelfleet · topology";
  }

  // opampTag shows an OpAMP-managed collector's config version and remote config status.
  function opampTag(o) {
    if (!o) return "";
    const st = (o.config_status || "UNSET").toUpperCase();
    const cls = st === "APPLIED" ? "ok" : st === "FAILED" ? "bad" : st === "APPLYING" ? "busy" : "";
    const version = o.config_version ? `${esc(o.group)} v${o.config_version}` : "no config";
    const tip = `OpAMP agent ${o.uid} over ${o.transport || "?"} · config ${version} ${st}${o.config_error ? ": " + o.config_error : ""} · effective config ${o.effective_config_hash ? o.effective_config_hash.slice(0, 12) : "unknown"}`;
    return `<span class="opamp ${cls}" title="${esc(tip)}">opamp · ${version} · ${esc(st.toLowerCase())}</span>`;
  }

  function renderCollector(c) {
    const status = c.status;
    const title = `${c.id} · ${status}${c.address ? " · " + c.address : ""} · cpu ${pct(c.cpu)} · queue ${c.queue_depth} · errors ${pct(c.error_rate, 2)} · last report ${age(c.report_age_ms)} ago`;
    const load = c.capacity_qps > 0 ? `<b>${si(c.qps)}</b> / ${si(c.capacity_qps)}` : `<b>${si(c.qps)}</b> / ?`;
    const right = c.stale ? `<span title="no load report for ${age(c.report_age_ms)}">${c.report_age_ms < 0 ? "no report" : age(c.report_age_ms) + " ago"}</span>` : ms(c.avg_latency_ms);
    return `<li class="collector ${esc(status)}" title="${esc(title)}">
      <i class="dot ${esc(status)}"></i>
      <div class="id">${esc(c.name && c.opamp ? c.name : c.id)}<small>${esc(c.address || "")}</small>${opampTag(c.opamp)}</div>
      <div class="util">${bar(c.utilization, c.stale)}<span class="num">${c.capacity_qps > 0 && !c.stale ? pct(c.utilization) : ""}</span></div>
      <div class="load num">${load}</div>
      <div class="lat num">${right}</div>
    </li>`;
  }

  function renderRegion(r) {
    const st = r.stats;
    const shown = r.collectors.length;
    const health = st.unhealthy ? "unhealthy" : st.degraded ? "degraded" : st.stale && !st.healthy ? "stale" : "healthy";
    return `<section class="region">
      <header>
        <h2><i class="dot ${health}"></i>${esc(r.region)}<span class="pill">${st.healthy}/${st.collectors} healthy${st.stale ? ` · ${st.stale} stale` : ""}${st.unhealthy ? ` · ${st.unhealthy} unhealthy` : ""}</span></h2>
        ${bar(st.utilization, false, true)}
        <div class="rstats num">
          <div>spans/s<b>${si(st.qps)}</b></div>
          <div>capacity<b>${si(st.capacity_qps)}</b></div>
          <div>utilisation<b>${pct(st.utilization)}</b></div>
          <div>latency<b>${ms(st.avg_latency_ms)}</b></div>
          <div>error rate<b>${pct(st.error_rate, 2)}</b></div>
          <div>bytes/s<b>${bytes(st.bytes_per_sec)}</b></div>
          <div>spare<b>${si(st.spare_qps)}</b></div>
          <div>queue<b>${si(st.queue_depth)}</b></div>
        </div>
      </header>
      <ul class="collectors">${r.collectors.map(renderCollector).join("")}</ul>
      ${r.omitted ? `<div class="more">+ ${r.omitted} more collectors (showing the ${shown} that most need attention) · <a href="/v1/topology?region=${encodeURIComponent(r.region)}">all as JSON</a></div>` : ""}
    </section>`;
  }

  function render(t) {
    renderGlobal(t);
    const el = $("regions");
    if (!t.regions.length) {
      el.innerHTML = `<div class="empty">No collectors registered yet. Start some with <code>otelfleet simulate</code> or register a collector.</div>`;
    } else {
      el.innerHTML = t.regions.map(renderRegion).join("");
    }
    const built = new Date(t.generated_at);
    $("meta").innerHTML = `<i class="live"></i>live · built ${built.toLocaleTimeString()} by ${esc(t.instance)}${t.leader ? '<span class="badge">leader</span>' : ""}`;
  }

  async function tick() {
    try {
      const res = await fetch(`/v1/topology?per_region=${PER_REGION}&sort=attention`, { cache: "no-store" });
      const body = await res.json();
      if (!res.ok) throw new Error(body.error || res.statusText);
      render(body);
      lastOK = Date.now();
      $("banner").hidden = true;
    } catch (err) {
      const b = $("banner");
      b.hidden = false;
      b.textContent = `Cannot load /v1/topology: ${err.message}` + (lastOK ? ` (last update ${Math.round((Date.now() - lastOK) / 1000)}s ago)` : "");
      const live = document.querySelector(".meta .live");
      if (live) live.classList.add("off");
    } finally {
      setTimeout(tick, REFRESH_MS);
    }
  }
  tick();
})();
