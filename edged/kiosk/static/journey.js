// The run the vehicle is on (journey.assign), under the mode in the header: "Ligne 1 → Guéret".
// Separate from kiosk.js, which calls window.edgedJourney(journey, lang) on each render.
// Text only (textContent), as everything from the daemon.
"use strict";

(() => {
  const WORDS = { fr: "Ligne", en: "Line" };
  window.edgedJourney = (journey, lang) => {
    const e = document.getElementById("journey");
    if (!e) return;
    if (!journey || typeof journey.line !== "string") {
      e.hidden = true;
      if (e.textContent) e.textContent = "";
      return;
    }
    const head = typeof journey.headsign === "string" ? ` → ${journey.headsign}` : "";
    const text = `${WORDS[lang] || WORDS.fr} ${journey.line}${head}`;
    if (e.textContent !== text) e.textContent = text; // no change, no re-read (#21)
    e.hidden = false;
  };
})();
