"""Realistic kiosk content: what a Creuse shuttle's dispatch really sends.

Long French names (stops, services, providers), a service that opened yesterday, urgent
announcements with emoji, a right-to-left one. Handed straight to the kiosk service's
command methods (the code the router calls), so a test sets a whole screen in a few ms.
"""

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.e2e.conftest import Kiosk

STOPS = [
    "Aubusson – gare routière",
    "Saint-Sulpice-les-Champs – place de l'Église",
    "Ahun – mairie",
    "Guéret – marché de services, parking de la place Bonnyaud",
    "Évaux-les-Bains – thermes",
    "Bourganeuf – collège Jean Picart Le Doux",
    "Chénérailles – salle polyvalente",
    "Pontarion – pont sur le Taurion",
]

PROVIDERS = [
    ("cpam", "CPAM de la Creuse", "Assurance maladie, carte Vitale", "Health insurance"),
    ("france-travail", "France Travail", "Emploi et formation", "Jobs and training"),
    (
        "mfs",
        "Maison France Services – Communauté de communes Creuse Sud-Ouest",
        "Aide aux démarches administratives en ligne : impôts, retraite, permis, carte grise",
        "Help with online paperwork: taxes, pensions, driving licence",
    ),
    ("caf", "Caisse d'allocations familiales (CAF)", "Prestations familiales", "Family benefits"),
    ("mission-locale", "Mission locale", "Jeunes de 16 à 25 ans", "Young people aged 16 to 25"),
    (
        "cidff",
        "Centre d'information sur les droits des femmes et des familles (CIDFF)",
        "Permanence juridique",
        "Legal advice",
    ),
    ("adil", "ADIL 23 – information logement", "Logement, loyers", "Housing, rent"),
    ("justice", "Point justice", "Permanence d'avocat", "A lawyer's advice"),
    ("numerique", "Conseiller numérique", "Ordinateur, téléphone", "Computers, phones"),
    ("dgfip", "Finances publiques (DGFiP)", "Impôts", "Taxes"),
    ("cma", "Chambre de métiers et de l'artisanat", "Créer son entreprise", "Starting a business"),
    ("velo", "Atelier vélo solidaire", "Réparations", "Repairs"),
]

URGENT = (
    "⚠️ Route D942 barrée entre Ahun et Guéret après un accident : détour par Saint-Vaury, "
    "arrivée au marché retardée d'environ 20 minutes. 🚌"
)
IMPORTANT = (
    "Pour les rendez-vous CPAM et CAF, pensez à votre carte Vitale, une pièce d'identité et "
    "un justificatif de domicile de moins de trois mois : "
    "https://www.creuse-mobilite.fr/navette-felletin-gueret/pieces-a-fournir-rendez-vous-cpam"
)
INFO = "Bienvenue à bord ! Le médiateur est à l'avant du bus, n'hésitez pas à lui parler."
ARABIC = "مرحبا بكم على متن الحافلة. الوسيط في مقدمة الحافلة."


PARIS = ZoneInfo("Europe/Paris")  # the kiosk's default time zone


def paris(days: int, hour: int, minute: int, now: datetime | None = None) -> datetime:
    """That time of the day `days` from `now`'s day (default today), on the kiosk's clock."""
    day = (now or datetime.now(UTC)).astimezone(PARIS).date() + timedelta(days=days)
    return datetime.combine(day, time(hour, minute), PARIS)


MIDNIGHT_MARGIN_S = 90


async def away_from_midnight() -> None:
    """Wait out Paris midnight when it is near: the page says "hier", "demain" and "depuis"
    against its own clock, so a test that reads those words must not straddle a day."""
    now = datetime.now(PARIS)
    midnight = datetime.combine(now.date() + timedelta(days=1), time(0), PARIS)
    left = (midnight - now).total_seconds()
    if left < MIDNIGHT_MARGIN_S:
        await asyncio.sleep(left + 5)


def schedule(services: int, stops: int = 3, now: datetime | None = None) -> dict[str, Any]:
    """`services` of the providers above; the first opened yesterday at 18:49 and is open
    until tomorrow noon (a two-day market), the others today, half an hour before `now`.

    Pass the same `now` to get the same schedule again: two calls a few seconds apart
    straddle a minute now and then, and the services' opening times then differ.
    """
    now = now or datetime.now(UTC)
    slots: list[dict[str, Any]] = []
    for i, (sid, provider, what, what_en) in enumerate(PROVIDERS[:services]):
        slot: dict[str, Any] = {
            "id": sid,
            "provider": provider,
            "what": {"fr": what, "en": what_en},
            "where": {"fr": f"Camion {i + 1}", "en": f"Truck {i + 1}"},
        }
        if i == 0:
            slot["start"] = paris(-1, 18, 49, now).isoformat()
            slot["until"] = paris(1, 12, 0, now).isoformat()
        else:
            slot["start"] = (now - timedelta(minutes=30)).isoformat()
            slot["until"] = (now + timedelta(hours=3)).isoformat()
        slots.append(slot)
    return {
        "place": "Guéret – marché de services",
        "services": slots,
        "stops": [
            {"name": name, "eta": (now + timedelta(minutes=12 + 9 * i)).isoformat()}
            for i, name in enumerate(STOPS[:stops])
        ],
    }


async def clear_messages(kiosk: Kiosk) -> None:
    service = kiosk.server.service
    for mid in {m.id for m in service.messages}:
        await service.command_message({"id": mid, "clear": True})


async def show(
    kiosk: Kiosk,
    services: int,
    stops: int,
    messages: list[tuple[str, str]],
    now: datetime | None = None,
) -> None:
    """A whole screen: the schedule, and exactly these (priority, text) announcements.
    Not within a minute and a half of Paris midnight, when yesterday and tomorrow move."""
    if now is None:
        await away_from_midnight()
    service = kiosk.server.service
    await service.command_schedule(schedule(services, stops, now))
    await clear_messages(kiosk)
    for i, (priority, text) in enumerate(messages):
        await service.command_message({"id": f"m{i}", "text": text, "priority": priority})
