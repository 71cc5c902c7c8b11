"""Secrets never reach the journal file, in any form; ordinary data stays readable.

Each test plants secrets where a run carries them (the environment, a tool that returns the key,
the run's input, an exception, an output holding JSON text, a card's title), runs a workflow to
its end, and searches the raw bytes of the SQLite file (the database, its WAL; every table) for
every form a secret can take there: as it is, JSON-escaped, ascii-escaped, escaped twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from hubspoke import Context, Foreman, Phase, Role, RunView, SQLiteStore, Workflow
from hubspoke.journal import Redactor
from hubspoke.models.offline import Turn, answer, call

MARK = "[REDACTED]"


class Ask(BaseModel):
    name: str
    note: str


class Found(BaseModel):
    text: str
    nested: list[str]


# --- the workflow ----------------------------------------------------------------------------


EXPORTED_DURING_RUN: dict[str, str] = {}
"""Variables the `reveal` tool exports before it answers (a key that appears mid-run)."""
KNOWN: dict[str, str] = {}
"""What `reveal` answers instead of the environment's value (a value no variable can hold)."""


def reveal(name: str) -> str:
    """The value of an environment variable: a tool whose result carries the key."""
    for key, value in EXPORTED_DURING_RUN.items():
        os.environ[key] = value
    return KNOWN.get(name) or os.environ[name]


def fetch(turn: Turn) -> Any:
    """An agent that calls `reveal`, then answers with what the tool returned."""
    if turn.turn == 0:
        return call("reveal", name=turn.input["name"])
    value = turn.result("reveal")
    return answer(text=f"the tool said {value}", nested=[turn.input["note"]])


async def relay(found: Found, ctx: Context) -> Found:
    """A function that reveals the key again, fails once with it in the message, then passes it
    on inside JSON texts (a string holding JSON, as a tool's raw answer would)."""
    value = await ctx.call_tool("reveal", name=found.nested[0].split("|")[0])
    if ctx.attempt == 1:
        raise RuntimeError(f"could not use {value}")
    document = {"value": value, "url": f"see {value}"}
    return Found(
        text=f"value: {value}",
        nested=[json.dumps(document), json.dumps(document, ensure_ascii=False), value],
    )


def leaky_workflow() -> Workflow:
    return Workflow(
        name="leaky",
        input=Ask,
        roles=[
            Role(name="fetcher", purpose="Fetch.", input=Ask, output=Found, tools=[reveal]),
            Role(
                name="relay",
                purpose="Relay.",
                input=Found,
                output=Found,
                function=relay,
                tools=[reveal],
                max_attempts=2,
            ),
        ],
        phases=[
            Phase(name="fetch", role="fetcher", input=lambda run: run.input),
            Phase(
                name="relay",
                role="relay",
                input=lambda run: Found(
                    text=run.output("fetch").text, nested=[f"{run.input.name}|{run.input.note}"]
                ),
                review=True,
                card_title=lambda out: f"publish {out.text}",
            ),
        ],
        players={"fetcher": fetch},
        result=relayed,
    )


def relayed(run: RunView) -> Found:
    # The relayed output waits for review (the gate holds until a person approves it): the
    # result is what was fetched, which carries the secret too.
    out: Found = run.output("fetch")
    return out


# --- reading the journal file ----------------------------------------------------------------


def forms(secret: str) -> set[str]:
    """Every form a secret can take in the file."""
    escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
    ascii_escaped = json.dumps(secret)[1:-1]
    return {
        secret,
        escaped,
        ascii_escaped,
        json.dumps(escaped, ensure_ascii=False)[1:-1],
        json.dumps(ascii_escaped, ensure_ascii=False)[1:-1],
        json.dumps(ascii_escaped)[1:-1],
    }


def file_bytes(db: Path) -> bytes:
    """The database file and its WAL, as they are on disk."""
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def table_text(db: Path) -> str:
    """Every row of every table, as SQL."""
    with closing(sqlite3.connect(db)) as conn:
        return "\n".join(conn.iterdump())


def leaks(db: Path, secrets: list[str]) -> list[str]:
    """The forms of `secrets` found in the file's bytes (open and after close) or its rows."""
    raw = file_bytes(db)
    text = table_text(db)
    return sorted(
        repr(form)
        for secret in secrets
        for form in forms(secret)
        if form.encode() in raw or form in text
    )


@dataclass
class Case:
    """Secrets planted in a run, and what must stay readable."""

    env: dict[str, str]
    """Exported before the foreman is built."""
    name: str
    """The variable the tools reveal."""
    secrets: list[str]
    note: str = "a note"
    """The run's input."""
    exported_after_build: dict[str, str] = field(default_factory=dict)
    exported_during_run: dict[str, str] = field(default_factory=dict)
    readable: list[str] = field(default_factory=list)
    """Must appear in the journal's rows as they are."""
    redactor: Callable[[], Redactor] | None = None
    known: dict[str, str] = field(default_factory=dict)
    """What the tool answers for a name, instead of the environment."""


CASES = {
    "quote-backslash-slash": Case(
        env={"OPENAI_API_KEY": 'sk-"proj\\9f/8e7d6c5b'},
        name="OPENAI_API_KEY",
        secrets=['sk-"proj\\9f/8e7d6c5b'],
    ),
    "unicode": Case(
        env={"ACME_TOKEN": "pässwörd-ключ-🔑"},
        name="ACME_TOKEN",
        secrets=["pässwörd-ключ-🔑"],
    ),
    "input-carries-the-key": Case(
        env={"ACME_TOKEN": "pässwörd-ключ-🔑"},
        name="ACME_TOKEN",
        note="my key is pässwörd-ключ-🔑",
        secrets=["pässwörd-ключ-🔑"],
    ),
    "database-url": Case(
        env={"DATABASE_URL": "postgresql://u:p@h/db"},
        name="DATABASE_URL",
        secrets=["u:p@"],
        readable=["postgresql://u:[REDACTED]@h/db"],
    ),
    "url-in-any-variable": Case(
        env={"REPLICA": "postgres://admin:S3cr3t%2Fpa55word@db.example.com:5432/app"},
        name="REPLICA",
        secrets=["S3cr3t%2Fpa55word", "S3cr3t/pa55word"],
        readable=["postgres://admin:[REDACTED]@db.example.com:5432/app"],
    ),
    "token-in-url": Case(
        env={"UPSTREAM": "https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/o/r.git"},
        name="UPSTREAM",
        secrets=["ghp_16C7e42F292c6912E7710c838347Ae178B4a"],
        readable=["https://[REDACTED]@github.com/o/r.git"],
    ),
    "exported-after-the-foreman-was-built": Case(
        env={"ACME_NAME": "placeholder"},
        exported_after_build={"OPENAI_API_KEY": "sk-exported-late-0123456789"},
        name="OPENAI_API_KEY",
        secrets=["sk-exported-late-0123456789"],
    ),
    "exported-during-the-run": Case(
        env={"ACME_NAME": "placeholder"},
        exported_during_run={"LATE_SECRET": "exported-by-a-tool-9876543210"},
        name="LATE_SECRET",
        secrets=["exported-by-a-tool-9876543210"],
    ),
    "configured": Case(
        env={"ACME_PIN_CODE": "4711-0815-2342", "ACME_ID": "acme-0123456789abcdef"},
        name="ACME_PIN_CODE",
        note="acme-0123456789abcdef and literal-secret-value",
        secrets=["4711-0815-2342", "acme-0123456789abcdef", "literal-secret-value"],
        redactor=lambda: Redactor(
            extra_names=["acme_pin_code"],
            patterns=[r"acme-[0-9a-f]{16}"],
            values=["literal-secret-value"],
        ),
    ),
    "plural-and-compound-names": Case(
        env={"APP_SECRETS": "s3cr3t-value-abcdef", "AUTHTOKEN": "tok-value-0123456789"},
        name="AUTHTOKEN",
        note="and the other one: s3cr3t-value-abcdef",
        secrets=["s3cr3t-value-abcdef", "tok-value-0123456789"],
    ),
    "ordinary-data-stays": Case(
        env={
            "GIT_AUTHOR_NAME": "Ada Lovelace",
            "KEYBOARD": "us-international",
            "TOKENIZERS_PARALLELISM": "false",
            "ACME_TOKEN": "a-real-token-value-123",
        },
        name="GIT_AUTHOR_NAME",
        note="typed on a us-international keyboard: a-real-token-value-123",
        secrets=["a-real-token-value-123"],
        readable=["the tool said Ada Lovelace", "us-international"],
    ),
}


@contextmanager
def environment(exported: Mapping[str, str], unset: Iterable[str] = ()) -> Iterator[None]:
    """Export `exported` and unset `unset` for the block, then put every variable either names
    back as it was (variables exported inside the block included)."""
    names = {*exported, *unset}
    before = {k: os.environ.get(k) for k in names}
    os.environ.update(exported)
    for name in unset:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def run_case(case: Case, db: Path) -> str:
    """Run the leaky workflow with `case` planted; returns the run's status."""
    store = SQLiteStore(db)
    late = {**case.exported_after_build, **case.exported_during_run}
    try:
        with environment(case.env, unset=late):
            if case.redactor is None:
                foreman = Foreman(leaky_workflow(), store)
            else:
                foreman = Foreman(leaky_workflow(), store, secrets=case.redactor())
            os.environ.update(case.exported_after_build)
            EXPORTED_DURING_RUN.update(case.exported_during_run)
            KNOWN.update(case.known)
            try:
                result = await foreman.run({"name": case.name, "note": case.note})
            finally:
                EXPORTED_DURING_RUN.clear()
                KNOWN.clear()
            # While the store is open, the latest writes are in the WAL.
            assert leaks(db, case.secrets) == []
    finally:
        store.close()
    return result.status


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_planted_secrets_never_reach_the_journal_file(case: Case, tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    assert await run_case(case, db) == "completed"
    assert leaks(db, case.secrets) == []
    rows = table_text(db)
    assert MARK in rows  # the secrets were there to leak: every case scrubs something
    for text in case.readable:
        assert text in rows, f"{text!r} should stay readable"


# --- any secret, any characters --------------------------------------------------------------


_BASELINE: list[bytes] = []


def baseline_bytes() -> bytes:
    """A run with no secret in it: what the file holds whatever the secret is (its structure,
    event kinds, SQLite's padding), so that a 'secret' such as ``dispatch`` or eight NULs is
    not taken for a leak."""
    if not _BASELINE:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "j.db"
            case = Case(env={"ACME_NAME": "nothing secret"}, name="ACME_NAME", secrets=[])
            asyncio.run(run_case(case, db))
            _BASELINE.append(file_bytes(db) + table_text(db).encode())
    return _BASELINE[0]


@settings(max_examples=60, deadline=None)  # 1,500 examples pass too (~100 s on 2 cores)
@given(secret=st.text(min_size=8, max_size=24), through_env=st.booleans())
def test_any_secret_of_any_characters_never_reaches_the_file(
    secret: str, through_env: bool
) -> None:
    """A secret of 8 or more characters of any kind, given as a value or exported under a
    secret-looking name, never occurs in the file's bytes in any form."""
    assume(secret not in MARK)
    assume(not any(form.encode() in baseline_bytes() for form in forms(secret)))
    if through_env:
        assume("\x00" not in secret and not _looks_like_number_or_boolean(secret))
        case = Case(env={"ACME_SECRET": secret}, name="ACME_SECRET", secrets=[secret])
    else:
        case = Case(
            env={},
            known={"ANY": f"«{secret}»\\"},
            name="ANY",
            note=f"https://u:{secret}@h/ and {secret}",
            secrets=[secret],
            redactor=lambda: Redactor(values=[secret]),
        )
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "j.db"
        assert asyncio.run(run_case(case, db)) == "completed"
        assert leaks(db, [secret]) == []


def _looks_like_number_or_boolean(value: str) -> bool:
    """The environment's values that are not taken as secrets (documented rule)."""
    try:
        float(value)
    except ValueError:
        return False
    return True


# --- the rules, one by one -------------------------------------------------------------------


NAMES = {
    # whole words of the name, split on `_`, digits and case
    "MY_AUTH": True,
    "GITHUB_TOKEN": True,
    "AWS_SECRET_ACCESS_KEY": True,
    "OPENAI_API_KEY": True,
    "ANTHROPIC_KEY": True,
    "DB_PASS": True,
    "SMTP_PASSWORD2": True,
    "SENTRY_DSN": True,
    "githubToken": True,
    "GOOGLE_APPLICATION_CREDENTIALS": True,
    # plurals, AUTHORIZATION, a KEY that a qualifier follows
    "APP_SECRETS": True,
    "GITHUB_TOKENS": True,
    "DB_PASSWORDS": True,
    "HTTP_AUTHORIZATION": True,
    "STRIPE_KEY_LIVE": True,
    # hint words run together, or a word ending in one
    "AUTHTOKEN": True,
    "SECRETKEY": True,
    "APITOKEN": True,
    "PRIVATEKEY": True,
    "ACCESSKEY": True,
    "BEARERTOKEN": True,
    "CLIENTSECRET": True,
    "AUTHOR": False,
    "AUTHORS": False,
    "GIT_AUTHOR_NAME": False,
    "GIT_AUTHOR_EMAIL": False,
    "TOKENIZERS_PARALLELISM": False,
    "KEYBOARD": False,
    "AWS_ACCESS_KEY_ID": False,
    "SSL_KEY_FILE": False,
    "BYPASS_CACHE": False,
    "SSH_AUTH_SOCK": False,
    "PASSENGER_APP_ENV": False,
}


def test_name_hints_match_whole_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """`AUTH` does not match `AUTHOR`, nor `KEY` `KEYBOARD`; `PASS` and `DSN` are words too;
    plurals count, and so do words made of hints (`AUTHTOKEN`) or ending in a long one."""
    values = {name: f"value-of-{name.lower()}-0123" for name in NAMES}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    secrets = set(Redactor().secrets)
    taken = {name: values[name] in secrets for name in NAMES}
    assert taken == NAMES


def test_short_values_numbers_and_booleans_are_not_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replacing `4096` or `true` everywhere would scrub ordinary text: the rule takes values of
    8 characters or more that are not numbers."""
    monkeypatch.setenv("ACME_TOKEN", "short")
    monkeypatch.setenv("ACME_SECRET_ENABLED", "true")
    monkeypatch.setenv("OPENAI_MAX_TOKENS", "100000000")
    monkeypatch.setenv("ACME_TOKEN_TTL", "8.64e+07")
    monkeypatch.setenv("ACME_API_KEY", "12345678-abc")
    redactor = Redactor()
    text = "short true 100000000 8.64e+07 12345678-abc"
    assert redactor.scrub(text) == "short true 100000000 8.64e+07 [REDACTED]"


def test_url_credentials_are_redacted_in_any_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """The password of a URL found in event data, known or not, whatever its length; a token
    in a URL's user part; the URL stays readable."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    redactor = Redactor()
    data = {
        "dsn": "connect to postgresql://u:p@h/db now",
        "quoted": 'mysql://root:pa"ss@w@10.0.0.1:3306/x',
        "clone": "git clone https://ghp_16C7e42F292c6912E7710c838347A@github.com/o/r",
        "user only": "ssh://git@github.com/o/r and mailto:ada@example.com",
    }
    assert redactor.scrub_json(data) == {
        "dsn": "connect to postgresql://u:[REDACTED]@h/db now",
        "quoted": "mysql://root:[REDACTED]@10.0.0.1:3306/x",
        "clone": "git clone https://[REDACTED]@github.com/o/r",
        "user only": "ssh://git@github.com/o/r and mailto:ada@example.com",
    }


def test_patterns_are_searched_in_each_string() -> None:
    """A pattern sees each string as it is, not its JSON escaping: anchors hold, and a match
    may span a newline or a quote."""
    redactor = Redactor(patterns=[r"^sk-\w+$", r"BEGIN KEY\n.*?\nEND", r'(?<=pin=")\d+'])
    data = {"key": "sk-abc123", "pem": "x BEGIN KEY\nMIIEv\nEND y", "q": 'pin="0815"'}
    assert redactor.scrub_json(data) == {
        "key": "[REDACTED]",
        "pem": "x [REDACTED] y",
        "q": 'pin="[REDACTED]"',
    }
    assert redactor.scrub_json({"key": "the sk-abc123"}) == {"key": "the sk-abc123"}


def test_bad_settings_say_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"too short to scrub safely .* give a pattern"):
        Redactor(values=["1234"])
    with pytest.raises(ValueError, match="part of the marker"):
        Redactor(values=["REDACTED"])
    with pytest.raises(ValueError, match=r"matches the empty string"):
        Redactor(patterns=[r"\d*"])
    with pytest.raises(ValueError, match=r"does not compile"):
        Redactor(patterns=["(unclosed"])
    with pytest.raises(TypeError, match="a list of strings, not one string"):
        Redactor(extra_names="ACME_PIN")
    with pytest.raises(TypeError, match="secrets must be a Redactor"):
        Foreman(leaky_workflow(), SQLiteStore(":memory:"), secrets=["sk-123"])  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_sub_foremen_scrub_what_their_parent_was_told(tmp_path: Path) -> None:
    """A configured secret is scrubbed from a sub-run's events too."""
    inner = leaky_workflow()
    outer = Workflow(
        name="outer",
        input=Ask,
        roles=[inner.as_role(name="team", purpose="Leak.", output=Found, tools=[reveal])],
        phases=[Phase(name="p", role="team", input=lambda run: run.input)],
    )
    db = tmp_path / "j.db"
    store = SQLiteStore(db)
    KNOWN["ANY"] = "configured-secret-42"
    try:
        foreman = Foreman(outer, store, secrets=Redactor(values=["configured-secret-42"]))
        result = await foreman.run({"name": "ANY", "note": "n"})
    finally:
        KNOWN.clear()
        store.close()
    assert result.status == "completed"
    assert len({r.run_id for r in SQLiteStore(db, read_only=True).runs()}) == 2
    assert leaks(db, ["configured-secret-42"]) == []


@pytest.mark.anyio
async def test_the_environment_is_read_again_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path compares the environment with a copy; it reads the variables again (one
    name check per variable) only after a change: here, once when the foreman first scrubs, and
    once more after the tool exports a key mid-run, however many events the run has."""
    import hubspoke.journal.redaction as redaction

    checked: list[str] = []
    real = redaction.is_secret_name

    def counting(name: str, extra_names: Iterable[str] = ()) -> bool:
        checked.append(name)
        return real(name, extra_names)

    monkeypatch.setattr(redaction, "is_secret_name", counting)
    monkeypatch.delenv("LATE_SECRET", raising=False)
    case = Case(
        env={},
        name="LATE_SECRET",
        exported_during_run={"LATE_SECRET": "exported-by-a-tool-9876543210"},
        secrets=["exported-by-a-tool-9876543210"],
    )
    store_path = tmp_path / "j.db"
    assert await run_case(case, store_path) == "completed"
    events = SQLiteStore(store_path, read_only=True).events
    runs = SQLiteStore(store_path, read_only=True).runs()
    assert len(events(runs[0].run_id)) > 20
    variables = len(os.environ) + 1  # LATE_SECRET, exported during the run
    assert len(checked) == (variables - 1) + variables


@pytest.mark.anyio
async def test_the_secrets_table_of_hubspoke_toml_is_scrubbed_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[secrets] names/patterns` of the configuration reach a foreman built without
    `secrets=`: ACME_PIN is no secret by its name, the pattern no variable at all."""
    from hubspoke.models.config import Config

    config = Config.from_toml(
        '[secrets]\nnames = ["ACME_PIN"]\npatterns = ["acme-[0-9a-f]{12}"]', environ={}
    )
    db = tmp_path / "j.db"
    store = SQLiteStore(db)
    monkeypatch.setenv("ACME_PIN", "pin-84629173")
    KNOWN["PIN"] = "pin-84629173 and acme-0123456789ab"
    try:
        result = await Foreman(leaky_workflow(), store, config=config).run(
            {"name": "PIN", "note": "n"}
        )
    finally:
        KNOWN.clear()
        store.close()
    assert result.status == "completed"
    assert leaks(db, ["pin-84629173", "acme-0123456789ab"]) == []


def test_a_secret_exported_before_a_flush_is_scrubbed_from_its_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The artifacts and outbox entries of a batch are scrubbed at its flush with the secrets
    known then: a key exported after the output was accepted, before the write, is caught."""
    from hubspoke.artifacts import Artifact
    from hubspoke.events import EventKind
    from hubspoke.journal import Journal, RunState
    from hubspoke.outbox import OutboxEntry

    secret = "exported-after-accept-1234567"
    monkeypatch.delenv("FLUSH_LATE_TOKEN", raising=False)
    store = SQLiteStore(tmp_path / "j.db")
    journal = Journal(store, RunState("run_late"), deferred=True)
    journal.emit(EventKind.PHASE_STARTED, phase="p", data={"items": 1})  # reads the environment
    content = {"note": f"said {secret}"}
    artifact = Artifact(
        id="art_1",
        run_id="run_late",
        phase="p",
        role="r",
        item="p",
        schema="m.Out",
        content=content,
        created=0.0,
        content_json=json.dumps(content),
    )
    entry = OutboxEntry(key="run_late/p", run_id="run_late", item="p", created=0.0, content=content)
    journal.emit(
        EventKind.ITEM_ACCEPTED,
        phase="p",
        role="r",
        item="p",
        data={"artifact_id": "art_1"},
        artifact=artifact,
        outbox=entry,
    )
    monkeypatch.setenv("FLUSH_LATE_TOKEN", secret)
    journal.close()
    store.close()
    assert leaks(tmp_path / "j.db", [secret]) == []
