"""How the bundled offline model plays the research assistant's agent roles.

Each player decides from what the agent loop shows it, deterministically:

- the **lead** plans (a `hubspoke.Plan`): it splits the question into facets by simple rules:
  the subjects it names (the wind farm, the bridge, ...) and the aspects it asks about (cost,
  dates, size, effects, who, money). One subject and at most one aspect is a narrow question:
  one searcher step. Several subjects, several aspects, or an overview of one subject is a broad
  one: one searcher step per facet, up to five, each told what its siblings cover. Asked again
  after a stall, it plans the searches that ended without findings again, under new ids;
- a **searcher** calls the `search` tool through the model's tool calls, once per query of its
  brief, and compresses the hits into claims: each claim is the sentence a hit quotes, citing
  every document that states it (near-duplicates merge here);
- the **compressor** keeps the claims on the brief's focus, at most four, three citations each,
  most trusted sources first;
- the **synthesizer** merges the findings: the same claim from two searchers becomes one; claims
  that say the same thing with different figures are a conflict, resolved for the most trusted
  kind of source (then more independent sources, then the later report), saying why. Like a
  real model it overreaches: the claim it keeps also cites a report of the same fact that gives
  the other figure ("every document on the fact"), a citation the citation pass then drops.
"""

from __future__ import annotations

import re
from typing import Any

from hubspoke.examples.research.corpus import TRUST, words
from hubspoke.models.offline import Move, Turn, answer, call

# The subjects the corpus covers, by the words that name them.
SUBJECTS: dict[str, tuple[str, ...]] = {
    "Kestrel Point wind farm": ("kestrel", "wind", "turbine", "turbines"),
    "Corvel Bridge": ("corvel", "bridge"),
    "Lake Amsel algae blooms": ("amsel", "algae", "lake", "bloom", "blooms"),
    "Tessaly Robotics": ("tessaly", "robotics", "robot", "robots"),
    "Marrow Line high-speed rail": ("marrow", "rail", "railway", "train", "trains"),
    "Orrin Valley grape harvest": ("orrin", "grape", "grapes", "harvest", "wine", "vineyards"),
}
# Broad words that stand for several subjects.
GROUPS: dict[str, tuple[str, ...]] = {
    "energy": ("Kestrel Point wind farm",),
    "transport": ("Corvel Bridge", "Marrow Line high-speed rail"),
    "infrastructure": (
        "Corvel Bridge",
        "Marrow Line high-speed rail",
        "Kestrel Point wind farm",
    ),
    "environment": ("Lake Amsel algae blooms", "Kestrel Point wind farm"),
    "economy": ("Tessaly Robotics", "Orrin Valley grape harvest"),
    "business": ("Tessaly Robotics", "Orrin Valley grape harvest"),
    "veldmark": tuple(SUBJECTS),
    "province": tuple(SUBJECTS),
}
# Aspects a question asks about, by the words that ask for them; `focus` is what a relevant
# finding mentions.
ASPECTS: dict[str, dict[str, tuple[str, ...]]] = {
    "cost": {
        "ask": ("cost", "costs", "budget", "price", "spend", "money", "toll", "expensive"),
        "focus": ("cost", "budgeted", "crowns", "toll", "paid"),
    },
    "timeline": {
        "ask": ("when", "open", "opened", "opening", "date", "dates", "timeline", "schedule"),
        "focus": ("opened", "open", "commissioned", "scheduled", "founded", "lasted", "frost"),
    },
    "scale": {
        "ask": ("big", "size", "capacity", "length", "long", "large", "speed", "area", "many"),
        "focus": ("capacity", "long", "turbines", "stations", "speed", "covered", "reached"),
    },
    "impact": {
        "ask": ("impact", "impacts", "effect", "effects", "affect", "birds", "traffic"),
        "focus": ("fewer", "carries", "journey", "driven", "damaged", "cut"),
    },
    "organisation": {
        "ask": ("who", "operator", "operates", "built", "builder", "owner", "headquarters"),
        "focus": ("operated", "built", "builds", "monitored", "headquarters", "cooperative"),
    },
    "finance": {
        "ask": ("revenue", "employees", "staff", "exports", "results", "sales", "finances"),
        "focus": ("revenue", "employs", "exports"),
    },
}
PLACES = ("veldmark", "province")
BROAD = ("overview", "everything", "summary", "summarise", "summarize", "compare", "all")
OVERVIEW_ASPECTS = ("scale", "timeline", "cost", "impact")

_NUMBER_WORDS = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_VALUE = re.compile(r"\b(\d[\d,.]*\d|\d|" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


def _facets(question: str) -> tuple[list[str], list[str], bool]:
    said = words(question)
    subjects: list[str] = []
    named = [w for w in said if w in GROUPS and w not in PLACES]
    for word in said:
        if word in PLACES and (named or any(w in n for w in said for n in SUBJECTS.values())):
            continue  # "the economy of Veldmark": the economy, not all of Veldmark
        for subject in GROUPS.get(word, ()):
            if subject not in subjects:
                subjects.append(subject)
        for subject, names in SUBJECTS.items():
            if word in names and subject not in subjects:
                subjects.append(subject)
    aspects = [a for a, spec in ASPECTS.items() if any(w in spec["ask"] for w in said)]
    broad = any(w in BROAD for w in said) or any(w in GROUPS for w in said)
    return subjects, aspects, broad


def _brief(subject: str, aspect: str | None, siblings: list[str]) -> dict[str, Any]:
    scope = f"{subject}: {aspect}" if aspect else subject
    focus = list(ASPECTS[aspect]["focus"]) if aspect else words(subject)[:4]
    what = f"the {aspect} of the {subject}" if aspect else f"the {subject}"
    queries = [f"{subject} {' '.join(ASPECTS[aspect]['focus'][:3])}" if aspect else subject]
    return {
        "objective": f"Find what the corpus says about {what}, with the figures and dates.",
        "scope": scope,
        "focus": focus,
        "queries": queries,
        "siblings": [s for s in siblings if s != scope],
    }


def _step(n: int, brief: dict[str, Any]) -> dict[str, Any]:
    """Plan step ``s<n>``: a searcher with `brief` as its input, and the brief's objective,
    scope and siblings as the step's brief."""
    siblings = brief.get("siblings", [])
    return {
        "id": f"s{n}",
        "role": "searcher",
        "input": brief,
        "objective": brief["objective"],
        "scope": brief["scope"],
        "siblings": f"The other searchers cover: {'; '.join(siblings)}." if siblings else "",
    }


def plan_research(question: str, cap: int = 5) -> dict[str, Any]:
    """The lead's plan for `question` (a `ResearchPlan` as JSON): its breadth, why, and one
    searcher step per facet, at most `cap`, ids ``s1``, ``s2``, ..."""
    subjects, aspects, broad = _facets(question)
    facets: list[tuple[str, str | None]]
    if not subjects:
        brief = {
            "objective": f"Find what the corpus says about: {question}",
            "scope": question[:200],
            "focus": [w for w in words(question) if len(w) > 3][:8] or ["news"],
            "queries": [question[:300]],
        }
        return {
            "breadth": "narrow",
            "rationale": "The question names no subject the corpus is known to cover: one search.",
            "steps": [_step(1, brief)],
        }
    if len(subjects) == 1 and len(aspects) <= 1 and not broad:
        facets = [(subjects[0], aspects[0] if aspects else None)]
        breadth, why = "narrow", f"One subject ({subjects[0]}) and one question about it."
    elif len(subjects) == 1:
        chosen = aspects if len(aspects) > 1 else list(OVERVIEW_ASPECTS)
        facets = [(subjects[0], a) for a in chosen]
        breadth = "broad"
        why = f"Several aspects of {subjects[0]}: one searcher per aspect."
    else:
        aspect = aspects[0] if len(aspects) == 1 else None
        facets = [(s, aspect) for s in subjects]
        breadth, why = "broad", f"{len(subjects)} subjects: one searcher per subject."
    if len(facets) > cap:
        why += f" Capped at {cap} searchers: {len(facets) - cap} facets left out."
        facets = facets[:cap]
    scopes = [f"{s}: {a}" if a else s for s, a in facets]
    return {
        "breadth": breadth,
        "rationale": why,
        "steps": [_step(n, _brief(s, a, scopes)) for n, (s, a) in enumerate(facets, 1)],
    }


_STEP_LINE = re.compile(r"^- ([a-z0-9_-]+) \(searcher\): (.+)$", re.MULTILINE)


def replan(plan: dict[str, Any], account: str) -> dict[str, Any]:
    """The lead's new plan after a stall, from its first `plan` and the stall `account` the
    foreman sent (one line per step: ``- ID (ROLE): STATUS[: reason]``): each searcher step
    that was not accepted is planned again under a new id (``s2`` becomes ``s2-2``), searching
    more broadly (its scope's subject is added to its queries: the same brief again would be
    the same dispatch, which the foreman calls stuck); accepted ones are kept."""
    status = {sid: line.split(":")[0] for sid, line in _STEP_LINE.findall(account)}
    again = []
    for step in plan["steps"]:
        ended = [sid for sid in status if sid == step["id"] or sid.startswith(step["id"] + "-")]
        if not ended or any(status[sid] == "accepted" for sid in ended):
            continue
        brief = dict(step["input"])
        broader = brief["scope"].split(":")[0]
        brief["queries"] = [*brief["queries"], broader][-3:]
        if len(ended) > 1:  # searched again before: drop the most specific query
            brief["queries"] = brief["queries"][1:] or [broader]
        again.append({**step, "id": f"{step['id']}-{len(ended) + 1}", "input": brief})
    left = ", ".join(s["id"].rsplit("-", 1)[0] for s in again)
    return {
        "breadth": plan["breadth"],
        "rationale": f"Replanned: search again for {left}; the accepted searches are kept.",
        "steps": again,
    }


def lead(turn: Turn) -> Move | list[Move]:
    planned = plan_research(turn.input["question"], turn.input.get("max_searchers", 5))
    if turn.correction and turn.correction.startswith("The plan stalled"):
        return answer(replan(planned, turn.correction))
    return answer(planned)


def _trust(source: dict[str, Any]) -> tuple[int, str]:
    return (TRUST.get(source["source_kind"], 0), source["date"])


def searcher(turn: Turn) -> Move | list[Move]:
    brief = turn.input
    if not turn.results:
        return [
            call(
                "search",
                query=q,
                limit=8,
                date_from=brief.get("date_from"),
                date_to=brief.get("date_to"),
            )
            for q in brief["queries"]
        ]
    sources: dict[str, dict[str, Any]] = {}
    claims: dict[str, list[str]] = {}
    for name, hits in turn.results:
        if name != "search" or not isinstance(hits, list):
            continue
        for hit in hits:
            sources.setdefault(hit["id"], hit)
            cited = claims.setdefault(hit["snippet"], [])
            if hit["id"] not in cited:
                cited.append(hit["id"])
    kept = list(claims.items())[:5]
    for _, cited in kept:  # most trusted sources first; six citations at most
        cited.sort(key=lambda d: _trust(sources[d]), reverse=True)
        del cited[6:]
    used = {d for _, cited in kept for d in cited}
    return answer(
        scope=brief["scope"],
        focus=brief["focus"],
        claims=[{"text": text, "citations": cited} for text, cited in kept],
        sources=[
            {k: sources[d][k] for k in ("id", "title", "date", "source", "source_kind")}
            for d in sorted(used)
        ],
        gaps="" if kept else f"no document matched {brief['queries']}",
    )


def _on_focus(text: str, focus: list[str]) -> bool:
    said = {w.rstrip("s") for w in words(text)}
    return any(f.rstrip("s") in said for f in focus)


def compressor(turn: Turn) -> Move | list[Move]:
    findings = turn.input["findings"]
    focus: list[str] = findings["focus"]
    claims = [c for c in findings["claims"] if _on_focus(c["text"], focus)]
    claims = (claims or findings["claims"][:2])[:4]
    kept = [{"text": c["text"], "citations": c["citations"][:3]} for c in claims]
    used = {d for c in kept for d in c["citations"]}
    return answer(
        scope=findings["scope"],
        focus=focus,
        claims=kept,
        sources=[s for s in findings["sources"] if s["id"] in used],
        gaps=findings.get("gaps", ""),
    )


def masked(text: str) -> str:
    """A claim with its figures, dates and counted words blanked: two claims that mask the same
    but differ are two versions of one fact."""
    return _VALUE.sub("#", text.lower())


def _standing(cited: list[str], sources: dict[str, dict[str, Any]]) -> tuple[int, int, str]:
    known = [sources[d] for d in cited if d in sources]
    best = max((TRUST.get(s["source_kind"], 0) for s in known), default=0)
    return best, len({s["source"] for s in known}), max((s["date"] for s in known), default="")


def _reason(kept: dict[str, Any], other: dict[str, Any]) -> tuple[str, str]:
    """Which source the kept version rests on, and why it beat the other one."""
    k_trust, k_count, k_date = kept["standing"]
    o_trust, o_count, o_date = other["standing"]
    top = kept["top"]
    if k_trust != o_trust:
        why = (
            f"trusted {top['source']} ({top['source_kind']}) over {other['top']['source']} "
            f"({other['top']['source_kind']}): official records rank first, then newspapers "
            "and the trade press, then wire services, then blogs and forums"
        )
    elif k_count != o_count:
        why = f"{k_count} independent sources give this version, {o_count} the other"
    else:
        why = f"sources of equal standing: kept the later report ({k_date} over {o_date})"
    return top["source"], why


def synthesizer(turn: Turn) -> Move | list[Move]:
    sources: dict[str, dict[str, Any]] = {}
    merged: dict[str, list[str]] = {}
    for findings in turn.input["findings"]:
        for source in findings["sources"]:
            sources.setdefault(source["id"], source)
        for claim in findings["claims"]:
            cited = merged.setdefault(claim["text"], [])
            cited.extend(d for d in claim["citations"] if d not in cited)
    versions: dict[str, list[dict[str, Any]]] = {}
    for text, cited in merged.items():
        cited.sort(key=lambda d: _trust(sources[d]) if d in sources else (0, ""), reverse=True)
        entry = {
            "text": text,
            "citations": cited[:4],
            "standing": _standing(cited, sources),
            "top": sources.get(cited[0], {"source": "unknown", "source_kind": "unknown"}),
        }
        versions.setdefault(masked(text), []).append(entry)
    claims: list[dict[str, Any]] = []
    conflicts: list[dict[str, Any]] = []
    for group in versions.values():
        ranked = sorted(group, key=lambda e: e["standing"], reverse=True)
        best = ranked[0]
        claims.append({"text": best["text"], "citations": list(best["citations"])})
        if len(ranked) > 1:
            claims[-1]["citations"].append(ranked[1]["citations"][0])
            trusted, why = _reason(best, ranked[1])
            conflicts.append(
                {
                    "about": _VALUE.sub("…", best["text"]),
                    "kept": {"text": best["text"], "citations": best["citations"]},
                    "rejected": [
                        {"text": e["text"], "citations": e["citations"]} for e in ranked[1:]
                    ],
                    "trusted": trusted,
                    "reason": why,
                }
            )
    used = {d for c in claims for d in c["citations"]}
    used |= {d for c in conflicts for r in c["rejected"] for d in r["citations"]}
    return answer(
        question=turn.input["question"],
        claims=claims,
        conflicts=conflicts,
        sources=[sources[d] for d in sorted(used) if d in sources],
    )


PLAYERS = {
    "lead": lead,
    "searcher": searcher,
    "compressor": compressor,
    "synthesizer": synthesizer,
}
