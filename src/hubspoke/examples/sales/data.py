"""The bundled fictional data and the tools that read it (read-only, deterministic)."""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["AS_OF", "company_signals", "list_people", "search_companies"]

AS_OF = date(2026, 11, 1)


@cache
def _data() -> dict[str, Any]:
    text = resources.files("hubspoke.examples.sales").joinpath("data/companies.json").read_text()
    data: dict[str, Any] = json.loads(text)
    data["by_id"] = {c["id"]: c for c in data["companies"]}
    people: dict[str, list[dict[str, Any]]] = {}
    for person in data["people"]:
        people.setdefault(person["company_id"], []).append(person)
    data["people_by_company"] = people
    return data


def search_companies(industry: str, region: str, min_employees: int = 0) -> list[dict[str, Any]]:
    """Find companies by industry, region and minimum head count."""
    return [
        {
            "id": c["id"],
            "name": c["name"],
            "employees": c["employees"],
            "technologies": c["technologies"],
        }
        for c in _data()["companies"]
        if c["industry"] == industry.lower()
        and c["region"] == region.upper()
        and c["employees"] >= min_employees
    ]


def company_signals(company_id: str) -> dict[str, Any]:
    """A company's recent signals (dated news) and its technologies."""
    company = _data()["by_id"].get(company_id)
    if company is None:
        return {"error": f"no company {company_id!r}"}
    return {
        "id": company["id"],
        "name": company["name"],
        "employees": company["employees"],
        "technologies": company["technologies"],
        "signals": company["signals"],
    }


def list_people(company_id: str) -> list[dict[str, Any]]:
    """The people we know at a company, with titles and departments."""
    return list(_data()["people_by_company"].get(company_id, []))
