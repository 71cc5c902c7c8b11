"""The citation pass: every claim of the answer must be stated by a document it cites.

A deterministic check, not a model: a document supports a claim when it contains every number
of the claim and nearly all of its words (`supports`). A claim no cited document supports is
removed; a claim some of whose citations do not support it keeps only those that do. Both are
listed in the answer's `flagged`, with the reason.
"""

from __future__ import annotations

from hubspoke.examples.research.corpus import STOPWORDS, document, source_kind, words
from hubspoke.examples.research.schemas import Answer, Claim, Flag, Source, Synthesis

__all__ = ["MISSING_WORDS_ALLOWED", "check_citations", "supports"]

MISSING_WORDS_ALLOWED = 0.2
"""The share of a claim's content words a supporting document may lack (a paraphrase's
connecting words); its numbers must all be there."""


def _content(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS and (len(w) > 2 or w[0].isdigit())]


def supports(claim: str, text: str) -> tuple[bool, str]:
    """Whether a document's `text` states `claim`, and if not, what it lacks.

    Returns:
        ``(True, "")``, or ``(False, reason)`` naming the numbers or words the text lacks.
    """
    have = set(words(text))
    content = _content(claim)
    if not content:
        return False, "the claim has no content words to check"
    numbers = [w for w in content if w[0].isdigit() and w not in have]
    if numbers:
        return False, f"it does not state {', '.join(dict.fromkeys(numbers))}"
    missing = [w for w in content if w not in have]
    if len(missing) > MISSING_WORDS_ALLOWED * len(content):
        return False, f"it does not mention {', '.join(dict.fromkeys(missing))}"
    return True, ""


def _check(claim: Claim) -> tuple[list[str], list[str]]:
    """The claim's supporting citations, and why each other one fails."""
    good: list[str] = []
    why: list[str] = []
    for doc_id in dict.fromkeys(claim.citations):
        doc = document(doc_id)
        if doc is None:
            why.append(f"{doc_id} is not in the corpus")
            continue
        ok, reason = supports(claim.text, doc["text"])
        if ok:
            good.append(doc_id)
        else:
            why.append(f"{doc_id}: {reason}")
    return good, why


def _source(doc_id: str) -> Source:
    doc = document(doc_id)
    assert doc is not None  # only checked citations get here
    return Source(
        id=doc_id,
        title=doc["title"],
        date=doc["date"],
        source=doc["source"],
        source_kind=source_kind(doc["source"]),
    )


def check_citations(synthesis: Synthesis) -> Answer:
    """Check every citation of `synthesis` against the cited document's text.

    Returns:
        The answer: claims that cite only documents stating them; `flagged` the claims
        removed (no support) and those whose unsupported citations were dropped.
    """
    claims: list[Claim] = []
    flagged: list[Flag] = []
    for claim in synthesis.claims:
        good, why = _check(claim)
        if not good:
            flagged.append(
                Flag(
                    text=claim.text,
                    citations=claim.citations,
                    action="removed",
                    reason="no cited document states it: " + "; ".join(why),
                )
            )
            continue
        if why:
            flagged.append(
                Flag(
                    text=claim.text,
                    citations=[c for c in claim.citations if c not in good],
                    action="citations_dropped",
                    reason="; ".join(why),
                )
            )
        claims.append(Claim(text=claim.text, citations=good))
    cited = sorted({c for claim in claims for c in claim.citations})
    text = " ".join(f"{c.text} [{', '.join(c.citations)}]" for c in claims)
    return Answer(
        question=synthesis.question,
        claims=claims,
        flagged=flagged,
        conflicts=synthesis.conflicts,
        sources=[_source(doc_id) for doc_id in cited],
        text=text or "The corpus holds no claim that its documents support.",
    )
