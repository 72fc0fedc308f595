// Info kiosk page: live state from the daemon (Server-Sent Events), rider buttons.
// Text only: every string from the daemon goes through textContent, never HTML (the
// Content-Security-Policy forbids HTML sinks anyway). No build step, no external files.
//
// Each state push updates only what changed: list items are kept by key and their texts
// are rewritten only when they differ, so a focused button stays focused and a screen
// reader is not read the whole screen again. What a screen reader is told of its own accord
// goes through #announce (#alert for urgent announcements), once per change, in words
// written for it: the stop reached, the next stop, a new announcement, a change of seat level.
"use strict";

(() => {
  const plural = (n, one, many) => (n === 1 ? one : many);

  // "de" before a French place name: "près d'Ahun", "près du Grand-Bourg", "près des Mars",
  // "près de La Souterraine". An h is not elided: an aspirated h cannot be told from a mute
  // one by its spelling (Honfleur, Hendaye), and "de H…" is the smaller mistake.
  function deFr(name) {
    const article = /^(Le|Les)\s+(\S.*)$/u.exec(name);
    if (article) return [article[1] === "Le" ? "du " : "des ", article[2]];
    if (/^[aeiouyàâäéèêëîïôöùûüÿœæ]/iu.test(name)) return ["d'", name];
    return ["de ", name];
  }

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
        "Pas de réseau : vos demandes partiront dès son retour.",
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
      near: (name) => {
        const [de, rest] = deFr(name);
        return [`En route, près ${de}`, { text: rest, fr: true }];
      },
      km: (km) => ` (${km.toLocaleString("fr-FR")}\u00a0km)`,
      fix_lost: "Position inconnue pour le moment (pas de signal GPS)",
      fix_none: "Position en attente du GPS",
      eta_now: "à l'approche",
      eta_in: (m) => `dans ${m} min`,
      eta_past: "passé",
      yesterday: (t) => `hier ${t}`,
      tomorrow: (t) => `demain ${t}`,
      until: (t) => `jusqu'à ${t}`,
      from_to: (a, b) => `de ${a} à ${b}`,
      since_until: (a, b) => `depuis ${a}, jusqu'à ${b}`,
      from: (t) => `à partir de ${t}`,
      since: (t) => `depuis ${t}`,
      seats: (n) => `${n} ${plural(n, "place disponible", "places disponibles")}`,
      few: (w) => `Peu de places : ${w}`,
      full: "Complet",
      occ_value: (c, cap) => `${c} personnes à bord sur ${cap} places`,
      urgent: "Urgent : ",
      important: "Important : ",
      said_arrived: (kind) => `${kind} : `,
      said_next: "Prochain arrêt : ",
      said_at: (t) => `, vers ${t}.`,
      said_message: "Nouvelle annonce : ",
      saving: "Enregistrement…",
      sent: "Envoyé. En attente de la régulation.",
      sent_offline: "Pas de réseau : envoi plus tard.",
      received: "Reçu par la régulation.",
      failed: "Échec : adressez-vous au chauffeur ou à l'accueil.",
      limited: "Trop d'appuis : patientez un peu.",
      refused: "Pas possible ici.",
      unreachable: "La borne ne répond pas. Réessayez.",
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
        "No network: your requests will be sent when it is back.",
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
      near: (name) => ["On the way, near ", { text: name, fr: true }],
      km: (km) => ` (${km.toLocaleString("en-GB")}\u00a0km)`,
      fix_lost: "Position unknown for now (no GPS signal)",
      fix_none: "Waiting for the GPS position",
      eta_now: "arriving",
      eta_in: (m) => `in ${m} min`,
      eta_past: "passed",
      yesterday: (t) => `yesterday ${t}`,
      tomorrow: (t) => `tomorrow ${t}`,
      until: (t) => `until ${t}`,
      from_to: (a, b) => `${a} to ${b}`,
      since_until: (a, b) => `since ${a}, until ${b}`,
      from: (t) => `from ${t}`,
      since: (t) => `since ${t}`,
      seats: (n) => `${n} ${plural(n, "seat available", "seats available")}`,
      few: (w) => `Few seats left: ${w}`,
      full: "Full",
      occ_value: (c, cap) => `${c} people on board, ${cap} seats`,
      urgent: "Urgent: ",
      important: "Important: ",
      said_arrived: (kind) => `${kind}: `,
      said_next: "Next stop: ",
      said_at: (t) => `, at about ${t}.`,
      said_message: "New announcement: ",
      saving: "Saving…",
      sent: "Sent. Waiting for dispatch.",
      sent_offline: "No network: sent later.",
      received: "Received by dispatch.",
      failed: "Failed: please ask the driver or the staff.",
      limited: "Too many presses: please wait.",
      refused: "Not possible here.",
      unreachable: "The kiosk is not answering. Try again.",
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
  // Durations (a silent stream, an idle screen, a note's seconds) are measured on the
  // monotonic clock: the screen's browser shares the Pi's wall clock, which NTP steps (hours
  // back: an idle reset and a dead stream's watchdog waited for hours; forward: at once).
  const elapsed = () => performance.now();
  let offsetMs = 0; // daemon clock (GPS or NTP) minus this browser's clock
  let clockSource = "unsynced";
  let lastTouch = elapsed();
  let idled = false; // the screen was reset for the next rider since the last touch
  let lostTimer = null;
  let source = null; // the live stream (EventSource)
  let heardAt = 0; // elapsed() when the stream last said anything (a state or a tick)
  let retry = null; // the pending new stream after one was refused (setTimeout)
  let heard = null; // what screen readers were last told about (see `tell`)
  const mine = {}; // "kind|service" -> the last request this page made (from the POST answer)
  const notes = {}; // "kind|service" -> {key, until}: a passing note (saving, rate limited…)
  const busy = {}; // "kind|service" -> a press is on its way
  const hiddenRequests = new Set(); // request ids of riders before the last idle reset

  const $ = (id) => document.getElementById(id);
  const tr = (key, ...args) => {
    const v = TEXT[lang][key];
    return typeof v === "function" ? v(...args) : v;
  };
  const now = () => Date.now() + offsetMs;
  const slot = (kind, serviceId) => `${kind}|${serviceId || ""}`;

  // -- writing only what changed -------------------------------------------------------

  function setText(el, text) {
    const value = text === null || text === undefined ? "" : String(text);
    if (el.textContent === value && el.children.length === 0) return;
    if (el.childNodes.length === 1 && el.firstChild.nodeType === Node.TEXT_NODE) {
      el.firstChild.data = value; // a text change, not a new node
    } else {
      el.textContent = value;
    }
  }

  function setAttr(el, name, value) {
    if (value === null || value === undefined || value === false) {
      if (el.hasAttribute(name)) el.removeAttribute(name);
    } else if (el.getAttribute(name) !== String(value)) {
      el.setAttribute(name, String(value));
    }
  }

  function setHidden(el, hidden) {
    if (el.hidden !== hidden) el.hidden = hidden;
  }

  // parts: strings (the page's words), or {text, fr} for a text from the daemon (a name,
  // dispatch's words; fr: true for French, lang="fr" on an English page). Each text from
  // the daemon is isolated (dir="auto"): a Hebrew or Arabic name takes its own direction
  // and leaves the words around it in their place ("חדר · 09:00 to 12:00" drew the
  // separator and the hours before the name).
  function setParts(el, parts) {
    const list = parts.map((p) => (typeof p === "string" ? { text: p, page: true } : p));
    const sig = JSON.stringify([lang, list]);
    if (el.dataset.sig === sig) return;
    el.dataset.sig = sig;
    const nodes = list.map((p) => {
      if (p.page) return document.createTextNode(p.text);
      const span = document.createElement("span");
      span.dir = "auto";
      if (p.fr && lang !== "fr") span.lang = "fr";
      span.textContent = p.text;
      return span;
    });
    el.replaceChildren(...nodes);
  }

  function make(tag, cls) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    return e;
  }

  // Keep list items by key: reuse, update, insert the new, remove the gone. A focused
  // element that had to move gets its focus back.
  function syncList(list, items, keyOf, create, update) {
    const focused = document.activeElement;
    const old = new Map();
    for (const el of list.children) old.set(el.dataset.key, el);
    let before = list.firstElementChild;
    for (const item of items) {
      const key = keyOf(item);
      let el = old.get(key);
      if (el) {
        old.delete(key);
      } else {
        el = create(item);
        el.dataset.key = key;
      }
      update(el, item);
      if (el !== before) list.insertBefore(el, before);
      else before = before.nextElementSibling;
    }
    for (const el of old.values()) {
      if (el.contains(focused)) moveFocusOut(list);
      el.remove();
    }
    if (focused && focused !== document.activeElement && focused.isConnected) {
      focused.focus({ preventScroll: true });
    }
  }

  function moveFocusOut(list) {
    const section = list.closest("section");
    const heading = section && section.querySelector("h2");
    if (!heading) return;
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }

  // -- text from dispatch ----------------------------------------------------------------

  // A per-language text in the rider's language, else French, else English. A plain string
  // is a name as dispatch wrote it, taken as French (stops, places, providers).
  function local(text) {
    if (text === null || text === undefined) return null;
    if (typeof text === "string") return { text: clean(text), fr: true };
    if (text[lang]) return { text: clean(text[lang]), fr: lang === "fr" };
    if (text.fr) return { text: clean(text.fr), fr: true };
    return text.en ? { text: clean(text.en), fr: false } : null;
  }

  function setLangOf(el, isFrench) {
    setAttr(el, "lang", isFrench && lang !== "fr" ? "fr" : null);
  }

  // Emoji: drawn by the screen's emoji font (fonts-noto-color-emoji); one the screen cannot
  // draw is dropped, never shown as an empty box.
  const EMOJI =
    /\u{1F3F4}[\u{E0020}-\u{E007E}]+\u{E007F}|\p{RI}\p{RI}|[#*0-9]\uFE0F?\u20E3|\p{Extended_Pictographic}(?:\p{EMod}|\uFE0F|\u200D\p{Extended_Pictographic}\uFE0F?)*/gu;
  const drawable = new Map();
  let canvas = null;

  function pixels(text) {
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.fillText(text, 4, 4);
    return ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  }

  function canDraw(emoji) {
    if (!drawable.has(emoji)) {
      if (!canvas) {
        canvas = document.createElement("canvas");
        canvas.width = 48;
        canvas.height = 48;
        const ctx = canvas.getContext("2d", { willReadFrequently: true });
        ctx.font = `32px ${getComputedStyle(document.body).fontFamily}`;
        ctx.textBaseline = "top";
      }
      const missing = pixels("\u{10FFFD}"); // no font has it: the "missing glyph" box
      const drawn = pixels(emoji);
      let same = true;
      for (let i = 0; i < drawn.length && same; i++) same = drawn[i] === missing[i];
      drawable.set(emoji, !same);
    }
    return drawable.get(emoji);
  }

  // At most MAX_MARKS combining marks on one character, as the daemon keeps them
  // (edged/kiosk/marks.py): "A" and 200 marks ("zalgo") is one character a line cannot
  // break, wider than its region, its marks drawn over the regions around it. Joiners
  // between marks neither count nor end the run.
  const MAX_MARKS = 4;
  const MARK_RUN = /\p{M}(?:[\u200C\u200D]*\p{M})+/gu;

  function capMarks(text) {
    return text.replace(MARK_RUN, (run) => {
      if (run.replace(/[\u200C\u200D]/gu, "").length <= MAX_MARKS) return run;
      let marks = 0;
      let out = "";
      for (const ch of run) {
        if (ch !== "\u200C" && ch !== "\u200D") marks += 1;
        if (marks > MAX_MARKS) break;
        out += ch;
      }
      return out;
    });
  }

  // At most MAX_CLUSTER code points in one grapheme cluster, what a line breaker takes as
  // one character: without a single mark, 240 Hangul jamo, a chain of 120 emoji joined by
  // ZWJ or 200 prepended Malayalam rephs are one, thousands of pixels wide on one line.
  // The longest emoji (a kiss or a couple with two skin tones) is 10 code points; a
  // letter with its MAX_MARKS marks, a Hangul syllable, an Indic conjunct are fewer. Past
  // that the cluster keeps its first MAX_CLUSTER (the daemon cannot segment: no ICU).
  const MAX_CLUSTER = 10;
  const graphemes =
    typeof Intl.Segmenter === "function" ? new Intl.Segmenter("und", { granularity: "grapheme" }) : null;

  function capClusters(text) {
    if (!graphemes || !/[^\x00-\x7F]/.test(text)) return text;
    let cut = false;
    const out = [];
    for (const { segment } of graphemes.segment(text)) {
      if (segment.length <= MAX_CLUSTER) {
        out.push(segment); // UTF-16 units: never fewer than the code points
        continue;
      }
      const points = [...segment];
      cut ||= points.length > MAX_CLUSTER;
      out.push(points.slice(0, MAX_CLUSTER).join(""));
    }
    return cut ? out.join("") : text;
  }

  // Lines from dispatch are kept (announcements and notes are shown pre-line), but a run
  // of blank lines is one: 300 pasted made an announcement 300 lines tall.
  const BLANK_LINES = /\n[ \t]*(?:\n[ \t]*){2,}/g;

  // Every text from the daemon as the screen shows it: marks capped, blank lines
  // collapsed, emoji the screen cannot draw dropped.
  function clean(raw) {
    const text = capClusters(capMarks(raw)).replace(BLANK_LINES, "\n\n");
    if (!/[\p{Extended_Pictographic}\p{RI}\u20E3]/u.test(text)) return text;
    let dropped = false;
    const out = text.replace(EMOJI, (e) => {
      if (canDraw(e)) return e;
      dropped = true;
      return "";
    });
    if (!dropped) return text;
    return out.replace(/[ \t]{2,}/g, " ").replace(/^[ \t]+|[ \t]+$/gm, "");
  }

  // -- times -----------------------------------------------------------------------------

  function zoned(opts) {
    try {
      return new Intl.DateTimeFormat(tr("locale"), { ...opts, timeZone: state.timezone });
    } catch (err) {
      return new Intl.DateTimeFormat(tr("locale"), opts);
    }
  }

  function fmtTime(ms) {
    return zoned({ hour: "2-digit", minute: "2-digit" }).format(new Date(ms));
  }

  function dayNumber(ms) {
    const parts = {};
    for (const p of zoned({ year: "numeric", month: "numeric", day: "numeric" }).formatToParts(
      new Date(ms),
    )) {
      parts[p.type] = Number(p.value);
    }
    return Date.UTC(parts.year, parts.month - 1, parts.day) / 86400000;
  }

  // The node's clock is not synchronised (no NTP, no GPS fix yet): a Pi without a battery
  // may be hours or days off. The times dispatch sent are true, "in 5 min", "yesterday" or
  // "since" against that clock are not: the page then shows the times alone.
  const clockKnown = () => clockSource !== "unsynced";

  // "18:49" today; "hier 18:49", "demain 09:00"; else "lun. 3 mars 18:49"
  function when(ms) {
    const time = fmtTime(ms);
    if (!clockKnown()) return time;
    const days = dayNumber(ms) - dayNumber(now());
    if (days === 0) return time;
    if (days === -1) return tr("yesterday", time);
    if (days === 1) return tr("tomorrow", time);
    const date = zoned({ weekday: "short", day: "numeric", month: "short" }).format(new Date(ms));
    return `${date} ${time}`;
  }

  function hours(s) {
    const started = clockKnown() && s.start_ms && s.start_ms <= now();
    const today = !clockKnown() || (s.start_ms && dayNumber(s.start_ms) === dayNumber(now()));
    if (s.start_ms && s.until_ms) {
      return today ? tr("from_to", when(s.start_ms), when(s.until_ms))
        : started ? tr("since_until", when(s.start_ms), when(s.until_ms))
        : tr("from_to", when(s.start_ms), when(s.until_ms));
    }
    if (s.until_ms) return tr("until", when(s.until_ms));
    if (s.start_ms) return started ? tr("since", when(s.start_ms)) : tr("from", when(s.start_ms));
    return "";
  }

  function etaWords(etaMs) {
    if (!clockKnown()) return "";
    const minutes = Math.round((etaMs - now()) / 60000);
    if (minutes < -1) return tr("eta_past");
    if (minutes <= 1) return tr("eta_now");
    return tr("eta_in", minutes);
  }

  // -- static texts and language -------------------------------------------------------

  function applyLanguage() {
    setAttr(document.documentElement, "lang", lang);
    const title = state ? `${clean(state.node.name)} – ${tr("title")}` : tr("title");
    if (document.title !== title) document.title = title;
    for (const e of document.querySelectorAll("[data-i18n]")) setText(e, tr(e.dataset.i18n));
    const other = lang === "fr" ? "en" : "fr";
    const button = $("lang");
    setAttr(button, "lang", other);
    setText(button, TEXT[other].switch_text);
    setAttr(button, "aria-label", TEXT[other].switch_label);
  }

  function setLanguage(next) {
    if (next === lang) return;
    lang = next;
    render();
    heard = hearing(); // the same news in the other language is not news
  }

  // -- rendering -----------------------------------------------------------------------

  function render() {
    applyLanguage();
    renderClock();
    if (!state) return;
    setText($("node-name"), clean(state.node.name));
    setText($("mode"), TEXT[lang].modes[state.mode] || state.mode);
    renderLink();
    renderWhere();
    renderStops();
    renderOccupancy();
    renderMessages();
    renderServices();
    renderActions();
    if (window.edgedJourney) window.edgedJourney(state.journey, lang); // journey.js
    markScreen();
    fitRegions();
  }

  function renderLink() {
    const link = $("link");
    const online = Boolean(state && state.connected);
    link.dataset.state = online ? "online" : "offline";
    setText($("link-text"), tr(online ? "online" : "offline"));
    setHidden($("offline"), online);
  }

  function renderClock() {
    const clock = $("clock");
    if (!state || clockSource === "unsynced") {
      setText(clock, "--:--");
      setAttr(clock, "datetime", null);
      return;
    }
    const t = now();
    setText(clock, fmtTime(t));
    setAttr(clock, "datetime", new Date(Math.floor(t / 60000) * 60000).toISOString());
  }

  function renderWhere() {
    const where = state.where;
    const kind = $("where-kind");
    const line = $("where");
    if (where.stop) {
      setText(kind, tr(`kind_${where.stop.kind}`));
      setParts(line, [{ text: clean(where.stop.name), fr: true }]);
    } else if (where.fix === "lost") {
      setText(kind, "");
      setParts(line, [tr("fix_lost")]);
    } else if (where.fix === "none") {
      setText(kind, "");
      setParts(line, [state.node.profile === "shuttle" ? tr("fix_none") : ""]);
    } else if (where.near) {
      setText(kind, "");
      setParts(line, [...tr("near", clean(where.near.name)), tr("km", where.near.km)]);
    } else {
      setText(kind, "");
      setParts(line, [tr("on_the_way")]);
    }
  }

  function stopKeys(stops) {
    const seen = new Map();
    return stops.map((s) => {
      const n = seen.get(s.name) || 0;
      seen.set(s.name, n + 1);
      return `${s.name}#${n}`; // a loop may pass the same stop twice
    });
  }

  function renderStops() {
    const keys = stopKeys(state.stops);
    const items = state.stops.map((s, i) => ({ ...s, key: keys[i] }));
    syncList(
      $("stops"),
      items,
      (s) => s.key,
      () => {
        const li = make("li");
        const name = make("span", "stop-name");
        name.dir = "auto";
        const eta = make("span", "eta");
        const sep = make("span", "sep");
        sep.textContent = " · ";
        eta.append(make("span", "at"), sep, make("span", "in"));
        li.append(name, eta);
        return li;
      },
      (li, s) => {
        const name = li.querySelector(".stop-name");
        setText(name, clean(s.name));
        setLangOf(name, true);
        setText(li.querySelector(".at"), when(s.eta_ms));
        const words = etaWords(s.eta_ms);
        setText(li.querySelector(".in"), words);
        setHidden(li.querySelector(".in"), !words);
        setHidden(li.querySelector(".sep"), !words);
      },
    );
    setHidden($("stops-empty"), items.length > 0);
  }

  function occupancyWords(occ) {
    let words = occ.level === "full" ? tr("full") : tr("seats", occ.free);
    if (occ.level === "few") words = tr("few", words);
    return words;
  }

  function renderOccupancy() {
    const section = $("occupancy");
    const occ = state.occupancy;
    setHidden(section, !occ);
    if (!occ) return;
    section.dataset.level = occ.level;
    const words = occupancyWords(occ);
    setText($("occ-words"), words);
    const gauge = $("gauge");
    setAttr(gauge, "aria-valuemax", occ.capacity);
    setAttr(gauge, "aria-valuenow", Math.min(occ.count, occ.capacity));
    setAttr(gauge, "aria-valuetext", `${words}. ${tr("occ_value", occ.count, occ.capacity)}`);
    const width = `${Math.min(100, (100 * occ.count) / occ.capacity)}%`;
    if ($("gauge-fill").style.width !== width) $("gauge-fill").style.width = width;
  }

  function pickMessages() {
    // one per id: the rider's language, else French, else whatever dispatch sent
    const byId = new Map();
    const rank = (x) => (x.lang === lang ? 0 : x.lang === "fr" ? 1 : 2);
    for (const m of state.messages) {
      if (m.expires_ms <= now()) continue;
      const seen = byId.get(m.id);
      if (!seen || rank(m) < rank(seen)) byId.set(m.id, m);
    }
    return [...byId.values()];
  }

  function renderMessages() {
    const items = pickMessages();
    syncList(
      $("messages"),
      items,
      (m) => m.id,
      () => {
        const li = make("li", "message");
        li.dir = "auto"; // Arabic, Hebrew… laid out right to left, from the text's own letters
        const prio = make("span", "prio");
        prio.dir = "ltr"; // the page's words: skipped when the direction is found
        li.append(prio, make("span", "text"));
        return li;
      },
      (li, m) => {
        setAttr(li, "data-priority", m.priority);
        setAttr(li, "data-id", m.id);
        const prio = li.querySelector(".prio");
        setHidden(prio, m.priority === "info");
        setText(prio, m.priority === "info" ? "" : tr(m.priority));
        const text = li.querySelector(".text");
        setAttr(text, "lang", m.lang);
        setText(text, clean(m.text));
      },
    );
    setHidden($("messages-empty"), items.length > 0);
  }

  function renderServices() {
    const place = local(state.place);
    setText($("place"), place ? place.text : "");
    setLangOf($("place"), place && place.fr);
    setHidden($("place"), !place);
    const canAsk = state.buttons.includes("service");
    syncList(
      $("services"),
      state.services,
      (s) => s.id,
      (s) => {
        const li = make("li", "service");
        const provider = make("p", "provider");
        provider.dir = "auto";
        const detail = make("p", "detail");
        const ask = make("button", "ask");
        ask.type = "button";
        const status = make("p", "req-status");
        status.setAttribute("role", "status");
        status.id = `status-service-${s.id}`;
        ask.setAttribute("aria-describedby", status.id);
        ask.addEventListener("click", () => press("service", li.dataset.key, ask));
        li.append(provider, detail, ask, status);
        return li;
      },
      (li, s) => {
        const provider = li.querySelector(".provider");
        setText(provider, clean(s.provider));
        setLangOf(provider, true);
        const parts = [];
        for (const part of [local(s.what), local(s.where), { text: hours(s), page: true }]) {
          if (!part || !part.text) continue;
          if (parts.length) parts.push(" · ");
          parts.push(part);
        }
        const detail = li.querySelector(".detail");
        setParts(detail, parts);
        setHidden(detail, parts.length === 0);
        const ask = li.querySelector(".ask");
        setHidden(ask, !canAsk);
        setText(ask, tr("ask"));
        setAttr(ask, "aria-label", tr("ask_label", clean(s.provider)));
        li.dataset.id = s.id;
        renderStatus(li.querySelector(".req-status"), "service", s.id);
      },
    );
    setHidden($("services-empty"), state.services.length > 0);
  }

  function latest(kind, serviceId) {
    // the daemon's record wins (it has the newest status); else what this page was told
    const sid = serviceId || null;
    const fromState = state
      ? state.requests.find((r) => r.kind === kind && (r.service_id || null) === sid)
      : undefined;
    const own = mine[slot(kind, serviceId)];
    const pick = own && (!fromState || fromState.made_ms < own.made_ms) ? own : fromState;
    return pick && !hiddenRequests.has(pick.request_id) ? pick : undefined;
  }

  function statusOf(kind, serviceId) {
    const note = notes[slot(kind, serviceId)];
    if (note && note.until > elapsed()) return { key: note.key, words: tr(note.key) };
    const r = latest(kind, serviceId);
    if (!r) return { key: "", words: "" };
    let key = r.status;
    if (r.status === "sent" && !(state && state.connected)) key = "offline";
    const words = tr(key === "offline" ? "sent_offline" : r.status);
    const about = r.service && !serviceId ? tr("about", clean(r.service)) : "";
    const note2 = r.status === "received" && r.note ? `\n${clean(r.note)}` : "";
    return { key, words: `${about}${words}${note2}` };
  }

  function renderStatus(el, kind, serviceId) {
    const { key, words } = statusOf(kind, serviceId);
    setAttr(el, "data-status", key);
    setText(el, words);
  }

  function renderActions() {
    for (const kind of KINDS) {
      const box = document.querySelector(`.action[data-kind="${kind}"]`);
      setHidden(box, !state.buttons.includes(kind));
      renderStatus($(`status-${kind}`), kind, null);
    }
    for (const li of $("services").children) {
      renderStatus(li.querySelector(".req-status"), "service", li.dataset.key);
    }
  }

  // A region that overflows scrolls by keyboard too: it becomes a tab stop (WCAG 2.1.1).
  function fitRegions() {
    for (const el of document.querySelectorAll("[data-scroll]")) {
      const scrolls = el.scrollHeight > el.clientHeight + 1 && getComputedStyle(el).overflowY !== "visible";
      if (scrolls) setAttr(el, "tabindex", "0");
      else if (document.activeElement !== el) setAttr(el, "tabindex", null);
    }
  }

  // -- telling screen readers ------------------------------------------------------------

  function hearing() {
    const here = state.where.stop;
    const next = state.stops.find((s) => s.eta_ms >= now() - 60000 && (!here || s.name !== here.name));
    return {
      stop: here ? here.id : null,
      next: next ? stopKeys(state.stops)[state.stops.indexOf(next)] : null,
      nextStop: next,
      level: state.occupancy ? state.occupancy.level : null,
      messages: new Set(pickMessages().map((m) => `${m.id}|${m.lang}|${m.text}`)),
    };
  }

  function say(el, text) {
    if (!text) return;
    if (el.textContent === text) {
      el.textContent = ""; // the same words again: let the reader notice a change
      requestAnimationFrame(() => setText(el, text));
    } else {
      setText(el, text);
    }
  }

  function tell() {
    const was = heard;
    heard = hearing();
    if (!was) return; // the first state is the page itself, read as the rider wishes
    const polite = [];
    const urgent = [];
    const here = state.where.stop;
    if (heard.stop !== was.stop && here) {
      polite.push(`${tr("said_arrived", tr(`kind_${here.kind}`))}${clean(here.name)}.`);
    }
    if (heard.next !== was.next && heard.next) {
      const next = heard.nextStop;
      polite.push(`${tr("said_next")}${clean(next.name)}${tr("said_at", when(next.eta_ms))}`);
    }
    if (heard.level !== was.level && heard.level && was.level) {
      polite.push(`${occupancyWords(state.occupancy)}.`);
    }
    for (const m of pickMessages()) {
      if (was.messages.has(`${m.id}|${m.lang}|${m.text}`)) continue;
      const prio = m.priority === "info" ? "" : tr(m.priority);
      (m.priority === "urgent" ? urgent : polite).push(`${tr("said_message")}${prio}${clean(m.text)}`);
    }
    say($("announce"), polite.join(" "));
    say($("alert"), urgent.join(" "));
  }

  // -- rider presses -------------------------------------------------------------------

  function note(kind, serviceId, key, seconds) {
    notes[slot(kind, serviceId)] = { key, until: elapsed() + seconds * 1000 };
    if (state) renderActions();
    setTimeout(() => state && renderActions(), seconds * 1000 + 50);
  }

  function showBeside(button) {
    // the words appear next to the pressed button: bring them into its region's view
    const box = button.closest("li") || button.closest(".action");
    const status = box && box.querySelector(".req-status");
    if (status) status.scrollIntoView({ block: "nearest" });
  }

  async function press(kind, serviceId, source) {
    lastTouch = elapsed();
    idled = false;
    const id = slot(kind, serviceId);
    if (busy[id]) return;
    busy[id] = true;
    const button = source || document.querySelector(`.press[data-kind="${kind}"]`);
    button.setAttribute("aria-busy", "true");
    note(kind, serviceId, "saving", 30);
    showBeside(button);
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
        note(kind, serviceId, "limited", Math.min(wait, 30));
      } else if (!answer.ok) {
        note(kind, serviceId, answer.status >= 500 ? "unreachable" : "refused", 8);
      } else {
        const data = await answer.json();
        mine[id] = data.request;
        hiddenRequests.delete(data.request.request_id); // pressed again: show it again
        delete notes[id];
        if (state) {
          state.connected = data.connected;
          renderLink();
          renderActions();
        }
      }
    } catch (err) {
      note(kind, serviceId, "unreachable", 8);
    } finally {
      busy[id] = false;
      button.removeAttribute("aria-busy");
      showBeside(button);
    }
  }

  // The next rider finds the screen as new: French, no earlier request's status, every
  // region scrolled back to the top, no focus left on a button.
  function resetForNextRider() {
    if (state) {
      for (const r of state.requests) hiddenRequests.add(r.request_id);
    }
    for (const r of Object.values(mine)) hiddenRequests.add(r.request_id);
    for (const key of Object.keys(notes)) delete notes[key];
    if (lang !== "fr") setLanguage("fr");
    for (const el of document.querySelectorAll("[data-scroll]")) el.scrollTop = 0;
    window.scrollTo(0, 0);
    if (document.activeElement && document.activeElement !== document.body) {
      document.activeElement.blur();
    }
    if (state) renderActions();
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
      setHidden($("lost"), true);
      if (state) renderLink();
      return;
    }
    if (lostTimer !== null || !$("lost").hidden) return; // each retry fails again: one timer
    // a restart of the daemon takes a moment: do not flash the banner for a blip
    lostTimer = setTimeout(() => {
      lostTimer = null;
      setHidden($("lost"), false);
      setHidden($("offline"), true); // the page cannot know the network state now
      $("link").dataset.state = "unknown";
      setText($("link-text"), tr("connecting"));
      fitRegions();
    }, 1500);
  }

  function connect() {
    // one stream a page: the watchdog's new stream and the retry after a refusal (the
    // browser's own retry, back in the wifi after a silence) would otherwise both open one
    clearTimeout(retry);
    retry = null;
    if (source) source.close();
    const stream = new EventSource("/api/events");
    source = stream;
    heardAt = elapsed();
    stream.addEventListener("state", (e) => {
      heardAt = elapsed();
      const data = JSON.parse(e.data);
      sync(data);
      state = data;
      lost(false);
      render();
      tell();
    });
    stream.addEventListener("tick", (e) => {
      heardAt = elapsed();
      sync(JSON.parse(e.data));
      renderClock();
    });
    stream.addEventListener("open", () => lost(false));
    stream.addEventListener("error", () => {
      lost(true);
      if (stream.readyState === EventSource.CLOSED && stream === source) {
        // refused (too many pages, a proxy…): EventSource gives up; we do not
        retry = setTimeout(connect, 3000);
      }
    });
  }

  // A stream can die without an error: a phone walked out of the wifi and back, a daemon
  // that hangs. The daemon speaks every heartbeat_s; silent for two of them and more, the
  // page says it lost the kiosk (not "online" over old times) and opens a new stream.
  function watchStream() {
    const beat = state && state.heartbeat_s > 0 ? state.heartbeat_s : 15;
    if (!source || elapsed() - heardAt <= (2 * beat + 5) * 1000) return;
    source.close();
    lost(true);
    connect();
  }

  function everySecond() {
    renderClock();
    watchStream();
    if (!state) return;
    // idle_reset_s is null on a rider's own phone (the captive portal): no reset there
    const idle = state.idle_reset_s;
    if (!idled && idle !== null && elapsed() - lastTouch > idle * 1000) {
      idled = true;
      resetForNextRider();
    }
    if (new Date().getSeconds() % 15 === 0) {
      renderStops(); // "in 5 min" moves on
      renderMessages();
      renderServices();
      fitRegions();
    }
  }

  // A visitor at the screen (DESIGN.md rule 7) gets no browser menu from a long press or a
  // right click ("Save as", "Print", "Inspect": a file dialog is a way out of the kiosk), no
  // browser shortcut from a keyboard plugged in (Ctrl, Alt or Meta with any key, a function
  // key: a file or print dialog, history, downloads and their "show in folder", developer
  // tools, help, zoom), no new window, tab or download from a link (Shift, Ctrl, Alt, a middle
  // click), no zoom (a pinch, Ctrl and the wheel: it stayed for the next rider, a reload
  // kept it) and no text left selected (kiosk.css, html[data-screen]), and cannot drop a link
  // or a file on the page to open it. Riders' phones on the portal (idle_reset_s null) keep
  // their menus, shortcuts, zoom and selection; nothing dropped opens anywhere. The
  // browser's own lock-down: docs/kiosk.md. The portal's page (edged/wifi/portal.py puts
  // #portal in it) is a phone's from its first line: waiting for a state to tell, a phone
  // whose live page was refused (the hotspot's pages all taken, its budget of requests
  // spent) was "a screen" for as long as that lasted, and could not zoom the terms.
  const phonePage = document.getElementById("portal") !== null;
  const onScreen = () => !phonePage && (!state || state.idle_reset_s !== null);
  const MODIFIER_KEYS = new Set(["Control", "Shift", "Alt", "AltGraph", "Meta", "OS", "CapsLock"]);
  const shortcut = (e) =>
    !MODIFIER_KEYS.has(e.key) && (e.ctrlKey || e.altKey || e.metaKey || /^F\d{1,2}$/.test(e.key));
  const onLink = (e) => e.target instanceof Element && e.target.closest("a[href]") !== null;

  function markScreen() {
    setAttr(document.documentElement, "data-screen", onScreen() ? "" : null);
  }

  function lockDown() {
    const screenOnly = (e) => {
      if (onScreen()) e.preventDefault();
    };
    document.addEventListener("contextmenu", screenOnly);
    document.addEventListener("dragstart", screenOnly);
    for (const type of ["dragover", "drop"]) {
      document.addEventListener(type, (e) => e.preventDefault()); // taken by the page: opens nothing
    }
    document.addEventListener("keydown", (e) => {
      if (shortcut(e)) screenOnly(e);
    });
    for (const type of ["click", "auxclick"]) {
      document.addEventListener(type, (e) => {
        const plain = e.button === 0 && !(e.ctrlKey || e.shiftKey || e.altKey || e.metaKey);
        if (!plain && onLink(e)) screenOnly(e);
      });
    }
    document.addEventListener(
      "wheel",
      (e) => {
        if (e.ctrlKey) screenOnly(e); // zoom, and a touchpad's pinch
      },
      { passive: false },
    );
    markScreen();
  }

  function start() {
    lockDown();
    $("lang").addEventListener("click", () => {
      lastTouch = elapsed();
      idled = false;
      setLanguage(lang === "fr" ? "en" : "fr");
    });
    for (const button of document.querySelectorAll(".press")) {
      button.addEventListener("click", () => press(button.dataset.kind, null, button));
    }
    for (const type of ["pointerdown", "keydown", "wheel"]) {
      document.addEventListener(
        type,
        () => {
          lastTouch = elapsed();
          idled = false;
        },
        { passive: true, capture: true },
      );
    }
    window.addEventListener("resize", fitRegions);
    applyLanguage();
    connect();
    setInterval(everySecond, 1000);
  }

  start();
})();
