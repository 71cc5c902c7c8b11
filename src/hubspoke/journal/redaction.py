"""Secrets kept out of the journal: which values are secret, and how they are found and replaced.

A `Redactor` knows three kinds of secret:

- **values**: the values of secret-looking environment variables (read again whenever the
  environment changes, so a key exported after the foreman was built is known by the next
  event), the password and token parts of every URL found in any environment variable, and the
  literal values it was given;
- **URL credentials** in the text itself: ``scheme://user:PASSWORD@host`` and
  ``scheme://TOKEN@host`` (a user part of 16 characters or more), whatever the password;
- **patterns**: regular expressions it was given, searched in every string.

A variable is secret-looking by the words of its name (`is_secret_name`), split on ``_``,
digits and case changes: a hint word, singular or plural (``AUTH``, ``AUTHORIZATION``,
``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASS``, ``DSN``...: ``GITHUB_TOKENS``,
``HTTP_AUTHORIZATION``), a word ending in a long hint (``BEARERTOKEN``), a ``KEY`` that no
``ID``, ``NAME``, ``FILE``, ``PATH``... follows (``STRIPE_KEY_LIVE``, not
``AWS_ACCESS_KEY_ID``), ``API KEY`` or ``PRIVATE KEY``; hint words run together count as
they would apart (``AUTHTOKEN``, ``SECRETKEY``, ``PRIVATEKEY``). Whole words, so ``AUTHOR``,
``KEYBOARD`` and ``TOKENIZERS_PARALLELISM`` are not secret.

A value is searched in every form it can take in the journal: as it is, JSON-escaped (``"`` →
``\\"``, ``\\`` → ``\\\\``, control characters) both with and without ``ensure_ascii`` (``é`` →
``\\u00e9``), and escaped twice (a JSON text inside a string). Each occurrence is replaced with
``[REDACTED]``.

On the hot path (`Redactor.scrub_encoded`, once per journal event) the check is a substring
search of the event's JSON text for each form, a search for ``://``, and a comparison of the
environment with the copy taken at the last check (one C-level dict comparison); the event is
decoded and rebuilt only when something was found. Patterns need each string of the event
decoded, so they cost a walk of the event's data: only when patterns are given. Measured with
`timeit` on a 2-CPU machine, two secrets in a 37-variable environment, on a function dispatch's
three events: 0.68 µs per event (0.29 µs of it the environment check), against 0.22 µs for the
text search alone that this replaced; walking the decoded data instead of searching the text
took 2.7 µs per event.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic_core import to_json

__all__ = ["MIN_SECRET_LENGTH", "REDACTED", "Redactor", "is_secret_name"]

REDACTED = "[REDACTED]"
"""What a secret is replaced with."""

MIN_SECRET_LENGTH = 8
"""Shorter values are not taken as secrets: replacing every occurrence of a short string (a
one-letter password, ``true``, ``1234``) would scrub ordinary text. A short password inside a
URL is still caught there, by its context (``://user:PASSWORD@``)."""

TOKEN_IN_URL_LENGTH = 16
"""A URL's user part without a password (``https://TOKEN@host``) is taken as a token from this
length on; shorter ones are user names (``ssh://git@host``, ``postgres@``)."""

_HINTS = frozenset(
    {
        "AUTH",
        "OAUTH",
        "AUTHORIZATION",
        "AUTHORISATION",
        "BEARER",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "PASS",
        "PASSPHRASE",
        "CREDENTIAL",
        "CREDS",
        "APIKEY",
        "DSN",
    }
)
"""A variable whose name holds one of these words is secret (`MY_AUTH`, `GITHUB_TOKEN`)."""
_ENDINGS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL")
"""...or a word ending in one of these (`BEARERTOKEN`, `CLIENTSECRET`, `DBPASSWORD`): no
ordinary word ends so, unlike `PASS` (`BYPASS`) or `KEY` (`MONKEY`)."""
_PARTS = _HINTS | {"KEY", "API", "PRIVATE", "ACCESS"}
"""The words a compound word is read as when it is made of them only (`AUTHTOKEN`,
`SECRETKEY`, `PRIVATEKEY`, `ACCESSKEY`), each also in the plural (`SECRETKEYS`)."""
_PHRASES = frozenset({("API", "KEY"), ("PRIVATE", "KEY")})
"""...or one of these word pairs anywhere (`API_KEY_FILE`)."""
_NAMES_A_KEY = frozenset({"ID", "IDS", "NAME", "ALIAS", "ARN", "FILE", "PATH", "DIR", "TYPE"})
"""A word `KEY` is secret unless one of these follows it: the value then names or locates a
key rather than holds it (`AWS_ACCESS_KEY_ID`, `SSL_KEY_FILE`; but `STRIPE_KEY_LIVE`)."""
_NOT_SECRET_NAMES = frozenset({"SSH_AUTH_SOCK"})
"""Names the words above would match whose values are not secrets (a socket's path)."""

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]+|[a-z]+")
"""The words of a variable name: split on `_`, digits and other signs, and on case
(`GitHubToken` → Git, Hub, Token; `APIKey` → API, Key)."""


# A URL's credentials, in two dialects. `_URL_IN_JSON` reads JSON text as written: a string ends
# at `"`, and `\x` is one escaped character, so a match never cuts an escape in two and
# replacing it keeps the JSON valid. `_URL_IN_TEXT` reads a decoded string. The scheme is
# bounded so that a long run of letters before `://` costs linear time; the password runs to the
# last `@` before the host (an unencoded `@` in a password is a common mistake).
_SCHEME = r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,31}://)"
_URL_IN_JSON = re.compile(
    _SCHEME + r"(?:(?P<user>[^\s/?#@:\"\\]*):(?P<password>(?:[^\s/?#\"\\]|\\.)+)"
    r"|(?P<token>[^\s/?#@:\"\\]{" + str(TOKEN_IN_URL_LENGTH) + r",}))@"
)
_URL_IN_TEXT = re.compile(
    _SCHEME + r"(?:(?P<user>[^\s/?#@:]*):(?P<password>[^\s/?#]+)"
    r"|(?P<token>[^\s/?#@:]{" + str(TOKEN_IN_URL_LENGTH) + r",}))@"
)


def _redact_url(match: re.Match[str]) -> str:
    if match["token"] is not None:
        return f"{match['scheme']}{REDACTED}@"
    return f"{match['scheme']}{match['user']}:{REDACTED}@"


def _singular(word: str) -> str:
    """A part in the plural as its singular (`TOKENS` → `TOKEN`, `KEYS` → `KEY`); any other
    word as it is (`ACCESS`, `CREDS`)."""
    return word[:-1] if word.endswith("S") and word[:-1] in _PARTS else word


@functools.lru_cache(maxsize=4096)
def _read(word: str) -> tuple[str, ...]:
    """What one upper-case word of a name counts as: the parts it is made of (`AUTHTOKEN` →
    `AUTH`, `TOKEN`; `TOKENS` → `TOKEN`), the hint it ends with (`BEARERTOKEN` → `TOKEN`), or
    itself (`AUTHOR`, `KEYBOARD`)."""
    # made[i]: a reading of word[:i] as parts, if there is one (a word is short: quadratic)
    made: list[tuple[str, ...] | None] = [(), *([None] * len(word))]
    for end in range(1, len(word) + 1):
        for start in range(end):
            before = made[start]
            if before is not None and (part := _singular(word[start:end])) in _PARTS:
                made[end] = (*before, part)
                break
    if made[-1] is not None:
        return made[-1]
    for ending in _ENDINGS:
        if word.endswith((ending, ending + "S")):
            return (ending,)
    return (word,)


def is_secret_name(name: str, extra_names: Iterable[str] = ()) -> bool:
    """Whether an environment variable's name says its value is a secret.

    The name is split into words on `_`, digits and case changes, and hints match whole words
    only, in the singular or the plural: a word such as `AUTH`, `AUTHORIZATION`, `TOKEN`,
    `SECRET`, `PASSWORD`, `PASS`, `DSN` (`_HINTS`); a word ending in `TOKEN`, `SECRET`,
    `PASSWORD`, `PASSWD`, `PASSPHRASE` or `CREDENTIAL` (`BEARERTOKEN`); a word `KEY` unless
    `ID`, `NAME`, `FILE`, `PATH`... follows it (`_NAMES_A_KEY`); the pairs `API KEY` and
    `PRIVATE KEY`. A word made of hints run together counts as those words (`AUTHTOKEN`,
    `SECRETKEY`, `APITOKEN`, `PRIVATEKEY`, `ACCESSKEY`).

    So `MY_AUTH`, `GITHUB_TOKEN`, `GITHUB_TOKENS`, `HTTP_AUTHORIZATION`, `AWS_SECRET_ACCESS_KEY`,
    `OPENAI_API_KEY`, `STRIPE_KEY_LIVE`, `DB_PASS`, `SENTRY_DSN`, `AUTHTOKEN`, `githubToken`
    are secret; `AUTHOR`, `GIT_AUTHOR_NAME`, `TOKENIZERS_PARALLELISM`, `KEYBOARD`,
    `AWS_ACCESS_KEY_ID`, `PWD`, `SSH_AUTH_SOCK` are not. `extra_names` are names that are
    secret whatever their words (compared without case).
    """
    upper = name.upper()
    if any(upper == extra.upper() for extra in extra_names):
        return True
    if upper in _NOT_SECRET_NAMES:
        return False
    words = [part for word in _WORD.findall(name) for part in _read(word.upper())]
    if not _HINTS.isdisjoint(words):
        return True
    for i, word in enumerate(words):
        if word == "KEY" and (i + 1 == len(words) or words[i + 1] not in _NAMES_A_KEY):
            return True
    return not _PHRASES.isdisjoint(itertools.pairwise(words))


def _worth_hiding(value: str) -> bool:
    """Long enough to be scrubbed safely, and not a number (anything `float` reads, such as
    ``86400000``, ``1e-9`` or ``infinity``). Booleans are shorter than 8 characters."""
    if len(value) < MIN_SECRET_LENGTH:
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


def _url_credentials(value: str) -> set[str]:
    """The passwords and tokens of the URLs in a variable's value, as written and decoded."""
    found: set[str] = set()
    if "://" not in value:
        return found
    for match in _URL_IN_TEXT.finditer(value):
        found.add(match["password"] or match["token"])
    try:
        parts = urlsplit(value.strip())
    except ValueError:  # a malformed URL (an unclosed IPv6 bracket, say)
        parts = None
    if parts is not None and parts.scheme and "@" in parts.netloc:
        if parts.password:
            found.add(parts.password)
        elif parts.username and len(parts.username) >= TOKEN_IN_URL_LENGTH:
            found.add(parts.username)
    return found | {unquote(v) for v in found}


def _forms(value: str) -> set[str]:
    """Every form a value can take in the journal: as it is, JSON-escaped with and without
    `ensure_ascii`, and escaped twice (a JSON text held in a JSON string)."""
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    ascii_escaped = json.dumps(value)[1:-1]
    return {
        value,
        escaped,
        ascii_escaped,
        json.dumps(escaped, ensure_ascii=False)[1:-1],
        json.dumps(ascii_escaped, ensure_ascii=False)[1:-1],
        json.dumps(ascii_escaped)[1:-1],
    }


def _environment() -> Mapping[Any, Any]:
    """The process environment's own dict (bytes on POSIX): comparing it with a copy is one
    C-level dict comparison, where `dict(os.environ)` decodes every entry in Python."""
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else dict(os.environ)


class Redactor:
    """Finds secrets in what the journal writes and replaces them with ``[REDACTED]``.

    Which values are secret (read from `os.environ` at first use, and again at any call after
    the environment changed):

    - the value of every variable whose name says it is secret (`is_secret_name`: whole words
      of the name, singular or plural, such as `TOKEN`, `SECRET`, `PASSWORD`, `AUTH`,
      `AUTHORIZATION`, `DSN`, `API_KEY`, a `KEY` not followed by `ID`, hints run together
      such as `AUTHTOKEN`), and of every variable named in `extra_names`;
    - the password (or the token, a user part of 16 characters or more without a password) of
      every URL in any variable (`DATABASE_URL=postgresql://u:PASSWORD@h/db`), as written and
      percent-decoded;
    - `values`.

    Values shorter than `MIN_SECRET_LENGTH` (8) characters, numbers and booleans are not taken
    from the environment: replacing them everywhere would scrub ordinary text. Besides the
    values, the credentials of any URL in the text (``scheme://user:PASSWORD@``,
    ``scheme://TOKEN@``) are replaced whatever their length, and so is every match of
    `patterns`.

    A value is found in any form the journal can hold it in: as it is, JSON-escaped (with and
    without `ensure_ascii`) and escaped twice. A string in which a replacement would leave a
    secret behind (a secret overlapping ``[REDACTED]`` or an escape) is replaced whole.

    Args:
        extra_names: names of environment variables whose values are secret whatever their
            names say (compared without case), e.g. ``["ACME_PIN_CODE"]``.
        patterns: regular expressions (strings or compiled) searched in every string written;
            each whole match is replaced (use a look-behind to keep a prefix:
            ``r"(?<=session=)\\w+"``).
        values: literal secrets, at least 8 characters each.

    Raises:
        ValueError: a value is shorter than 8 characters or part of ``[REDACTED]``; a pattern
            does not compile or matches the empty string.
        TypeError: a name, pattern or value is not a string.
    """

    def __init__(
        self,
        *,
        extra_names: Iterable[str] = (),
        patterns: Iterable[str | re.Pattern[str]] = (),
        values: Iterable[str] = (),
    ) -> None:
        self.extra_names: tuple[str, ...] = tuple(_checked_names(extra_names))
        self.patterns: tuple[re.Pattern[str], ...] = tuple(_compiled(patterns))
        self.values: tuple[str, ...] = tuple(_checked_values(values))
        self._seen_environment: Mapping[Any, Any] | None = None
        self._secrets: tuple[str, ...] = ()
        self._forms: tuple[str, ...] = ()

    # which values are secret ---------------------------------------------------------------

    @property
    def secrets(self) -> tuple[str, ...]:
        """The literal secrets known now (environment and `values`), longest first."""
        self.refresh()
        return self._secrets

    def refresh(self) -> None:
        """Re-read the secrets if the environment changed since the last check (every
        scrubbing method checks first, unless told not to: `scrub_encoded`'s `recheck`)."""
        environment = _environment()
        if environment == self._seen_environment:
            return
        self._seen_environment = dict(environment)
        found: set[str] = set(self.values)
        for name, value in os.environ.items():
            candidates = _url_credentials(value)
            if is_secret_name(name, self.extra_names):
                candidates |= {value, value.strip()}
            found |= {v for v in candidates if _worth_hiding(v) and v not in REDACTED}
        self._secrets = tuple(sorted(found, key=lambda s: (-len(s), s)))
        forms = {form for secret in found for form in _forms(secret)}
        self._forms = tuple(sorted(forms, key=lambda s: (-len(s), s)))

    # scrubbing -----------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """`text` (plain text: a card's title, a reason) with every secret replaced."""
        self.refresh()
        return self._scrub_string(text) if self._found_in_text(text) else text

    def scrub_encoded(self, text: str, *, recheck: bool = True) -> str:
        """A JSON text (an event's data as the journal writes it) with every secret in its
        strings replaced; `text` itself, the same object, when it holds none (the hot path:
        callers test ``result is text``).

        `recheck=False` skips the check of the environment for new secrets (`refresh`), which
        costs about as much as the rest: for a batch of texts scrubbed after one `refresh`,
        with nothing run in between (the artifacts of a journal's flush).

        Raises:
            ValueError: `text` is not JSON (only when it holds something to scrub).
        """
        # Inlined `refresh` (this runs once per event): one C-level dict comparison.
        if recheck and getattr(os.environ, "_data", None) != self._seen_environment:
            self.refresh()
        forms = self._forms
        for form in forms:
            if form in text:
                break
        else:
            if not ("://" in text and _URL_IN_JSON.search(text)) and not (
                self.patterns and self._pattern_in(json.loads(text))
            ):
                return text
        value = self._scrub_value(json.loads(text))
        clean = _encode(value)
        if any(form in clean for form in forms):
            # A secret made of what surrounds strings (quotes, keys): blank every string.
            clean = _encode(self._scrub_value(value, blank=True))
        return clean

    def scrub_json(self, value: Any) -> Any:
        """A JSON value (dicts, lists, strings, numbers) with every secret in its strings (and
        keys) replaced; `value` itself when it holds none."""
        text = _encode(value)
        clean = self.scrub_encoded(text)
        return value if clean is text else json.loads(clean)

    def _found_in_text(self, text: str) -> bool:
        return (
            any(form in text for form in self._forms)
            or ("://" in text and _URL_IN_TEXT.search(text) is not None)
            or any(p.search(text) for p in self.patterns)
        )

    def _pattern_in(self, value: Any) -> bool:
        """Whether a pattern matches a string (or key) anywhere in a decoded JSON value."""
        if isinstance(value, str):
            return any(p.search(value) for p in self.patterns)
        if isinstance(value, dict):
            return any(self._pattern_in(k) or self._pattern_in(v) for k, v in value.items())
        if isinstance(value, list):
            return any(self._pattern_in(v) for v in value)
        return False

    def _scrub_value(self, value: Any, *, blank: bool = False) -> Any:
        if isinstance(value, str):
            return REDACTED if blank else self._scrub_string(value)
        if isinstance(value, dict):
            return {
                self._scrub_string(k): self._scrub_value(v, blank=blank) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._scrub_value(v, blank=blank) for v in value]
        return value

    def _scrub_string(self, text: str) -> str:
        clean = text
        for form in self._forms:
            if form in clean:
                clean = clean.replace(form, REDACTED)
        if "://" in clean:
            clean = _URL_IN_TEXT.sub(_redact_url, clean)
        for pattern in self.patterns:
            clean = pattern.sub(REDACTED, clean)
        if self._leaks(clean):
            return REDACTED
        return clean

    def _leaks(self, text: str) -> bool:
        """Whether a secret is still there, in the text or in either of its JSON encodings: a
        replacement can meet a secret that overlaps ``[REDACTED]`` or straddles an escape."""
        if not self._forms:
            return False
        written = (text, json.dumps(text, ensure_ascii=False), json.dumps(text))
        return any(form in w for form in self._forms for w in written)


def _encode(value: Any) -> str:
    return to_json(value, fallback=str, inf_nan_mode="null").decode()


def _checked_names(names: Iterable[str]) -> Iterable[str]:
    for name in _listed(names, "extra_names"):
        if not isinstance(name, str) or not name:
            raise TypeError(f"extra_names must hold variable names (strings), not {name!r}")
        yield name


def _compiled(patterns: Iterable[str | re.Pattern[str]]) -> Iterable[re.Pattern[str]]:
    for pattern in _listed(patterns, "patterns"):
        if isinstance(pattern, str):
            try:
                pattern = re.compile(pattern)
            except re.error as e:
                raise ValueError(f"secret pattern {pattern!r} does not compile: {e}") from None
        if not isinstance(pattern, re.Pattern) or not isinstance(pattern.pattern, str):
            raise TypeError(f"patterns must hold regular expressions (str), not {pattern!r}")
        if pattern.search("") is not None:
            raise ValueError(
                f"secret pattern {pattern.pattern!r} matches the empty string, so it would "
                "mark every position of every text; make it match at least one character"
            )
        yield pattern


def _checked_values(values: Iterable[str]) -> Iterable[str]:
    for value in _listed(values, "values"):
        if not isinstance(value, str):
            raise TypeError(f"values must hold secrets as strings, not {type(value).__name__}")
        if len(value) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"a secret value of {len(value)} characters is too short to scrub safely "
                f"(every occurrence in ordinary text would go; at least {MIN_SECRET_LENGTH} "
                "are needed): give a pattern with its context instead, e.g. "
                r"patterns=[r'(?<=pin=)\d+']"
            )
        if value in REDACTED:
            raise ValueError(f"a secret value cannot be part of the marker {REDACTED!r}")
        yield value


def _listed(items: Iterable[Any], what: str) -> Iterable[Any]:
    if isinstance(items, str | bytes):
        raise TypeError(f"{what} takes a list of strings, not one string: [{items!r}]")
    return items
