"""Generate the sales example's bundled data: fictional companies, people and signals.

Deterministic (seeded). Run `python scripts/generate_sales_data.py` to rewrite
`src/hubspoke/examples/sales/data/companies.json`. Everything is invented: names are built from
syllables, domains end in `.example`, and no record describes a real company or person.

The demo's ideal customer profile (logistics, EMEA, 200+ employees) matches a block of companies
shaped so that real runs exercise the failure ladder naturally: one top company has nobody who
could decide on a purchase (its contact item escalates), and some have only stale signals (their
first draft omits the cited signal and is retried with the validation errors).
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/hubspoke/examples/sales/data/companies.json"
AS_OF = date(2026, 11, 1)

INDUSTRIES = [
    "logistics",
    "fintech",
    "healthcare",
    "retail",
    "manufacturing",
    "energy",
    "saas",
    "media",
]
REGIONS = {
    "EMEA": ["Germany", "France", "Netherlands", "Poland", "Spain", "Sweden", "UK", "Italy"],
    "NA": ["USA", "Canada"],
    "APAC": ["Japan", "Singapore", "Australia", "India"],
    "LATAM": ["Brazil", "Mexico", "Chile"],
}
TECH = [
    "kubernetes",
    "snowflake",
    "sap",
    "salesforce",
    "aws",
    "azure",
    "gcp",
    "postgres",
    "kafka",
    "oracle",
    "databricks",
    "hubspot",
    "shopify",
    "terraform",
]
FIRST = [
    "Nord",
    "Vel",
    "Kar",
    "Sol",
    "Brio",
    "Tal",
    "Quen",
    "Ostra",
    "Lum",
    "Ferr",
    "Astr",
    "Mar",
    "Vint",
    "Cor",
    "Pel",
    "Zan",
    "Rho",
    "Elv",
    "Grav",
    "Hal",
    "Istr",
    "Jun",
    "Kest",
    "Lor",
]
SECOND = ["wind", "ora", "ex", "via", "tek", "line", "port", "is", "ano", "ium", "eda", "ard"]
SUFFIX = {
    "logistics": ["Logistics", "Freight", "Cargo", "Transport", "Shipping"],
    "fintech": ["Pay", "Capital", "Ledger", "Finance"],
    "healthcare": ["Health", "Care", "Medical", "Clinics"],
    "retail": ["Retail", "Stores", "Market", "Goods"],
    "manufacturing": ["Industries", "Works", "Manufacturing", "Components"],
    "energy": ["Energy", "Power", "Grid", "Renewables"],
    "saas": ["Cloud", "Software", "Systems", "Labs"],
    "media": ["Media", "Studios", "Publishing", "Broadcast"],
}
SIGNALS = {
    "funding": "raised a {n}M EUR series {r} round to expand its {area}",
    "hiring": "is hiring {n} engineers for its {area} team",
    "expansion": "opened a new {area} hub in {place}",
    "product_launch": "launched a {area} offering for mid-market customers",
    "leadership_change": "appointed a new Chief Operating Officer to lead {area}",
    "tech_migration": "is migrating its {area} platform to {tech}",
}
AREAS = [
    "route planning",
    "warehouse",
    "last-mile delivery",
    "fleet",
    "customs",
    "data platform",
    "cross-border freight",
    "cold chain",
]
PLACES = ["Rotterdam", "Hamburg", "Gdansk", "Valencia", "Gothenburg", "Milan", "Lyon", "Leeds"]
GIVEN = [
    "Ada",
    "Bram",
    "Chiara",
    "Dariusz",
    "Elin",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kaja",
    "Luca",
    "Mira",
    "Nils",
    "Olga",
    "Pavel",
    "Rosa",
    "Sven",
    "Tereza",
    "Ulrich",
    "Vera",
    "Wim",
    "Yara",
    "Zofia",
    "Anouk",
    "Bastien",
    "Carla",
    "Dmitri",
    "Emre",
    "Freya",
]
FAMILY = [
    "Albers",
    "Bergmann",
    "Castell",
    "Dvorak",
    "Eklund",
    "Fontaine",
    "Gallo",
    "Hartmann",
    "Iversen",
    "Jansen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Orsini",
    "Petersen",
    "Quint",
    "Ruiz",
    "Sandoval",
    "Tamm",
    "Ulloa",
    "Vidal",
    "Wojcik",
    "Zeller",
]
DECIDERS = [
    ("Chief Operating Officer", "Executive", "c_level"),
    ("VP Operations", "Operations", "vp"),
    ("VP Engineering", "Engineering", "vp"),
    ("Director of Logistics", "Logistics", "director"),
    ("Head of Supply Chain", "Supply Chain", "director"),
    ("CTO", "Executive", "c_level"),
]
OTHERS = [
    ("Operations Analyst", "Operations", "ic"),
    ("Account Manager", "Sales", "manager"),
    ("Marketing Coordinator", "Marketing", "ic"),
    ("HR Business Partner", "People", "manager"),
    ("Software Engineer", "Engineering", "ic"),
    ("Office Manager", "Administration", "manager"),
    ("Finance Controller", "Finance", "manager"),
]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def make_signal(rng: random.Random, sid: str, days_ago: int) -> dict[str, str]:
    kind = rng.choice(sorted(SIGNALS))
    summary = SIGNALS[kind].format(
        n=rng.choice([8, 12, 20, 35, 60]),
        r=rng.choice("ABC"),
        area=rng.choice(AREAS),
        place=rng.choice(PLACES),
        tech=rng.choice(["kubernetes", "snowflake", "sap"]),
    )
    return {
        "id": sid,
        "date": (AS_OF - timedelta(days=days_ago)).isoformat(),
        "kind": kind,
        "summary": summary,
    }


def main() -> None:
    rng = random.Random(20261101)
    names: set[str] = set()
    companies: list[dict[str, object]] = []
    people: list[dict[str, str]] = []

    def new_name(industry: str) -> str:
        while True:
            name = f"{rng.choice(FIRST)}{rng.choice(SECOND)} {rng.choice(SUFFIX[industry])}"
            if name not in names:
                names.add(name)
                return name

    def add_people(cid: str, domain: str, deciders: int, others: int) -> None:
        picks = rng.sample(DECIDERS, deciders) + rng.sample(OTHERS, others)
        for title, dept, seniority in picks:
            given, family = rng.choice(GIVEN), rng.choice(FAMILY)
            people.append(
                {
                    "id": f"p{len(people) + 1:04d}",
                    "company_id": cid,
                    "name": f"{given} {family}",
                    "title": title,
                    "department": dept,
                    "seniority": seniority,
                    "email": f"{given.lower()}.{family.lower()}@{domain}",
                }
            )

    # 18 companies matching the demo's ICP, shaped on purpose (see the module docstring).
    # (recent signals, stale signals, tech overlap, employees, deciders)
    icp_shapes = [
        (3, 0, 3, 4200, 2),
        (2, 1, 3, 1800, 2),
        (2, 0, 2, 950, 1),
        (1, 1, 3, 3100, 1),
        (2, 0, 2, 640, 2),
        (0, 2, 3, 7400, 0),  # 6th: ranks high, nobody to decide
        (1, 0, 2, 1200, 1),
        (0, 1, 3, 2600, 2),  # 8th: only a stale signal
        (1, 0, 2, 480, 1),
        (0, 2, 2, 5100, 1),  # 10th: only stale signals
        (1, 0, 1, 300, 1),
        (0, 1, 1, 720, 1),
        (0, 0, 1, 260, 2),
        (1, 0, 0, 410, 1),
        (0, 0, 0, 220, 1),
        (0, 1, 0, 350, 1),
        (0, 0, 1, 205, 0),
        (0, 0, 0, 230, 1),
    ]
    for n, (recent, stale, overlap, employees, deciders) in enumerate(icp_shapes):
        cid = f"c{len(companies) + 1:03d}"
        name = new_name("logistics")
        domain = f"{slug(name)}.example"
        tech = ["kubernetes", "snowflake", "sap"][:overlap] + rng.sample(TECH[3:], 2)
        signals = [make_signal(rng, f"{cid}-s{i + 1}", rng.randint(5, 80)) for i in range(recent)]
        signals += [
            make_signal(rng, f"{cid}-s{recent + i + 1}", rng.randint(150, 400))
            for i in range(stale)
        ]
        signals.sort(key=lambda s: s["date"], reverse=True)
        companies.append(
            {
                "id": cid,
                "name": name,
                "domain": domain,
                "industry": "logistics",
                "employees": employees,
                "region": "EMEA",
                "country": rng.choice(REGIONS["EMEA"]),
                "technologies": tech,
                "signals": signals,
                "description": f"{name} runs {rng.choice(AREAS)} and {rng.choice(AREAS)} services "
                f"across {rng.choice(REGIONS['EMEA'])}.",
            }
        )
        add_people(cid, domain, deciders, 2 + n % 3)

    while len(companies) < 320:
        cid = f"c{len(companies) + 1:03d}"
        industry = rng.choice(INDUSTRIES)
        region = rng.choice(sorted(REGIONS))
        if industry == "logistics" and region == "EMEA":
            region = "NA"  # keep the ICP block exactly as shaped above
        name = new_name(industry)
        domain = f"{slug(name)}.example"
        employees = int(10 ** rng.uniform(1.3, 4.3))
        signals = [
            make_signal(rng, f"{cid}-s{i + 1}", rng.randint(3, 420))
            for i in range(rng.randint(0, 4))
        ]
        signals.sort(key=lambda s: s["date"], reverse=True)
        companies.append(
            {
                "id": cid,
                "name": name,
                "domain": domain,
                "industry": industry,
                "employees": employees,
                "region": region,
                "country": rng.choice(REGIONS[region]),
                "technologies": rng.sample(TECH, rng.randint(2, 6)),
                "signals": signals,
                "description": f"{name} is a {industry} company in {rng.choice(REGIONS[region])}.",
            }
        )
        add_people(cid, domain, rng.randint(0, 3), rng.randint(0, 3))

    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = {"as_of": AS_OF.isoformat(), "companies": companies, "people": people}
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {len(companies)} companies and {len(people)} people to {OUT}")


if __name__ == "__main__":
    main()
