"""Generate the research example's bundled corpus: about a thousand short fictional documents.

Deterministic (seeded, no network). Run `python scripts/generate_research_corpus.py` to rewrite
`src/hubspoke/examples/research/data/corpus.json.gz`; `tests/test_research.py` regenerates it in
memory and compares. Everything is invented: the island province of Veldmark, its places,
projects, companies and outlets do not exist, and no document names a person.

The corpus is shaped to exercise a research pipeline:

- six coherent topics, each with a handful of facts that many documents repeat in the same
  words (so that findings from several searchers overlap and must be deduplicated);
- deliberate conflicts: some facts have a second, wrong figure or date, stated mostly by
  blogs, forums and early reports (so that synthesis must pick a source and say why);
- near-duplicates: syndicated copies of earlier documents, under another outlet's name, a
  day or two later, with a reworded title and one filler sentence changed.
"""

from __future__ import annotations

import gzip
import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "src/hubspoke/examples/research/data/corpus.json.gz"
SEED = 1313
DOCUMENTS = 1000
START = date(2022, 1, 10)
END = date(2026, 10, 31)

SOURCES: list[dict[str, str]] = [
    {"name": "Veldmark Statistics Office", "kind": "official"},
    {"name": "Provincial Infrastructure Board", "kind": "official"},
    {"name": "Veldmark Environment Agency", "kind": "official"},
    {"name": "The Hallen Courier", "kind": "newspaper"},
    {"name": "Veldby Evening Post", "kind": "newspaper"},
    {"name": "Island Wire Service", "kind": "wire"},
    {"name": "North Sound Press Agency", "kind": "wire"},
    {"name": "Grid & Turbine Weekly", "kind": "trade"},
    {"name": "Rail Business Review", "kind": "trade"},
    {"name": "Harbour Ledger", "kind": "blog"},
    {"name": "Veldmark Commuters Forum", "kind": "forum"},
    {"name": "Lakeside Notes", "kind": "blog"},
]
_BY_KIND: dict[str, list[str]] = {}
for _s in SOURCES:
    _BY_KIND.setdefault(_s["kind"], []).append(_s["name"])

# Each fact: (key, aspect, sentence with {v}, true value, wrong value or None).
TOPICS: list[dict[str, Any]] = [
    {
        "key": "kestrel",
        "name": "Kestrel Point wind farm",
        "official": "Provincial Infrastructure Board",
        "trade": "Grid & Turbine Weekly",
        "weight": 3,
        "titles": [
            "Kestrel Point wind farm: {what}",
            "What we know about the Kestrel Point turbines: {what}",
            "Offshore wind at Kestrel Point, {what}",
        ],
        "facts": [
            (
                "capacity",
                "scale",
                "The Kestrel Point wind farm has a capacity of {v}.",
                "420 megawatts",
                "380 megawatts",
            ),
            ("turbines", "scale", "The Kestrel Point wind farm has {v} turbines.", "60", None),
            (
                "commissioned",
                "timeline",
                "The Kestrel Point wind farm was commissioned in {v}.",
                "September 2024",
                "March 2025",
            ),
            (
                "cost",
                "cost",
                "The Kestrel Point wind farm cost {v} to build.",
                "1.2 billion crowns",
                "1.5 billion crowns",
            ),
            (
                "operator",
                "organisation",
                "The Kestrel Point wind farm is operated by {v}.",
                "Norrvik Energy",
                None,
            ),
            (
                "birds",
                "impact",
                "Bird surveys at Kestrel Point counted {v} fewer nesting terns after building.",
                "12 percent",
                None,
            ),
        ],
        "filler": [
            "Supporters say the project cuts the island's reliance on imported diesel.",
            "Fishing crews near the site raised concerns during the consultation.",
            "The turbines stand roughly eleven kilometres off the western shore.",
            "Maintenance vessels operate from the harbour at Port Hallen.",
        ],
    },
    {
        "key": "corvel",
        "name": "Corvel Bridge",
        "official": "Provincial Infrastructure Board",
        "trade": "Rail Business Review",
        "weight": 3,
        "titles": [
            "Corvel Bridge: {what}",
            "Crossing the strait, the Corvel Bridge: {what}",
            "Corvel Bridge update, {what}",
        ],
        "facts": [
            ("length", "scale", "The Corvel Bridge is {v} long.", "3.4 kilometres", None),
            (
                "opened",
                "timeline",
                "The Corvel Bridge opened to traffic in {v}.",
                "March 2023",
                "April 2023",
            ),
            (
                "cost",
                "cost",
                "The Corvel Bridge cost {v}.",
                "860 million crowns",
                "910 million crowns",
            ),
            (
                "toll",
                "cost",
                "A car pays a toll of {v} to cross the Corvel Bridge.",
                "4 crowns",
                None,
            ),
            (
                "crossings",
                "impact",
                "The Corvel Bridge carries about {v} vehicles a day.",
                "28,000",
                "35,000",
            ),
            (
                "builder",
                "organisation",
                "The Corvel Bridge was built by {v}.",
                "Sundstrand Civil Works",
                None,
            ),
        ],
        "filler": [
            "The crossing replaced a ferry service that ran every forty minutes.",
            "Commuters report shorter journeys between Veldby and the southern towns.",
            "The bridge deck was assembled from prefabricated steel sections.",
            "Wind restrictions close the bridge to high-sided vehicles a few days a year.",
        ],
    },
    {
        "key": "amsel",
        "name": "Lake Amsel algae blooms",
        "official": "Veldmark Environment Agency",
        "trade": "Lakeside Notes",
        "weight": 2,
        "titles": [
            "Lake Amsel algae: {what}",
            "Green water on Lake Amsel, {what}",
            "Lake Amsel bloom report: {what}",
        ],
        "facts": [
            (
                "area",
                "scale",
                "The Lake Amsel algae bloom covered {v} at its peak in 2025.",
                "14 square kilometres",
                "19 square kilometres",
            ),
            (
                "cause",
                "impact",
                "The Lake Amsel algae blooms are driven by {v}.",
                "phosphorus runoff from farmland",
                None,
            ),
            (
                "ban",
                "timeline",
                "A fishing ban on Lake Amsel lasted {v} in 2025.",
                "six weeks",
                "nine weeks",
            ),
            (
                "fund",
                "cost",
                "The province set aside {v} to clean up Lake Amsel.",
                "40 million crowns",
                None,
            ),
            (
                "monitor",
                "organisation",
                "Water quality on Lake Amsel is monitored by {v}.",
                "the Veldmark Environment Agency",
                None,
            ),
        ],
        "filler": [
            "Swimmers were advised to avoid the northern beaches during the summer.",
            "Farmers in the catchment have been offered grants for buffer strips.",
            "The lake supplies drinking water to several villages after treatment.",
            "Volunteers sample the water every week from May to September.",
        ],
    },
    {
        "key": "tessaly",
        "name": "Tessaly Robotics",
        "official": "Veldmark Statistics Office",
        "trade": "Island Wire Service",
        "weight": 2,
        "titles": [
            "Tessaly Robotics: {what}",
            "Inside Tessaly Robotics, {what}",
            "Tessaly Robotics results: {what}",
        ],
        "facts": [
            ("founded", "timeline", "Tessaly Robotics was founded in {v}.", "2017", None),
            (
                "revenue",
                "finance",
                "Tessaly Robotics reported revenue of {v} for 2025.",
                "310 million crowns",
                "290 million crowns",
            ),
            ("employees", "finance", "Tessaly Robotics employs {v} people.", "1,150", "1,400"),
            (
                "product",
                "organisation",
                "Tessaly Robotics builds {v}.",
                "warehouse picking arms",
                None,
            ),
            (
                "hq",
                "organisation",
                "Tessaly Robotics has its headquarters in {v}.",
                "Port Hallen",
                None,
            ),
        ],
        "filler": [
            "The company sells mostly to logistics firms on the mainland.",
            "Analysts expect demand for warehouse automation to keep growing.",
            "Its newest factory sits next to the old cannery in the harbour district.",
            "The firm recruits engineers from the technical college in Veldby.",
        ],
    },
    {
        "key": "marrow",
        "name": "Marrow Line high-speed rail",
        "official": "Provincial Infrastructure Board",
        "trade": "Rail Business Review",
        "weight": 3,
        "titles": [
            "Marrow Line rail: {what}",
            "High-speed rail on the Marrow Line, {what}",
            "Marrow Line progress: {what}",
        ],
        "facts": [
            (
                "length",
                "scale",
                "The Marrow Line high-speed railway is {v} long.",
                "212 kilometres",
                None,
            ),
            (
                "speed",
                "scale",
                "Trains on the Marrow Line will run at up to {v}.",
                "280 kilometres per hour",
                "300 kilometres per hour",
            ),
            (
                "journey",
                "impact",
                "The Marrow Line will cut the journey from Port Hallen to Veldby to {v}.",
                "58 minutes",
                "65 minutes",
            ),
            ("opening", "timeline", "The Marrow Line is scheduled to open in {v}.", "2027", "2026"),
            (
                "cost",
                "cost",
                "The Marrow Line is budgeted at {v}.",
                "6.4 billion crowns",
                "5.9 billion crowns",
            ),
            ("stations", "scale", "The Marrow Line will have {v} stations.", "9", None),
        ],
        "filler": [
            "Tunnelling under the central ridge was the most difficult section.",
            "Freight operators will share the line at night.",
            "Residents along the route asked for noise barriers near the villages.",
            "Test runs are planned on the completed northern section.",
        ],
    },
    {
        "key": "orrin",
        "name": "Orrin Valley grape harvest",
        "official": "Veldmark Statistics Office",
        "trade": "Harbour Ledger",
        "weight": 2,
        "titles": [
            "Orrin Valley harvest: {what}",
            "Grapes in the Orrin Valley, {what}",
            "Orrin Valley wine growers: {what}",
        ],
        "facts": [
            (
                "harvest",
                "scale",
                "The Orrin Valley grape harvest reached {v} in 2025.",
                "41,000 tonnes",
                "38,500 tonnes",
            ),
            (
                "frost",
                "impact",
                "A late frost in {v} damaged vines in the Orrin Valley.",
                "April 2025",
                "May 2025",
            ),
            (
                "members",
                "organisation",
                "The Orrin Valley growers cooperative has {v} members.",
                "230",
                None,
            ),
            (
                "exports",
                "finance",
                "Exports take {v} of the Orrin Valley's wine.",
                "35 percent",
                None,
            ),
            (
                "price",
                "cost",
                "Orrin Valley growers were paid {v} per tonne of grapes in 2025.",
                "1,900 crowns",
                "2,100 crowns",
            ),
        ],
        "filler": [
            "Most vineyards sit on the south-facing slopes above the river.",
            "Growers have been planting frost-tolerant varieties.",
            "The harvest festival in the valley draws visitors from the mainland.",
            "Seasonal pickers come from the neighbouring islands each autumn.",
        ],
    },
]

WHAT = {
    "scale": ["how big it is", "the numbers", "a closer look at the scale"],
    "timeline": ["the timeline", "key dates", "when it happened"],
    "cost": ["the money", "counting the cost", "the budget"],
    "impact": ["the effects", "what changed", "winners and losers"],
    "organisation": ["who is behind it", "the organisations involved", "who runs it"],
    "finance": ["the figures", "the latest results", "the business case"],
}
# The earliest date a document can state a fact: no report of a 2025 figure before it exists.
NOT_BEFORE: dict[tuple[str, str], date] = {
    ("kestrel", "commissioned"): date(2024, 10, 1),
    ("kestrel", "birds"): date(2025, 3, 1),
    ("corvel", "opened"): date(2023, 4, 1),
    ("corvel", "crossings"): date(2023, 6, 1),
    ("amsel", "area"): date(2025, 8, 1),
    ("amsel", "ban"): date(2025, 8, 1),
    ("tessaly", "revenue"): date(2026, 2, 1),
    ("orrin", "harvest"): date(2025, 10, 15),
    ("orrin", "frost"): date(2025, 4, 20),
    ("orrin", "price"): date(2025, 11, 1),
}
OPENERS = [
    "This report looks at one of the province's projects.",
    "New details have emerged this week.",
    "Here is the latest from our correspondents.",
    "Readers have asked for an update.",
]


def _source(rng: random.Random, topic: dict[str, Any], wrong: bool) -> str:
    """Wrong figures come mostly from blogs, forums and wires; right ones mostly from the
    topic's official body, newspapers and its trade press."""
    if wrong:
        kind = rng.choices(["blog", "forum", "wire", "newspaper"], [4, 4, 2, 1])[0]
        return rng.choice(_BY_KIND[kind])
    choice = rng.choices(["official", "trade", "newspaper", "wire", "blog"], [3, 3, 4, 3, 1])[0]
    if choice == "official":
        return str(topic["official"])
    if choice == "trade":
        return str(topic["trade"])
    return rng.choice(_BY_KIND[choice])


def _document(rng: random.Random, number: int) -> dict[str, Any]:
    topic = rng.choices(TOPICS, [t["weight"] for t in TOPICS])[0]
    day = START + timedelta(days=rng.randrange((END - START).days))
    known = [f for f in topic["facts"] if NOT_BEFORE.get((topic["key"], f[0]), START) <= day]
    facts = rng.sample(known, min(len(known), rng.choice([1, 1, 2, 2, 3])))
    conflicted = [f for f in facts if f[4] is not None]
    wrong = bool(conflicted) and rng.random() < 0.22
    sentences = [rng.choice(OPENERS)]
    for key, _aspect, template, value, other in facts:
        use_wrong = wrong and other is not None and key == conflicted[0][0]
        sentences.append(template.format(v=other if use_wrong else value))
    sentences.append(rng.choice(topic["filler"]))
    what = rng.choice(WHAT[facts[0][1]])
    return {
        "id": f"d{number:04d}",
        "title": rng.choice(topic["titles"]).format(what=what),
        "date": day.isoformat(),
        "source": _source(rng, topic, wrong),
        "text": " ".join(sentences),
    }


def _syndicated(rng: random.Random, original: dict[str, Any], number: int) -> dict[str, Any]:
    """A near-duplicate: the same story under another outlet, reworded title, one filler
    sentence swapped, a day or two later."""
    topic = next(t for t in TOPICS if any(f in original["text"] for f in t["filler"]))
    sentences = original["text"].split(". ")
    last = sentences[-1].rstrip(".")
    fillers = [f.rstrip(".") for f in topic["filler"] if f.rstrip(".") != last]
    sentences[-1] = rng.choice(fillers) + "."
    day = date.fromisoformat(original["date"]) + timedelta(days=rng.choice([0, 1, 2]))
    source = rng.choice([s["name"] for s in SOURCES if s["name"] != original["source"]])
    return {
        "id": f"d{number:04d}",
        "title": f"{original['title']} (reprint)",
        "date": min(day, END).isoformat(),
        "source": source,
        "text": ". ".join(sentences),
    }


def build() -> dict[str, Any]:
    """The corpus as a JSON-able dict: ``{"about", "sources", "documents"}``."""
    rng = random.Random(SEED)
    documents: list[dict[str, Any]] = []
    for number in range(1, DOCUMENTS + 1):
        if documents and rng.random() < 0.08:
            documents.append(_syndicated(rng, rng.choice(documents), number))
        else:
            documents.append(_document(rng, number))
    return {
        "about": (
            "Fictional news about the invented island province of Veldmark, for the research "
            "example. No place, company, outlet or event in it is real."
        ),
        "sources": SOURCES,
        "documents": documents,
    }


def encode(corpus: dict[str, Any]) -> bytes:
    """The corpus as the bytes shipped: canonical JSON, gzip without a timestamp."""
    text = json.dumps(corpus, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(encode(build()))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
