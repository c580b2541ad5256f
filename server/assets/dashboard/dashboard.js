// verifyd dashboard: reads /dashboard/api/{stats,health,events} from the server that serves
// it and draws them with uPlot. Every text from the server goes in with textContent, never as
// HTML.
"use strict";

(function () {
  const REFRESH_MS = 10000;
  const EVENTS_SHOWN = 100;
  const PALETTE = ["#2563eb", "#c2362f", "#2f8f4e", "#c98a10", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
  const HOUR_MS = 3600 * 1000;

  const state = { hours: 24, charts: new Map(), timer: null };

  // --- small helpers ---------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(child == null ? "" : String(child)));
    }
    return node;
  }

  const percent = (rate) => (rate == null ? "–" : (rate * 100).toFixed(1) + "%");
  const count = (n) => (n == null ? "–" : Number(n).toLocaleString("en"));
  const duration = (ms) => {
    if (ms == null) return "–";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    return (ms / 60000).toFixed(1) + " min";
  };
  const money = (row) => (row.sent > row.sent_without_cost ? row.cost.toFixed(2) : "–");
  const grade = (rate) => (rate == null ? "" : rate >= 0.9 ? "good" : rate >= 0.7 ? "fair" : "poor");
  const clock = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19) + "Z";

  function rateCell(rate) {
    const bar = el("span", { class: grade(rate) });
    bar.style.width = rate == null ? "0" : (rate * 100).toFixed(1) + "%";
    return el("td", {}, el("div", { class: "rate" }, el("div", { class: "bar" }, bar), el("span", { class: "text" }, percent(rate))));
  }

  function fillTable(id, rows, emptyText, columns) {
    const body = document.querySelector(`#${id} tbody`);
    const width = document.querySelectorAll(`#${id} thead th`).length;
    body.replaceChildren();
    if (rows.length === 0) {
      body.append(el("tr", { class: "empty" }, el("td", { colSpan: width }, emptyText)));
      return;
    }
    for (const row of rows) body.append(columns(row));
  }

  async function getJson(path) {
    const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    const body = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok) throw new Error(`${path}: ${response.status} ${body.error || ""}`);
    return body;
  }

  // --- totals and tables -----------------------------------------------------------------------

  function renderSummary(total) {
    const tiles = [
      ["verifications", count(total.verifications), "ended in the range"],
      ["conversion", percent(total.conversion_rate), `${count(total.approved)} approved`],
      ["delivery", percent(total.delivery_rate), `${count(total.delivered)} of ${count(total.sent)} sent`],
      ["time to approve", duration(total.approval_time_p50_ms), `p90 ${duration(total.approval_time_p90_ms)}`],
      ["fallback yield", percent(total.fallback_yield), `${count(total.fallback_sent)} fallback messages`],
      ["cost", money(total), `${count(total.sent_without_cost)} sent on routes without a cost`],
    ];
    document.getElementById("summary").replaceChildren(
      ...tiles.map(([label, value, note]) =>
        el("div", { class: "tile", "data-tile": label },
          el("div", { class: "value" }, value),
          el("div", { class: "label" }, `${label} · ${note}`)))
    );
  }

  function renderCountries(rows) {
    const sorted = rows.slice().sort((a, b) => {
      const ra = a.conversion_rate == null ? 2 : a.conversion_rate;
      const rb = b.conversion_rate == null ? 2 : b.conversion_rate;
      return ra - rb || b.verifications - a.verifications;
    });
    fillTable("countries", sorted, "no verifications ended in this range", (row) =>
      el("tr", { "data-country": row.region_code || "", "data-conversion": row.conversion_rate == null ? "" : row.conversion_rate },
        el("td", {}, row.region_code || "(unknown)"),
        el("td", { class: "num" }, count(row.verifications)),
        el("td", { class: "num" }, count(row.approved)),
        rateCell(row.conversion_rate),
        el("td", { class: "num" }, count(row.sent)),
        el("td", { class: "num" }, count(row.delivered)),
        el("td", { class: "num" }, count(row.failed)),
        el("td", { class: "num" }, percent(row.delivery_rate)),
        el("td", { class: "num" }, duration(row.approval_time_p50_ms)),
        el("td", { class: "num" }, duration(row.approval_time_p90_ms)),
        el("td", { class: "num" }, percent(row.fallback_yield)),
        el("td", { class: "num" }, money(row))));
  }

  function renderFallback(rows) {
    const steps = rows.filter((row) => row.fallback_sent > 0)
      .sort((a, b) => b.fallback_sent - a.fallback_sent);
    fillTable("fallback", steps, "no fallback step was taken in this range", (row) =>
      el("tr", { "data-country": row.region_code || "", "data-channel": row.channel || "" },
        el("td", {}, row.region_code || "(unknown)"),
        el("td", {}, row.channel || "–"),
        el("td", { class: "num" }, count(row.fallback_sent)),
        el("td", { class: "num" }, count(row.fallback_approved)),
        el("td", { class: "num" }, percent(row.fallback_yield))));
  }

  function renderHealth(health) {
    fillTable("routes", health.routes, "no route has been used since the server started", (route) =>
      el("tr", { "data-carrier": route.carrier, "data-state": route.state },
        el("td", {}, route.carrier),
        el("td", {}, route.region),
        el("td", {}, route.channel),
        el("td", {}, el("span", { class: `state ${route.state}` }, route.state.replace("_", "-"))),
        el("td", { class: "num" }, `${route.window_failures} of ${route.window_calls}`),
        el("td", { class: "detail" }, route.cause || "")));
    fillTable("blocks", health.blocks, "no active block", (block) =>
      el("tr", { "data-kind": block.kind },
        el("td", {}, `${block.kind} ${block.target}`),
        el("td", {}, block.rule),
        el("td", {}, block.enforced ? "enforced" : "monitor"),
        el("td", {}, clock(block.ends_ms)),
        el("td", { class: "detail" }, block.reason)));
    const o = health.outbox;
    document.getElementById("outbox").textContent =
      `Outbox: ${count(o.queued)} queued, ${count(o.scheduled)} scheduled, ${count(o.claimed + o.sending)} being sent. ` +
      `Statistics count events through ${count(health.counted_through_cursor)} of ${count(health.latest_cursor)}.`;
  }

  // --- charts ----------------------------------------------------------------------------------

  // Rows grouped by (series, period) into uPlot's columns: one x per period of the range, a
  // value per series or null where it had none.
  function columns(rows, seriesOf, valueOf, startMs, endMs, stepMs, missing) {
    const xs = [];
    for (let t = startMs; t < endMs; t += stepMs) xs.push(t);
    const index = new Map(xs.map((t, i) => [t, i]));
    const series = new Map();
    for (const row of rows) {
      const name = seriesOf(row);
      if (!series.has(name)) series.set(name, new Array(xs.length).fill(missing));
      const i = index.get(row.period_start_ms);
      if (i !== undefined) series.get(name)[i] = valueOf(row);
    }
    const names = [...series.keys()].sort();
    return { names, data: [xs.map((t) => t / 1000), ...names.map((name) => series.get(name))] };
  }

  function drawChart(id, { names, data }, kind) {
    const target = document.getElementById(id);
    const width = Math.max(300, target.clientWidth || 500);
    const key = names.join("\u0000") + kind;
    const old = state.charts.get(id);
    if (old && old.key === key) {
      old.plot.setData(data);
      return;
    }
    if (old) old.plot.destroy();
    target.replaceChildren();
    if (names.length === 0) {
      target.append(el("p", { class: "hint" }, "nothing sent in this range"));
      state.charts.delete(id);
      return;
    }
    const isRate = kind === "rate";
    const format = (v) => (v == null ? "–" : isRate ? v.toFixed(1) + "%" : count(v));
    const plot = new uPlot({
      width,
      height: 220,
      scales: { x: { time: true }, y: isRate ? { range: [0, 100] } : { range: (u, min, max) => [0, Math.max(1, max)] } },
      series: [{}, ...names.map((name, i) => ({
        label: name,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        points: { show: true, size: 5 },
        value: (u, v) => format(v),
      }))],
      axes: [{}, { values: (u, values) => values.map(format), size: 60 }],
    }, data, target);
    state.charts.set(id, { key, plot });
  }

  function resizeCharts() {
    for (const [id, chart] of state.charts) {
      const width = document.getElementById(id).clientWidth;
      if (width > 0) chart.plot.setSize({ width, height: 220 });
    }
  }

  // --- refresh ---------------------------------------------------------------------------------

  async function refresh() {
    const hours = state.hours;
    const period = hours > 168 ? "day" : "hour";
    const step = period === "day" ? 24 * HOUR_MS : HOUR_MS;
    const range = `hours=${hours}`;
    try {
      const [countries, fallback, carriers, channels, health] = await Promise.all([
        getJson(`/dashboard/api/stats?by=country&${range}`),
        getJson(`/dashboard/api/stats?by=country,channel&${range}`),
        getJson(`/dashboard/api/stats?by=carrier,${period}&${range}`),
        getJson(`/dashboard/api/stats?by=channel,${period}&${range}`),
        getJson("/dashboard/api/health"),
      ]);
      if (hours !== state.hours) return; // another range was chosen meanwhile
      renderSummary(countries.total);
      renderCountries(countries.rows);
      renderFallback(fallback.rows);
      renderHealth(health);
      const start = carriers.start_ms;
      const end = carriers.end_ms;
      const align = (t) => (period === "day" ? Math.floor(t / step) * step : t);
      const alignedStart = align(start);
      const byCarrier = carriers.rows.filter((row) => row.carrier);
      const byChannel = channels.rows.filter((row) => row.channel);
      const carrierName = (row) => row.carrier;
      const channelName = (row) => row.channel;
      const pct = (rate) => (rate == null ? null : rate * 100);
      drawChart("chart-carrier-conversion",
        columns(byCarrier.filter((row) => row.verifications > 0), carrierName, (row) => pct(row.conversion_rate), alignedStart, end, step, null), "rate");
      drawChart("chart-carrier-delivery",
        columns(byCarrier.filter((row) => row.sent > 0), carrierName, (row) => pct(row.delivery_rate), alignedStart, end, step, null), "rate");
      drawChart("chart-channel-sent",
        columns(byChannel.filter((row) => row.sent > 0), channelName, (row) => row.sent, alignedStart, end, step, 0), "count");
      drawChart("chart-channel-delivery",
        columns(byChannel.filter((row) => row.sent > 0), channelName, (row) => pct(row.delivery_rate), alignedStart, end, step, null), "rate");
      document.getElementById("freshness").textContent =
        `${clock(start)} to ${clock(end)} · updated ${clock(Date.now())} · events counted through ${count(countries.counted_through_cursor)}`;
      document.body.dataset.loaded = "true";
    } catch (error) {
      document.getElementById("freshness").textContent = `could not load: ${error.message}`;
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    refresh().finally(() => {
      state.timer = setTimeout(schedule, REFRESH_MS);
    });
  }

  for (const button of document.querySelectorAll("#range button")) {
    button.addEventListener("click", () => {
      for (const other of document.querySelectorAll("#range button")) other.classList.toggle("selected", other === button);
      state.hours = Number(button.dataset.hours);
      schedule();
    });
  }
  window.addEventListener("resize", resizeCharts);

  // --- live events -----------------------------------------------------------------------------

  function liveEvents() {
    const badge = document.getElementById("live-state");
    const body = document.querySelector("#events tbody");
    const source = new EventSource("/dashboard/api/events");
    source.onopen = () => {
      badge.textContent = "live";
      badge.className = "badge live";
    };
    source.onerror = () => {
      badge.textContent = "reconnecting";
      badge.className = "badge down";
    };
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      const route = event.carrier ? `${event.channel} via ${event.carrier}` : "";
      const row = el("tr", { class: "fresh", "data-event": event.event, "data-cursor": event.cursor },
        el("td", {}, clock(event.at_ms)),
        el("td", {}, event.event.replaceAll("_", " ")),
        el("td", {}, event.subject),
        el("td", {}, route),
        el("td", { class: "detail" }, event.detail));
      body.prepend(row);
      while (body.rows.length > EVENTS_SHOWN) body.lastElementChild.remove();
    };
  }

  schedule();
  liveEvents();
})();
