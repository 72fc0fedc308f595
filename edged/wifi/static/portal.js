// The riders' wifi on the kiosk page: the captive portal's own part. kiosk.js runs the page
// (live state, rider buttons, language); this file adds the status of the phone's internet
// access, the button that accepts the terms, and the terms and privacy note. Text only, as
// in kiosk.js: the Content-Security-Policy forbids HTML sinks.
"use strict";

(() => {
  const TEXT = {
    fr: {
      title: "Wi-Fi à bord",
      loading: "Wi-Fi à bord…",
      ask: "Wi-Fi à bord : pour aller sur internet, acceptez les conditions.",
      ask_offline:
        "Wi-Fi à bord : pas d'internet pour le moment (zone sans réseau). Cette page reste à jour.",
      online: (t) => `Connecté à internet jusqu'à ${t}. Vous pouvez fermer cette page.`,
      accepted_offline: (t) =>
        `Conditions acceptées jusqu'à ${t}, mais pas d'internet à bord pour le moment ` +
        "(zone sans réseau) : il reviendra tout seul.",
      full: "Le Wi-Fi est complet pour le moment. Réessayez dans un moment.",
      limited: "Trop d'essais : patientez un peu.",
      error: "Le Wi-Fi ne répond pas. Réessayez.",
      unknown_phone:
        "Votre téléphone n'est pas reconnu sur le Wi-Fi : déconnectez-vous puis reconnectez-vous.",
      accept: "Accepter et aller sur internet",
      summary: "Conditions · vie privée : rien n'est gardé",
      terms: (min, mbit) =>
        `Accès gratuit et sans inscription, ${min} minutes à la fois (renouvelable), ` +
        `${mbit} Mbit/s au plus par téléphone, partagés avec les autres voyageurs. ` +
        "Usage légal et raisonnable. Les autres appareils du Wi-Fi et du véhicule ne sont " +
        "pas joignables.",
      privacy:
        "Vie privée : ni l'adresse de votre téléphone (MAC) ni votre navigation ne sont " +
        "gardées ou envoyées. Seuls des nombres (téléphones connectés, sessions du jour, " +
        "octets échangés) partent chez l'exploitant. Une demande faite avec un bouton part " +
        "à la régulation sans rien qui vous identifie.",
      locale: "fr-FR",
    },
    en: {
      title: "On-board wifi",
      loading: "On-board wifi…",
      ask: "On-board wifi: accept the terms to go online.",
      ask_offline: "On-board wifi: no internet right now (no coverage). This page stays up to date.",
      online: (t) => `Online until ${t}. You can close this page.`,
      accepted_offline: (t) =>
        `Terms accepted until ${t}, but there is no internet on board right now ` +
        "(no coverage): it will come back by itself.",
      full: "The wifi is full right now. Try again in a while.",
      limited: "Too many tries: please wait.",
      error: "The wifi is not answering. Try again.",
      unknown_phone: "The wifi does not recognise your phone: disconnect and connect again.",
      accept: "Accept and go online",
      summary: "Terms · privacy: nothing is kept",
      terms: (min, mbit) =>
        `Free, no sign-up, ${min} minutes at a time (renewable), at most ${mbit} Mbit/s per ` +
        "phone, shared with the other riders. Legal and fair use only. The other devices on " +
        "the wifi and in the vehicle cannot be reached.",
      privacy:
        "Privacy: neither your phone's address (MAC) nor your browsing is kept or sent. " +
        "Only numbers (phones connected, sessions today, bytes) go to the operator. A request " +
        "made with a button goes to dispatch with nothing that identifies you.",
      locale: "en-GB",
    },
  };

  let info = null; // /api/portal: accepted, seconds_left, internet, session_min, client_mbit
  let seenAt = 0; // Date.now() when `info` arrived (seconds_left counts from then)
  let note = null; // a refusal to show instead of the state, until the next answer
  let busy = false;
  const $ = (id) => document.getElementById(id);
  const lang = () => (document.documentElement.lang === "en" ? "en" : "fr");
  const tr = (key, ...args) => {
    const v = TEXT[lang()][key];
    return typeof v === "function" ? v(...args) : v;
  };

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function until() {
    const ms = seenAt + info.seconds_left * 1000;
    const opts = { hour: "2-digit", minute: "2-digit" };
    if (info.timezone) opts.timeZone = info.timezone;
    return new Intl.DateTimeFormat(tr("locale"), opts).format(new Date(ms));
  }

  function render() {
    for (const e of document.querySelectorAll("[data-portal-i18n]")) {
      setText(e, tr(e.dataset.portalI18n));
    }
    const status = $("portal-status");
    const button = $("portal-accept");
    let state = "loading";
    let words = tr("loading");
    if (note) {
      state = note === "limited" ? "error" : note === "full" ? "full" : "error";
      words = tr(note);
    } else if (info && info.accepted) {
      state = info.internet ? "online" : "no-internet";
      words = info.internet ? tr("online", until()) : tr("accepted_offline", until());
    } else if (info) {
      state = info.internet ? "ask" : "no-internet";
      words = info.internet ? tr("ask") : tr("ask_offline");
    }
    status.dataset.state = state;
    setText(status, words);
    button.hidden = !info || Boolean(info.accepted);
    if (info) setText($("portal-terms-text"), tr("terms", info.session_min, info.client_mbit));
    refit();
  }

  // The portal's part takes height from the board above the rider buttons: when it grows
  // or shrinks, kiosk.js re-checks which regions now scroll (and makes them tab stops).
  let height = 0;
  function refit() {
    const now = $("portal").offsetHeight;
    if (now !== height) {
      height = now;
      window.dispatchEvent(new Event("resize"));
    }
  }

  function take(data) {
    info = data;
    seenAt = Date.now();
    note = null;
  }

  async function load() {
    try {
      const answer = await fetch("/api/portal", { cache: "no-store" });
      if (answer.ok) take(await answer.json());
    } catch (err) {
      // the next poll tries again; kiosk.js shows the lost-connection banner
    }
    render();
  }

  async function accept() {
    if (busy) return;
    busy = true;
    const button = $("portal-accept");
    button.setAttribute("aria-busy", "true");
    try {
      const answer = await fetch("/api/portal/accept", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ accept: true }),
        cache: "no-store",
      });
      if (answer.ok) {
        take(await answer.json());
        // A sign-in window checks the network again when a page loads, not after a fetch
        // (Android's asks the network stack on each page start and finish; iOS's probes
        // again after a load): load this page again, so the phone sees it is online now
        // and Android closes the window, iOS offers "Done". It shows the same state.
        location.reload();
      } else {
        const body = await answer.json().catch(() => ({}));
        note =
          answer.status === 429
            ? "limited"
            : body.error === "full"
              ? "full"
              : body.error === "unknown_phone"
                ? "unknown_phone"
                : "error";
      }
    } catch (err) {
      note = "error";
    } finally {
      busy = false;
      button.removeAttribute("aria-busy");
      render();
    }
  }

  // A phone set to English (or to neither French nor English) gets English; kiosk.js starts
  // in French, as the on-board screen does.
  function prefersEnglish() {
    for (const l of navigator.languages || [navigator.language || "fr"]) {
      if (l.toLowerCase().startsWith("fr")) return false;
      if (l.toLowerCase().startsWith("en")) return true;
    }
    return true;
  }

  function start() {
    $("portal-accept").addEventListener("click", accept);
    $("portal-terms").addEventListener("toggle", refit);
    new MutationObserver(render).observe(document.documentElement, {
      attributes: true,
      attributeFilter: ["lang"],
    });
    if (prefersEnglish() && lang() === "fr") $("lang").click();
    render();
    load();
    setInterval(load, 30000);
    setInterval(render, 15000); // "until 16:40" and the like stay right
  }

  start();
})();
