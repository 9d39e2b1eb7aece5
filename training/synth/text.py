"""Words of the simulated customers: survey comments, chat and call notes and complaints in Italian,
German, French and English, whose tone follows the hidden satisfaction and whose matter follows the
customer's service problem. The truth (language, problem area, mood) is kept apart."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANGUAGES = ("it", "de", "fr", "en")
LANGUAGE_SHARES = (0.3, 0.25, 0.2, 0.25)
ISSUES = ("billing", "network", "delivery", "staff")
# per event type: the share of events that carry text
TEXT_SHARE = {"nps": 0.6, "csat": 0.5, "chat": 0.8, "call": 0.6, "complaint": 0.9}
MOOD_CUTS = (-1.2, -0.4, 0.4, 1.2)  # very negative | negative | neutral | positive | very positive
MOOD_NOISE = 0.6

# five tones, very negative first; two or three phrases each
TONE: dict[str, tuple[tuple[str, ...], ...]] = {
    "it": (
        ("servizio pessimo, sono furioso", "una vergogna, voglio disdire", "mai più, delusione totale"),
        ("non sono contento", "servizio scadente e lento", "sono deluso"),
        ("va così così", "niente di particolare", "servizio nella media"),
        ("sono soddisfatto", "buon servizio", "tutto bene, grazie"),
        ("servizio eccellente, grazie mille", "bravissimi, consiglio a tutti", "perfetto, sono felicissimo"),
    ),
    "de": (
        ("katastrophaler service, ich bin wütend", "eine frechheit, ich kündige", "nie wieder, total enttäuscht"),
        ("ich bin unzufrieden", "schlechter und langsamer service", "ich bin enttäuscht"),
        ("geht so", "nichts besonderes", "durchschnittlicher service"),
        ("ich bin zufrieden", "guter service", "alles gut, danke"),
        ("hervorragender service, vielen dank", "super, kann ich nur empfehlen", "perfekt, ich bin begeistert"),
    ),
    "fr": (
        ("service lamentable, je suis furieux", "une honte, je vais résilier", "plus jamais, déception totale"),
        ("je ne suis pas content", "service médiocre et lent", "je suis déçu"),
        ("c'est moyen", "rien de spécial", "service correct sans plus"),
        ("je suis satisfait", "bon service", "tout va bien, merci"),
        ("service excellent, merci beaucoup", "bravo, je recommande à tous", "parfait, je suis ravi"),
    ),
    "en": (
        ("terrible service, i am furious", "a disgrace, i want to cancel", "never again, totally disappointed"),
        ("i am not happy", "poor and slow service", "i am disappointed"),
        ("it is okay", "nothing special", "average service"),
        ("i am satisfied", "good service", "all fine, thanks"),
        ("excellent service, thank you so much", "brilliant, i recommend you to everyone", "perfect, i am delighted"),
    ),
}  # fmt: skip
ISSUE: dict[str, tuple[tuple[str, ...], ...]] = {
    "it": (
        ("la bolletta è sbagliata", "addebito doppio sulla fattura", "rimborso della fattura"),
        ("la connessione cade sempre", "internet lento e senza segnale", "rete fuori servizio"),
        ("il pacco non è arrivato", "consegna in ritardo", "il corriere ha perso la spedizione"),
        ("l'operatore è stato scortese", "il personale non ascolta", "l'assistenza non risponde"),
    ),
    "de": (
        ("die rechnung ist falsch", "doppelte abbuchung auf der rechnung", "erstattung der rechnung"),
        ("die verbindung bricht ständig ab", "internet langsam und kein netz", "netz ausgefallen"),
        ("das paket ist nicht angekommen", "lieferung verspätet", "der kurier hat die sendung verloren"),
        ("der mitarbeiter war unhöflich", "das personal hört nicht zu", "der kundendienst antwortet nicht"),
    ),
    "fr": (
        ("la facture est fausse", "double prélèvement sur la facture", "remboursement de la facture"),
        ("la connexion coupe tout le temps", "internet lent et pas de réseau", "réseau en panne"),
        ("le colis n'est pas arrivé", "livraison en retard", "le livreur a perdu l'envoi"),
        ("le conseiller était impoli", "le personnel n'écoute pas", "le service client ne répond pas"),
    ),
    "en": (
        ("the bill is wrong", "double charge on my invoice", "refund of the invoice"),
        ("the connection keeps dropping", "slow internet and no signal", "network outage"),
        ("the parcel never arrived", "late delivery", "the courier lost the shipment"),
        ("the agent was rude", "the staff do not listen", "customer service never answers"),
    ),
}  # fmt: skip
NOTE_KINDS = ("", "call", "chat")  # texts of these event types start with a note prefix
NOTE_PREFIX = {
    "it": ("", "nota chiamata:", "chat:"),
    "de": ("", "anrufnotiz:", "chat:"),
    "fr": ("", "note d'appel :", "chat :"),
    "en": ("", "call note:", "chat:"),
}
PHRASES = 3  # phrases per tone and per problem area
_ISSUE_SLOTS = 1 + len(ISSUES) * PHRASES * 2  # none, or (area, phrase, before/after the tone)


@dataclass(frozen=True)
class Writers:
    """Each customer's language and problem area (indexes into LANGUAGES and ISSUES)."""

    language: np.ndarray
    issue: np.ndarray


def draw_writers(rng: np.random.Generator, n: int) -> Writers:
    return Writers(
        language=rng.choice(len(LANGUAGES), size=n, p=LANGUAGE_SHARES),
        issue=rng.choice(len(ISSUES), size=n),
    )


def tone_of(mood: np.ndarray) -> np.ndarray:
    """Tone index 0 (very negative) .. 4 (very positive) of a mood."""
    return np.searchsorted(np.asarray(MOOD_CUTS), mood).astype(np.int64)


def text_codes(
    rng: np.random.Generator,
    writers: Writers,
    cust: np.ndarray,
    event_type: np.ndarray,
    sat: np.ndarray,
    trouble: np.ndarray,
) -> np.ndarray:
    """One text code per event (-1: no text; `dictionary()[code]` is the text), vectorised.

    Event i is by customer `cust[i]` (index into `writers`), of type `event_type[i]` (a name), at
    hidden satisfaction `sat[i]`; `trouble[i]` is True when a service problem shows (unresolved
    contact, complaint, recent failures). Mood = satisfaction + noise, lower with trouble; trouble
    and complaints name the customer's problem area."""
    n = len(cust)
    share = np.zeros(n)
    kind = np.zeros(n, dtype=np.int64)
    for t, p in TEXT_SHARE.items():
        share[event_type == t] = p
    for k, t in enumerate(NOTE_KINDS[1:], start=1):
        kind[event_type == t] = k
    has = rng.random(n) < share
    tone = tone_of(sat + rng.normal(0.0, MOOD_NOISE, n) - 0.8 * trouble)
    named = trouble | (event_type == "complaint")
    phrase, issue_phrase, order = (rng.integers(0, m, n) for m in (PHRASES, PHRASES, 2))
    slot = 1 + (writers.issue[cust] * PHRASES + issue_phrase) * 2 + order
    code = (((writers.language[cust] * 5 + tone) * PHRASES + phrase) * _ISSUE_SLOTS
            + np.where(named, slot, 0)) * len(NOTE_KINDS) + kind  # fmt: skip
    return np.where(has, code, -1)


def dictionary() -> list[str]:
    """Every text a code stands for, in code order."""
    out = []
    for lang in LANGUAGES:
        for tones in TONE[lang]:
            for tone_text in tones:
                for slot in range(_ISSUE_SLOTS):
                    parts = [tone_text]
                    if slot:
                        area, rest = divmod(slot - 1, PHRASES * 2)
                        issue_phrase, order = divmod(rest, 2)
                        parts.insert(order, ISSUE[lang][area][issue_phrase])
                    for prefix in NOTE_PREFIX[lang]:
                        out.append(" ".join(p for p in (prefix, ", ".join(parts)) if p))
    return out
