"""The screens the kiosk page runs on, and the rules its layout must keep on each.

Text size: a kiosk is read from 1.5 m. The floor is capitals 7 arcminutes high at that
distance (1.4 times the 5' of the 20/20 letter: readable with some reserve by normal and
corrected vision), on the smallest panel sold at each resolution. From the panel's pixel
pitch and the page font's cap height (DejaVu Sans, 0.729 em), the floor in CSS px is
computed here, not written down. Phones are held at about 35 cm, where 7' is tiny: their
floor is the platform's 16 px body text.
"""

import math
from dataclasses import dataclass

VIEWING_MM = 1500.0
CAP_ARCMIN = 7.0
CAP_HEIGHT_EM = 0.729  # DejaVu Sans, the font the page gets on Debian / Raspberry Pi OS
PHONE_FLOOR_PX = 16.0
TARGET_PX = 44.0  # WCAG 2.5.5 (AAA) touch target; 2.5.8 (AA) asks for 24


@dataclass(frozen=True)
class Screen:
    width: int
    height: int
    what: str
    active_width_mm: float | None  # None: a phone, held in the hand

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def viewport(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height}

    @property
    def min_text_px(self) -> float:
        if self.active_width_mm is None:
            return PHONE_FLOOR_PX
        pitch = self.active_width_mm / self.width  # mm per CSS px (device pixel ratio 1)
        cap_mm = VIEWING_MM * math.tan(math.radians(CAP_ARCMIN / 60))
        return cap_mm / CAP_HEIGHT_EM / pitch


SCREENS = [
    Screen(800, 480, 'Raspberry Pi Touch Display 7" (154.08 mm wide)', 154.08),
    Screen(1024, 600, '7" 1024x600 HDMI panel (154.21 mm; a 10.1" one is larger)', 154.21),
    Screen(1280, 720, 'Raspberry Pi Touch Display 2 7", landscape (155.52 mm)', 155.52),
    Screen(720, 1280, 'Raspberry Pi Touch Display 2 7", portrait (87.48 mm)', 87.48),
    Screen(1920, 1080, '15.6" full-HD monitor (344.16 mm)', 344.16),
    Screen(390, 844, "phone, on the on-board wifi", None),
    Screen(320, 640, "narrow phone; WCAG 1.4.10 reflow width", None),
]

# Every problem the layout can have, as readable strings; [] when the screen is right.
CHECK = """({minPx, targetPx}) => {
    const W = innerWidth, H = innerHeight, bad = [];
    const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
        + (typeof el.className === "string" && el.className ? "." + el.className.split(" ").join(".") : "")
        + (el.textContent.trim() ? ` "${el.textContent.trim().slice(0, 40)}"` : "");
    const shown = (el) => el.checkVisibility() && !el.closest(".sr-only");
    const page = document.scrollingElement;
    if (page.scrollWidth > W) bad.push(`the page scrolls sideways: ${page.scrollWidth} > ${W}`);
    if (page.scrollHeight > H) bad.push(`the page scrolls: ${page.scrollHeight} > ${H}`);
    for (const el of document.body.querySelectorAll("*")) {
        if (!shown(el) || el.classList.contains("skip")) continue;
        const r = el.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        if (r.left < -0.5 || r.right > W + 0.5) {
            bad.push(`outside the width: ${name(el)} ${r.left.toFixed(0)}..${r.right.toFixed(0)}`);
        }
        const style = getComputedStyle(el);
        if (style.display !== "inline" && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
            bad.push(`cut or scrolling sideways: ${name(el)} ${el.scrollWidth} > ${el.clientWidth}`);
        }
    }
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
        const el = t.parentElement;
        if (!t.data.trim() || !shown(el) || el.closest(".skip")) continue;
        const size = parseFloat(getComputedStyle(el).fontSize);
        if (size < minPx - 0.01) bad.push(`text ${size}px < ${minPx.toFixed(1)}px: ${name(el)}`);
    }
    for (const el of document.querySelectorAll("button, a")) {
        if (!shown(el) || el.classList.contains("skip")) continue;
        const r = el.getBoundingClientRect();
        if (r.width < targetPx || r.height < targetPx) {
            bad.push(`touch target ${r.width.toFixed(0)}x${r.height.toFixed(0)}: ${name(el)}`);
        }
    }
    const inside = (el) => {
        const r = el.getBoundingClientRect();
        return r.top >= -0.5 && r.left >= -0.5 && r.bottom <= H + 0.5 && r.right <= W + 0.5;
    };
    for (const el of document.querySelectorAll(".press")) {
        if (shown(el) && !inside(el)) bad.push(`rider button off screen: ${name(el)}`);
    }
    const card = document.getElementById("msg-card");
    if (!inside(card)) bad.push("the announcements are off screen");
    const first = document.querySelector("#messages li");
    if (first) {
        const a = first.getBoundingClientRect(), c = card.getBoundingClientRect();
        const line = parseFloat(getComputedStyle(first).lineHeight) || 20;
        if (a.top < c.top - 0.5 || a.top + 2 * line > c.bottom + 0.5) {
            bad.push("the first announcement does not show two lines in its region");
        }
    }
    return bad;
}"""

# How much of each region a rider sees (for the closing note and failures' messages).
REGIONS = """() => Object.fromEntries([...document.querySelectorAll("[data-scroll]")]
    .filter((el) => el.checkVisibility())
    .map((el) => [el.id, {shown: el.clientHeight, content: el.scrollHeight}]))"""

# Text against its background, from the colours the browser computed (forced colours too):
# every pair under 4.5:1, as strings.
CONTRAST = """() => {
    const lum = (rgb) => {
        const [r, g, b] = rgb.map((v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
    const background = (el) => {
        for (let e = el; e; e = e.parentElement) {
            const c = parse(getComputedStyle(e).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0.99)) return c.slice(0, 3);
        }
        return [255, 255, 255];
    };
    const bad = [];
    for (const el of document.querySelectorAll("body *")) {
        const hasText = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
        if (!hasText || !el.checkVisibility() || el.closest(".sr-only")) continue;
        const fg = parse(getComputedStyle(el).color).slice(0, 3);
        const [a, b] = [lum(fg), lum(background(el))].sort((x, y) => y - x);
        const ratio = (a + 0.05) / (b + 0.05);
        if (ratio < 4.5) bad.push(`${el.tagName}#${el.id}.${el.className}: ${ratio.toFixed(2)}`);
    }
    return bad;
}"""
