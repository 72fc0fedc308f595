// Info kiosk page: live state from the daemon (Server-Sent Events), rider buttons.
// Text only: every string from the daemon goes through textContent, never HTML (the
// Content-Security-Policy forbids HTML sinks anyway). No build step, no external files.
"use strict";

(() => {
  const plural = (n, one, many) => (n === 1 ? one : many);

  const TEXT = {
    fr: {
      locale: "fr-FR",
      title: "Borne d'information",
      skip: "Aller aux boutons de demande",
      switch_label: "Passer en français",
      switch_text: "Français",
      time: "Heure",
      connecting: "Connexion…",
      online: "En ligne",
      offline: "Hors ligne",
      offline_banner:
        "Pas de réseau : vos demandes sont enregistrées et seront envoyées dès le retour du réseau.",
      lost_banner: "Connexion à la borne perdue, reconnexion…",
      where_title: "Où sommes-nous ?",
      stops_title: "Prochains arrêts",
      stops_empty: "Pas d'horaire de passage pour le moment.",
      occupancy_title: "Places à bord",
      messages_title: "Informations",
      messages_empty: "Pas d'annonce en ce moment.",
      services_title: "Services aujourd'hui",
      services_empty: "Le programme du jour n'est pas encore arrivé.",
      actions_title: "Vos demandes",
      pickup: "Demander un transport",
      mediator: "Appeler le médiateur",
      service: "Une question sur un service",
      ask: "Poser une question",
      ask_label: (p) => `Poser une question sur ${p}`,
      kind_stop: "Arrêt",
      kind_market: "Marché de services",
      kind_venue: "Lieu",
      on_the_way: "En route",
      near: (name, km) => `En route, près de ${name} (${km.toLocaleString("fr-FR")} km)`,
      fix_lost: "Position inconnue pour le moment (pas de signal GPS)",
      fix_none: "Position en attente du GPS",
      eta_now: "à l'approche",
      eta_in: (m) => `dans ${m} min`,
      eta_past: "passé",
      until: (t) => `jusqu'à ${t}`,
      from_to: (a, b) => `de ${a} à ${b}`,
      from: (t) => `à partir de ${t}`,
      seats: (n) => `${n} ${plural(n, "place disponible", "places disponibles")}`,
      few: (w) => `Peu de places : ${w}`,
      full: "Complet",
      occ_value: (c, cap) => `${c} personnes à bord sur ${cap} places`,
      urgent: "Urgent : ",
      important: "Important : ",
      saving: "Enregistrement de votre demande…",
      sent: "Envoyé. En attente de la régulation.",
      sent_offline:
        "Pas de réseau : votre demande est enregistrée et sera envoyée.",
      received: "Reçu par la régulation.",
      failed:
        "Votre demande n'a pas pu être enregistrée. Adressez-vous au chauffeur ou à l'accueil.",
      limited: "Trop d'appuis : patientez quelques secondes.",
      refused: "Cette demande n'est pas possible ici.",
      unreachable: "La borne ne répond pas. Réessayez dans un instant.",
      about: (p) => `Question sur ${p} : `,
      modes: {
        "on-demand": "Transport à la demande",
        "out-of-service": "Hors service",
        school: "Transport scolaire",
        market: "Marché de services",
      },
    },
    en: {
      locale: "en-GB",
      title: "Information kiosk",
      skip: "Skip to the request buttons",
      switch_label: "Switch to English",
      switch_text: "English",
      time: "Time",
      connecting: "Connecting…",
      online: "Online",
      offline: "Offline",
      offline_banner:
        "No network: your requests are saved and will be sent when the network is back.",
      lost_banner: "Lost contact with the kiosk, reconnecting…",
      where_title: "Where are we?",
      stops_title: "Next stops",
      stops_empty: "No times for the next stops yet.",
      occupancy_title: "Seats on board",
      messages_title: "Announcements",
      messages_empty: "No announcements right now.",
      services_title: "Services today",
      services_empty: "Today's programme has not arrived yet.",
      actions_title: "Your requests",
      pickup: "Ask for a pickup",
      mediator: "Call the mediator",
      service: "Ask about a service",
      ask: "Ask a question",
      ask_label: (p) => `Ask a question about ${p}`,
      kind_stop: "Stop",
      kind_market: "Service market",
      kind_venue: "Venue",
      on_the_way: "On the way",
      near: (name, km) => `On the way, near ${name} (${km.toLocaleString("en-GB")} km)`,
      fix_lost: "Position unknown for now (no GPS signal)",
      fix_none: "Waiting for the GPS position",
      eta_now: "arriving",
      eta_in: (m) => `in ${m} min`,
      eta_past: "passed",
      until: (t) => `until ${t}`,
      from_to: (a, b) => `${a} to ${b}`,
      from: (t) => `from ${t}`,
      seats: (n) => `${n} ${plural(n, "seat available", "seats available")}`,
      few: (w) => `Few seats left: ${w}`,
      full: "Full",
      occ_value: (c, cap) => `${c} people on board, ${cap} seats`,
      urgent: "Urgent: ",
      important: "Important: ",
      saving: "Saving your request…",
      sent: "Sent. Waiting for dispatch.",
      sent_offline: "No network: your request is saved and will be sent.",
      received: "Received by dispatch.",
      failed: "Your request could not be saved. Please ask the driver or the staff.",
      limited: "Too many presses: please wait a few seconds.",
      refused: "This request is not possible here.",
      unreachable: "The kiosk is not answering. Try again in a moment.",
      about: (p) => `Question about ${p}: `,
      modes: {
        "on-demand": "On-demand service",
        "out-of-service": "Out of service",
        school: "School run",
        market: "Service market",
      },
    },
  };
  const KINDS = ["pickup", "mediator", "service"];

  let lang = "fr";
  let state = null;
  let offsetMs = 0; // daemon clock (GPS or NTP) minus this browser's clock
  let clockSource = "unsynced";
  let lastTouch = Date.now();
  let lostTimer = null;
  const mine = {}; // kind -> the last request this page made (from the POST answer)
  const notes = {}; // kind -> {key, until}: a passing note (rate limited, unreachable…)
  const busy = {}; // kind -> a press is on its way

  const $ = (id) => document.getElementById(id);
  const tr = (key, ...args) => {
    const v = TEXT[lang][key];
    return typeof v === "function" ? v(...args) : v;
  };
  const local = (text) => {
    if (text === null || text === undefined) return "";
    if (typeof text === "string") return text;
    return text[lang] || text.fr || text.en || "";
  };
  const make = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  };
  const now = () => Date.now() + offsetMs;

  function fmtTime(ms) {
    const opts = { hour: "2-digit", minute: "2-digit" };
    try {
      return new Intl.DateTimeFormat(tr("locale"), { ...opts, timeZone: state.timezone }).format(
        new Date(ms),
      );
    } catch (err) {
      return new Intl.DateTimeFormat(tr("locale"), opts).format(new Date(ms));
    }
  }

  // -- static texts and language -------------------------------------------------------

  function applyLanguage() {
    document.documentElement.lang = lang;
    document.title = state ? `${state.node.name} – ${tr("title")}` : tr("title");
    for (const e of document.querySelectorAll("[data-i18n]")) {
      e.textContent = tr(e.dataset.i18n);
    }
    const other = lang === "fr" ? "en" : "fr";
    const button = $("lang");
    button.lang = other;
    button.textContent = TEXT[other].switch_text;
    button.setAttribute("aria-label", TEXT[other].switch_label);
  }

  function setLanguage(next) {
    if (next === lang) return;
    lang = next;
    applyLanguage();
    render();
  }

  // -- rendering -----------------------------------------------------------------------

  function render() {
    applyLanguage();
    renderClock();
    if (!state) return;
    $("node-name").textContent = state.node.name;
    $("mode").textContent = TEXT[lang].modes[state.mode] || state.mode;
    renderLink();
    renderWhere();
    renderStops();
    renderOccupancy();
    renderMessages();
    renderServices();
    renderActions();
    if (window.edgedJourney) window.edgedJourney(state.journey, lang); // journey.js
  }

  function renderLink() {
    const link = $("link");
    const online = Boolean(state && state.connected);
    link.dataset.state = online ? "online" : "offline";
    $("link-text").textContent = tr(online ? "online" : "offline");
    $("offline").hidden = online;
  }

  function renderClock() {
    const clock = $("clock");
    if (!state || clockSource === "unsynced") {
      clock.textContent = "--:--";
      clock.removeAttribute("datetime");
      return;
    }
    const t = now();
    clock.textContent = fmtTime(t);
    clock.setAttribute("datetime", new Date(t).toISOString());
  }

  function renderWhere() {
    const where = state.where;
    const kind = $("where-kind");
    const line = $("where");
    if (where.stop) {
      kind.textContent = tr(`kind_${where.stop.kind}`);
      line.textContent = where.stop.name;
    } else if (where.fix === "lost") {
      kind.textContent = "";
      line.textContent = tr("fix_lost");
    } else if (where.fix === "none") {
      kind.textContent = "";
      line.textContent = state.node.profile === "shuttle" ? tr("fix_none") : "";
    } else if (where.near) {
      kind.textContent = "";
      line.textContent = tr("near", where.near.name, where.near.km);
    } else {
      kind.textContent = "";
      line.textContent = tr("on_the_way");
    }
  }

  function etaWords(etaMs) {
    const minutes = Math.round((etaMs - now()) / 60000);
    if (minutes < -1) return tr("eta_past");
    if (minutes <= 1) return tr("eta_now");
    return tr("eta_in", minutes);
  }

  function renderStops() {
    const items = state.stops.map((s) => {
      const li = make("li");
      li.append(make("span", "stop-name", s.name));
      li.append(make("span", "eta", `${fmtTime(s.eta_ms)} · ${etaWords(s.eta_ms)}`));
      return li;
    });
    $("stops").replaceChildren(...items);
    $("stops-empty").hidden = items.length > 0;
  }

  function renderOccupancy() {
    const section = $("occupancy");
    const occ = state.occupancy;
    section.hidden = !occ;
    if (!occ) return;
    section.dataset.level = occ.level;
    let words = occ.level === "full" ? tr("full") : tr("seats", occ.free);
    if (occ.level === "few") words = tr("few", words);
    $("occ-words").textContent = words;
    const gauge = $("gauge");
    gauge.setAttribute("aria-valuemax", String(occ.capacity));
    gauge.setAttribute("aria-valuenow", String(Math.min(occ.count, occ.capacity)));
    gauge.setAttribute("aria-valuetext", `${words}. ${tr("occ_value", occ.count, occ.capacity)}`);
    $("gauge-fill").style.width = `${Math.min(100, (100 * occ.count) / occ.capacity)}%`;
  }

  function pickMessages() {
    // one per id: the rider's language, else French, else whatever dispatch sent
    const byId = new Map();
    for (const m of state.messages) {
      if (m.expires_ms <= now()) continue;
      const seen = byId.get(m.id);
      const rank = (x) => (x.lang === lang ? 0 : x.lang === "fr" ? 1 : 2);
      if (!seen || rank(m) < rank(seen)) byId.set(m.id, m);
    }
    return [...byId.values()];
  }

  function renderMessages() {
    const items = pickMessages().map((m) => {
      const li = make("li", "message");
      li.dataset.priority = m.priority;
      li.dataset.id = m.id;
      li.lang = m.lang;
      if (m.priority !== "info") li.append(make("span", "prio", tr(m.priority)));
      li.append(make("span", "text", m.text));
      return li;
    });
    $("messages").replaceChildren(...items);
    $("messages-empty").hidden = items.length > 0;
  }

  function hours(s) {
    if (s.start_ms && s.until_ms) return tr("from_to", fmtTime(s.start_ms), fmtTime(s.until_ms));
    if (s.until_ms) return tr("until", fmtTime(s.until_ms));
    if (s.start_ms) return tr("from", fmtTime(s.start_ms));
    return "";
  }

  function renderServices() {
    $("place").textContent = local(state.place);
    $("place").hidden = !state.place;
    const canAsk = state.buttons.includes("service");
    const items = state.services.map((s) => {
      const li = make("li", "service");
      li.dataset.id = s.id;
      li.append(make("span", "provider", s.provider));
      const detail = [local(s.what), local(s.where), hours(s)].filter(Boolean).join(" · ");
      if (detail) li.append(make("span", "detail", detail));
      if (canAsk) {
        const ask = make("button", "ask", tr("ask"));
        ask.type = "button";
        ask.setAttribute("aria-label", tr("ask_label", s.provider));
        ask.addEventListener("click", () => press("service", s.id));
        li.append(ask);
      }
      return li;
    });
    $("services").replaceChildren(...items);
    $("services-empty").hidden = items.length > 0;
  }

  function latest(kind) {
    // the daemon's record wins (it has the newest status); else what this page was told
    const fromState = state ? state.requests.find((r) => r.kind === kind) : undefined;
    const own = mine[kind];
    if (own && (!fromState || fromState.made_ms < own.made_ms)) return own;
    return fromState;
  }

  function statusOf(kind) {
    const note = notes[kind];
    if (note && note.until > Date.now()) return { key: note.key, words: tr(note.key) };
    const r = latest(kind);
    if (!r) return { key: "", words: "" };
    let key = r.status;
    if (r.status === "sent" && !(state && state.connected)) key = "offline";
    const words = tr(key === "offline" ? "sent_offline" : r.status);
    const about = r.service ? tr("about", r.service) : "";
    const note2 = r.status === "received" && r.note ? `\n${r.note}` : "";
    return { key, words: `${about}${words}${note2}` };
  }

  function renderActions() {
    for (const kind of KINDS) {
      const box = document.querySelector(`.action[data-kind="${kind}"]`);
      box.hidden = !state.buttons.includes(kind);
      const status = $(`status-${kind}`);
      const { key, words } = statusOf(kind);
      if (status.dataset.status !== key || status.textContent !== words) {
        status.dataset.status = key;
        status.textContent = words;
      }
    }
  }

  // -- rider presses -------------------------------------------------------------------

  function note(kind, key, seconds) {
    notes[kind] = { key, until: Date.now() + seconds * 1000 };
    if (state) renderActions();
    setTimeout(() => state && renderActions(), seconds * 1000 + 50);
  }

  async function press(kind, serviceId) {
    lastTouch = Date.now();
    if (busy[kind]) return;
    busy[kind] = true;
    const button = document.querySelector(`.press[data-kind="${kind}"]`);
    button.setAttribute("aria-busy", "true");
    try {
      const body = { kind, lang };
      if (serviceId) body.service_id = serviceId;
      const answer = await fetch("/api/requests", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        cache: "no-store",
      });
      if (answer.status === 429) {
        const wait = Number(answer.headers.get("Retry-After")) || 5;
        note(kind, "limited", Math.min(wait, 30));
      } else if (!answer.ok) {
        note(kind, answer.status >= 500 ? "unreachable" : "refused", 8);
      } else {
        const data = await answer.json();
        mine[kind] = data.request;
        delete notes[kind];
        if (state) {
          state.connected = data.connected;
          renderLink();
          renderActions();
        }
      }
    } catch (err) {
      note(kind, "unreachable", 8);
    } finally {
      busy[kind] = false;
      button.removeAttribute("aria-busy");
    }
  }

  // -- live state ----------------------------------------------------------------------

  function sync(data) {
    offsetMs = data.now_ms - Date.now();
    clockSource = data.clock;
  }

  function lost(isLost) {
    if (!isLost) {
      clearTimeout(lostTimer);
      lostTimer = null;
      $("lost").hidden = true;
      if (state) renderLink();
      return;
    }
    if (lostTimer !== null || !$("lost").hidden) return; // each retry fails again: one timer
    // a restart of the daemon takes a moment: do not flash the banner for a blip
    lostTimer = setTimeout(() => {
      lostTimer = null;
      $("lost").hidden = false;
      $("link").dataset.state = "unknown"; // the page cannot know the network state now
      $("link-text").textContent = tr("connecting");
    }, 1500);
  }

  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("state", (e) => {
      const data = JSON.parse(e.data);
      sync(data);
      state = data;
      lost(false);
      render();
    });
    source.addEventListener("tick", (e) => {
      sync(JSON.parse(e.data));
      renderClock();
    });
    source.addEventListener("open", () => lost(false));
    source.addEventListener("error", () => {
      lost(true);
      if (source.readyState === EventSource.CLOSED) {
        // refused (too many pages, a proxy…): EventSource gives up; we do not
        setTimeout(connect, 3000);
      }
    });
  }

  function everySecond() {
    renderClock();
    if (!state) return;
    if (lang !== "fr" && Date.now() - lastTouch > state.idle_reset_s * 1000) {
      setLanguage("fr"); // the next rider starts in French
    }
    if (new Date().getSeconds() % 15 === 0) {
      renderStops(); // "in 5 min" moves on
      renderMessages();
    }
  }

  function start() {
    $("lang").addEventListener("click", () => {
      lastTouch = Date.now();
      setLanguage(lang === "fr" ? "en" : "fr");
    });
    for (const button of document.querySelectorAll(".press")) {
      button.addEventListener("click", () => press(button.dataset.kind, null));
    }
    for (const type of ["pointerdown", "keydown"]) {
      document.addEventListener(type, () => {
        lastTouch = Date.now();
      });
    }
    applyLanguage();
    connect();
    setInterval(everySecond, 1000);
  }

  start();
})();
