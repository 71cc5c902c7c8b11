"""PostgreSQL URLs: telling one from a file path, and showing one without its password."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["POSTGRES_SCHEMES", "is_postgres_url", "redact_url"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""The URL prefixes that name a PostgreSQL database rather than an SQLite file."""


def is_postgres_url(location: str | os.PathLike[str]) -> bool:
    """Whether `location` is a PostgreSQL URL (``postgresql://...`` or ``postgres://...``)."""
    return isinstance(location, str) and location.strip().lower().startswith(POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """`url` with its password replaced by ``***`` (in the user part and in a ``password=``
    query parameter), for messages and hints; other parts are kept as given.

    >>> redact_url("postgresql://ann:s3cret@db.example:5432/runs?sslmode=require")
    'postgresql://ann:***@db.example:5432/runs?sslmode=require'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://***"  # unparseable: show nothing of the rest
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k == "password" for k, _ in pairs):
            query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
