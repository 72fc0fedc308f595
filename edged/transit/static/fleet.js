// The fleet page for dispatch: every vehicle, live (Server-Sent Events), a map in SVG.
// Text only: every string from the broker goes through textContent or an SVG text node,
// never HTML (the Content-Security-Policy forbids HTML sinks anyway). No build step.
"use strict";

(() => {
  const W = 800;
  const H = 600;
  const TILE = 256;
  const SVG = "http://www.w3.org/2000/svg";
  const vehicles = new Map(); // key -> vehicle as the server sent it
  const rows = new Map(); // key -> {tr, cells}
  let offsetMs = 0; // server clock minus this browser's
  let maxAgeS = 90;
  let connected = false;
  let streamUp = false;
  let tileUrl = null;
  let attribution = null;

  const $ = (id) => document.getElementById(id);
  const make = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  };
  const svg = (tag, attrs) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  };
  const now = () => Date.now() + offsetMs;

  function age(ms) {
    if (ms === null || ms === undefined) return "jamais";
    const s = Math.max(0, Math.round((now() - ms) / 1000));
    if (s < 60) return `il y a ${s} s`;
    if (s < 3600) return `il y a ${Math.floor(s / 60)} min`;
    return `il y a ${Math.floor(s / 3600)} h`;
  }

  function clock(ms) {
    const d = new Date(ms);
    if (Number.isNaN(d.getTime())) return "?"; // format() throws on an Invalid Date
    return new Intl.DateTimeFormat("fr-FR", { hour: "2-digit", minute: "2-digit" }).format(d);
  }

  // -- what a vehicle is now -----------------------------------------------------------

  const activePanic = (v) => v.alarms.find((a) => a.kind === "panic" && a.active);

  function status(v) {
    if (v.state !== "online") return "offline";
    if (v.mode === "out-of-service") return "out";
    if (!v.position || v.position.fix_ms === null) return "nofix";
    if (now() - v.position.fix_ms > maxAgeS * 1000) return "stale";
    return "service";
  }
  const STATUS_TEXT = {
    offline: "Hors ligne",
    out: "Hors service",
    nofix: "Sans position",
    stale: "Position ancienne",
    service: "En service",
  };

  const ACKED_SHOWN_MS = 15 * 60 * 1000; // an acknowledged panic stays near the top a while

  function level(v) {
    if (activePanic(v)) return "panic";
    if (v.alarms.some((a) => a.active)) return "alarm";
    if (v.alarms.some((a) => a.kind === "panic" && a.ts && now() - a.ts < ACKED_SHOWN_MS)) {
      return "acked";
    }
    if (v.faults && v.faults.red) return "fault";
    return "";
  }
  const RANK = { panic: 0, alarm: 1, acked: 2, fault: 3, "": 4 };

  function ordered() {
    return [...vehicles.values()].sort(
      (a, b) =>
        RANK[level(a)] - RANK[level(b)] ||
        (a.state === "online" ? 0 : 1) - (b.state === "online" ? 0 : 1) ||
        a.name.localeCompare(b.name, "fr") ||
        a.key.localeCompare(b.key),
    );
  }

  // -- the list ------------------------------------------------------------------------

  function row(key) {
    let r = rows.get(key);
    if (r) return r;
    const tr = make("tr");
    tr.dataset.key = key;
    const cells = {};
    for (const c of ["who", "state", "line", "where", "occ", "alarms"]) {
      cells[c] = make("td", c);
      tr.appendChild(cells[c]);
    }
    r = { tr, cells };
    rows.set(key, r);
    return r;
  }

  function fill(td, ...children) {
    td.replaceChildren(...children.filter((c) => c));
  }

  function renderRow(v) {
    const { tr, cells } = row(v.key);
    const st = status(v);
    tr.dataset.level = level(v);
    tr.dataset.state = v.state === "online" ? "online" : "offline";
    fill(cells.who, make("span", "name", v.name), make("span", "key", v.key));
    const badge = make("span", "badge", STATUS_TEXT[st]);
    badge.dataset.status = st;
    fill(cells.state, badge);
    const j = v.journey;
    fill(
      cells.line,
      j ? make("span", "name", j.line || j.route_id || "") : make("span", "muted", "—"),
      j && j.headsign ? make("span", "key", `→ ${j.headsign}`) : null,
      j && j.trip_id ? make("span", "key", j.trip_id) : j && j.added ? make("span", "key", "course ajoutée") : null,
    );
    const p = v.position;
    fill(
      cells.where,
      make("span", null, p ? age(p.fix_ms) : "jamais"),
      p && p.speed_kmh !== null ? make("span", "key", `${Math.round(p.speed_kmh)} km/h`) : null,
    );
    const o = v.occupancy;
    const doubt = o && Array.isArray(o.doubt) && o.doubt.length
      ? make("span", "chip", `compte douteux : ${o.doubt.join(", ")}`)
      : null;
    if (doubt) doubt.dataset.kind = "doubt";
    if (o && o.capacity) {
      const meter = make("meter");
      meter.min = 0;
      meter.max = o.capacity;
      meter.value = Math.min(o.count, o.capacity);
      meter.low = o.capacity * 0.5;
      meter.high = o.capacity * 0.8;
      meter.optimum = 0;
      meter.setAttribute("aria-label", `${o.count} personnes à bord sur ${o.capacity}`);
      fill(cells.occ, meter, make("span", null, ` ${o.count}/${o.capacity}`), doubt);
    } else if (o) {
      fill(cells.occ, make("span", null, `${o.count} à bord`), doubt);
    } else {
      fill(cells.occ, make("span", "muted", "—"));
    }
    const chips = [];
    for (const a of v.alarms) {
      if (a.kind === "panic" && a.active) {
        const c = make("span", "chip", `PANIQUE ${a.raised_at ? clock(a.raised_at) : ""}`);
        c.dataset.kind = "panic";
        chips.push(c);
      } else if (a.kind === "panic") {
        const c = make("span", "chip", `panique acquittée${a.acked_by ? ` par ${a.acked_by}` : ""}`);
        c.dataset.kind = "acked";
        chips.push(c);
      } else if (a.active) {
        const c = make("span", "chip", `${a.kind} : ${a.reason}`);
        c.dataset.kind = "alarm";
        chips.push(c);
      }
    }
    if (v.faults) {
      const f = v.faults;
      const c = make("span", "chip", `${f.count} défaut${f.count > 1 ? "s" : ""}${f.red ? " (arrêt)" : f.amber ? " (alerte)" : ""}`);
      c.dataset.kind = f.red ? "fault-red" : "fault";
      chips.push(c);
    }
    fill(cells.alarms, ...chips);
    return tr;
  }

  function renderList() {
    const tbody = $("rows");
    const list = ordered();
    list.forEach((v, i) => {
      const tr = renderRow(v);
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    for (const [key, r] of rows) {
      if (!vehicles.has(key)) {
        r.tr.remove();
        rows.delete(key);
      }
    }
    $("empty").hidden = list.length > 0;
  }

  // -- the panic banner ----------------------------------------------------------------

  const SHELL_SAFE_ID = /^[A-Za-z0-9_.:-]{1,64}$/;
  const SHELL_SAFE_KEY = /^[a-z0-9][a-z0-9_-]{0,62}\/[a-z0-9][a-z0-9_-]{0,62}$/;

  function renderPanic() {
    const inPanic = ordered().filter(activePanic);
    const banner = $("panic");
    banner.hidden = inPanic.length === 0;
    document.body.classList.toggle("alarm", inPanic.length > 0);
    document.title = inPanic.length
      ? `🚨 PANIQUE (${inPanic.length}) – Flotte en direct`
      : "Flotte en direct – régulation";
    $("panic-title").textContent =
      inPanic.length > 1 ? `ALERTE PANIQUE : ${inPanic.length} VÉHICULES` : "ALERTE PANIQUE";
    const items = inPanic.map((v) => {
      const a = activePanic(v);
      const where = v.position ? ` — ${v.position.lat.toFixed(5)}, ${v.position.lon.toFixed(5)}` : "";
      const since = a.raised_at ? ` depuis ${clock(a.raised_at)}` : "";
      const li = make("li", null, `${v.name} (${v.key})${since}${where}`);
      if (SHELL_SAFE_ID.test(a.alarm_id || "") && SHELL_SAFE_KEY.test(v.key)) {
        // by its id: an ack without one, held at the broker while the vehicle is out of
        // reach, would be refused for a newer alarm (wrong_alarm) rather than clear it.
        // Shown only when pasting it into a shell cannot run anything else: the id and the
        // key come from what a node published
        const ack = `edgectl cmd ${v.key} alarm.ack '${JSON.stringify({ alarm_id: a.alarm_id })}'`;
        li.append(" — acquitter : ", make("code", "panic-ack", ack));
      }
      return li;
    });
    $("panic-list").replaceChildren(...items);
  }

  // -- the map -------------------------------------------------------------------------

  function world(lat, lon, z) {
    const n = TILE * 2 ** z;
    const phi = (Math.max(-85, Math.min(85, lat)) * Math.PI) / 180;
    return [((lon + 180) / 360) * n, ((1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2) * n];
  }

  function renderMap() {
    const map = $("map");
    const placed = ordered().filter((v) => v.position);
    const parts = [];
    if (placed.length === 0) {
      const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" });
      t.textContent = "Aucune position reçue";
      map.replaceChildren(t);
      return;
    }
    const lats = placed.map((v) => v.position.lat);
    const lons = placed.map((v) => v.position.lon);
    const [s, n, w, e] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
    let z = 17;
    for (; z > 1; z--) {
      const [x0, y0] = world(n, w, z);
      const [x1, y1] = world(s, e, z);
      if (x1 - x0 <= W * 0.85 && y1 - y0 <= H * 0.85) break;
    }
    const [cx, cy] = world((s + n) / 2, (w + e) / 2, z);
    const ox = cx - W / 2;
    const oy = cy - H / 2;
    if (tileUrl) {
      const max = 2 ** z;
      for (let tx = Math.floor(ox / TILE); tx <= Math.floor((ox + W) / TILE); tx++) {
        for (let ty = Math.floor(oy / TILE); ty <= Math.floor((oy + H) / TILE); ty++) {
          if (ty < 0 || ty >= max) continue;
          const x = ((tx % max) + max) % max;
          const href = tileUrl.replace("{z}", z).replace("{x}", x).replace("{y}", ty);
          parts.push(svg("image", { href, x: tx * TILE - ox, y: ty * TILE - oy, width: TILE, height: TILE }));
        }
      }
    } else {
      for (let gx = 0; gx <= W; gx += 100) parts.push(svg("line", { class: "grid-line", x1: gx, y1: 0, x2: gx, y2: H }));
      for (let gy = 0; gy <= H; gy += 100) parts.push(svg("line", { class: "grid-line", x1: 0, y1: gy, x2: W, y2: gy }));
    }
    // panic last, so drawn on top of everything
    for (const v of [...placed].reverse()) {
      const [px, py] = world(v.position.lat, v.position.lon, z);
      const g = svg("g", { class: "vehicle", transform: `translate(${(px - ox).toFixed(1)} ${(py - oy).toFixed(1)})` });
      g.dataset.status = status(v);
      g.dataset.level = level(v);
      g.dataset.key = v.key;
      const title = svg("title");
      title.textContent = `${v.name} — ${STATUS_TEXT[status(v)]}`;
      g.appendChild(title);
      if (level(v) === "panic") g.appendChild(svg("circle", { class: "ring", r: 18 }));
      g.appendChild(svg("circle", { class: "dotmark", r: level(v) === "panic" ? 10 : 6 }));
      if (placed.length <= 20 || level(v) === "panic") {
        const label = svg("text", { x: 10, y: 4 });
        label.textContent = v.name;
        g.appendChild(label);
      }
      parts.push(g);
    }
    map.replaceChildren(...parts);
    $("attribution").textContent = tileUrl ? attribution || "" : "";
  }

  // -- live ----------------------------------------------------------------------------

  function renderHeader() {
    const all = [...vehicles.values()];
    const served = all.filter((v) => status(v) === "service").length;
    const offline = all.filter((v) => v.state !== "online").length;
    $("counts").textContent = `${all.length} véhicules · ${served} en service · ${offline} hors ligne`;
    const link = $("link");
    const state = !streamUp ? "lost" : connected ? "online" : "offline";
    link.dataset.state = state;
    $("link-text").textContent = {
      lost: "Service de flotte injoignable, reconnexion…",
      online: "En direct",
      offline: "Broker MQTT perdu : données figées",
    }[state];
  }

  function render() {
    renderHeader();
    renderPanic();
    renderList();
    renderMap();
  }

  function onFleet(data) {
    offsetMs = data.now_ms - Date.now();
    maxAgeS = data.max_age_s;
    connected = data.connected;
    tileUrl = data.tile_url;
    attribution = data.tile_attribution;
    if (data.full) vehicles.clear();
    for (const v of data.vehicles) vehicles.set(v.key, v);
    render();
  }

  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("fleet", (e) => {
      streamUp = true;
      onFleet(JSON.parse(e.data));
    });
    source.addEventListener("tick", (e) => {
      const data = JSON.parse(e.data);
      offsetMs = data.now_ms - Date.now();
      connected = data.connected;
      renderHeader();
    });
    source.addEventListener("error", () => {
      streamUp = false;
      renderHeader();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    connect();
    setInterval(render, 1000); // ages and staleness move with time
  });
})();
