"""Replay a recorded run offline and report the first place it diverges.

A run records each model exchange's request and response (`hubspoke.specialists.recording`).
`replay` runs the workflow again on the run's input and budget, into a scratch journal (a
temporary file, deleted afterwards: the recorded run is only read), with every agent role
played by a `ReplayModel` that answers each request with the recorded response of the same
request: the same phase, role, item, attempt and index within the attempt (and sub-run: a
sub-workflow's run is replayed inside the replay as it ran inside the run). Each new request is
compared with the recorded one (the messages it adds to the conversation, the tools offered,
the settings), after scrubbing it as the journal scrubbed the recording.

Function specialists and ordinary tools run again for real: they are the code under test. A
side-effecting tool does not: its calls are answered with the results the recorded run
journaled (`tool.finished`), and a call the recorded run never made is a divergence. After the
run, each dispatch's outcome and output are compared with the recorded ones, and a recorded
request the replay never made is a divergence too.

The first divergence is the one at the earliest place in the recorded journal. What a person
decided on the board after the run stopped (`card.decided`) is not replayed: what the recorded
run did after the first decision is left out of the comparison, and the report counts it.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
import tempfile
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_ai.exceptions import ModelAPIError, ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.settings import ModelSettings

from hubspoke.budget import Budget
from hubspoke.errors import NotReplayable, RunNotFound
from hubspoke.events import Event, EventKind, ModelExchange, payload
from hubspoke.specialists.recording import (
    REQUEST_SITE,
    dump_messages,
    dump_settings,
    dump_tools,
    load_response,
    tools_digest,
)
from hubspoke.throttle import Backoff
from hubspoke.tools import KEY_PARAMETER, Tool

if TYPE_CHECKING:
    from hubspoke.journal import Redactor, Store
    from hubspoke.workflow import Workflow

__all__ = [
    "Difference",
    "Divergence",
    "ReplayModel",
    "ReplayReport",
    "export_run",
    "replay",
    "replay_sync",
]

_Key = tuple[str, str, str, str, int]
"""(sub-run, phase, role, item, attempt): one dispatch. The sub-run is the run's id past the
replayed run's (``""`` for the run itself, ``.research.1`` for the sub-workflow run of item
``research``, attempt 1)."""
_LAST = float("inf")


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing that differs at a divergence."""

    what: str
    """``prompt`` (a system or user prompt), ``tool result`` (what a tool gave back),
    ``tools`` (the tools offered, their descriptions or schemas), ``settings``, ``tool call``
    (a side-effecting call the recorded run did not make), ``output`` (a dispatch's outcome
    or output), ``extra request``, ``missing request``, ``extra dispatch`` or ``missing
    dispatch``."""
    detail: str
    """What differs, for a person: a short unified diff (recorded ``-``, replay ``+``)."""


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first place the replay differs from the recording."""

    phase: str | None
    role: str | None
    item: str | None
    attempt: int | None
    request: int | None
    """The request's index within the attempt, from 0; `None` for a dispatch's output."""
    differences: tuple[Difference, ...]
    """Everything that differs there, the most telling first."""
    position: float = field(default=_LAST, compare=False, repr=False)
    """Where it is in the recorded journal (the index of the event compared, a sub-run's events
    just before the parent's `child.started`), for the order."""
    sub_run: str = ""
    """In a sub-workflow's run: its id past the replayed run's (e.g. ``.research.1``)."""

    @property
    def what(self) -> str:
        """The first difference's kind (``prompt``, ``tools``...)."""
        return self.differences[0].what

    def to_dict(self) -> dict[str, Any]:
        """As JSON values: ``phase``, ``role``, ``item``, ``attempt``, ``request``, ``what``
        and ``differences`` (a list of ``{"what", "detail"}``)."""
        return {
            "sub_run": self.sub_run,
            "phase": self.phase,
            "role": self.role,
            "item": self.item,
            "attempt": self.attempt,
            "request": self.request,
            "what": self.what,
            "differences": [{"what": d.what, "detail": d.detail} for d in self.differences],
        }

    def describe(self) -> str:
        """A few lines for a person: where, then each difference with its diff."""
        where = [f"phase {self.phase}", f"role {self.role}", f"item {self.item}"]
        if self.sub_run:
            where.insert(0, f"sub-run {self.sub_run}")
        if self.attempt is not None:
            where.append(f"attempt {self.attempt}")
        if self.request is not None:
            where.append(f"request {self.request}")
        lines = [f"first divergence: {', '.join(where)}"]
        for d in self.differences:
            lines.append(f"{d.what} differs:")
            lines += [f"  {line}" for line in d.detail.splitlines()]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay found."""

    run_id: str
    """The recorded run."""
    requests: int
    """Recorded model requests compared."""
    divergence: Divergence | None
    """The first divergence; `None` when the replay is identical."""
    not_replayed: int = 0
    """Recorded events after the first person's decision, left out of the comparison."""

    @property
    def identical(self) -> bool:
        return self.divergence is None

    def describe(self) -> str:
        """``identical`` (with what was compared), or the first divergence."""
        if self.divergence is None:
            said = f"identical ({self.requests} model requests compared"
            if self.not_replayed:
                said += f"; {self.not_replayed} events after a person's decision not replayed"
            return said + ")"
        return self.divergence.describe()

    def to_dict(self) -> dict[str, Any]:
        """As JSON values: ``run_id``, ``identical``, ``requests``, ``not_replayed`` and
        ``divergence`` (`Divergence.to_dict`, or null)."""
        return {
            "run_id": self.run_id,
            "identical": self.identical,
            "requests": self.requests,
            "not_replayed": self.not_replayed,
            "divergence": None if self.divergence is None else self.divergence.to_dict(),
        }


# the recording -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Exchange:
    seq: int
    recorded: ModelExchange


@dataclass(slots=True)
class _Recording:
    exchanges: dict[_Key, list[_Exchange]] = field(default_factory=dict)
    finished: dict[_Key, tuple[int, str]] = field(default_factory=dict)
    """Each dispatch's `dispatch.finished`: (seq, outcome)."""
    accepted: dict[tuple[str, str, str, str], tuple[int, str]] = field(default_factory=dict)
    """(sub-run, phase, role, item) -> (position of `item.accepted`, its artifact id)."""
    side_effects: dict[tuple[str, str], deque[Any]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    """(tool, arguments as JSON) -> the results of the recorded calls, in order."""
    not_replayed: int = 0
    models: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Role -> the model it was played by and its provider (pydantic-ai's `system`)."""
    tools: dict[str, list[Any]] = field(default_factory=dict)
    """Role -> the tools its requests offered (recorded once per run)."""


def _key(sub_run: str, event: Event) -> _Key:
    return (sub_run, event.phase or "", event.role or "", event.item or "", event.attempt or 0)


_RUN_BY = re.compile(r"run by shard (\S+?)\)?$")
"""How a shared run's dispatch names the shard that ran its item (`foreman._shared`)."""


def _flatten(store: Store, run_id: str, top: str) -> list[tuple[str, Event]]:
    """The run's events and its sub-runs' (each sub-run's just before the `child.started` that
    the parent journals when the sub-run's dispatch ends), with each event's sub-run. A shared
    run's item reads as in a run that is not shared: its dispatch events in the shard that ran
    it (dispatches, exchanges, tool calls) in place of the owner's one dispatch."""
    out: list[tuple[str, Event]] = []
    events = store.events(run_id)
    shards = {  # item -> the shard that ran it, as each dispatch's end names it
        e.item: m.group(1)
        for e in events
        if e.kind is EventKind.DISPATCH_FINISHED
        and e.item is not None
        and (m := _RUN_BY.search(payload(e, EventKind.DISPATCH_FINISHED).get("message", "")))
        is not None
    }
    sharded: dict[str, list[Event]] = {}
    for shard in sorted(set(shards.values())):
        for e in store.events(shard):
            base = e.item.partition("#")[0] if e.item is not None else None
            if base is not None and shards.get(base) == shard:
                sharded.setdefault(base, []).append(e)
    for event in events:
        if event.kind is EventKind.CHILD_RUN_STARTED:
            out += _flatten(store, payload(event, EventKind.CHILD_RUN_STARTED)["child_run"], top)
        item = event.item.partition("#")[0] if event.item is not None else None
        if item in shards and event.kind.value.startswith(("dispatch.", "model.", "tool.")):
            if event.kind is EventKind.DISPATCH_FINISHED:
                out += [(run_id[len(top) :], e) for e in sharded.pop(item, [])]
            continue  # the owner's dispatch that waited for the shard
        out.append((run_id[len(top) :], event))
    return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _recording(run_id: str, events: list[tuple[str, Event]]) -> _Recording:
    """The exchanges, dispatch outcomes and side-effecting results of a run and its sub-runs
    (`_flatten`), up to the first person's decision; positions are indexes in `events`.

    Raises:
        NotReplayable: an exchange without its request.
    """
    found = _Recording()
    started: dict[str, tuple[str, Any]] = {}
    for i, (sub_run, event) in enumerate(events):
        kind = event.kind
        if kind is EventKind.CARD_DECIDED:
            found.not_replayed = len(events) - i
            break
        if kind is EventKind.MODEL_EXCHANGE:
            data = payload(event, kind)
            if "request" not in data:
                raise NotReplayable(
                    f"run {run_id} cannot be replayed: its model exchanges were recorded "
                    "without their requests and responses (the run was recorded before hubspoke "
                    "recorded them, or with recording off). Run the workflow again with this "
                    "version, recording on, to get a replayable run"
                )
            found.exchanges.setdefault(_key(sub_run, event), []).append(_Exchange(i, data))
            if event.role and "model" in data:
                played = (data["model"], data.get("provider", "replay"))
                found.models.setdefault(event.role, played)
            if event.role and "tools" in data["request"]:
                found.tools.setdefault(event.role, data["request"]["tools"])
        elif kind is EventKind.DISPATCH_FINISHED:
            done = payload(event, kind)
            found.finished[_key(sub_run, event)] = (i, done["outcome"])
        elif kind is EventKind.ITEM_ACCEPTED:
            aid = payload(event, kind)["artifact_id"]
            found.accepted[_key(sub_run, event)[:4]] = (i, aid)
        elif kind is EventKind.TOOL_STARTED:
            begun = payload(event, kind)
            started[begun["key"]] = (begun["tool"], begun["arguments"])
        elif kind is EventKind.TOOL_FINISHED:
            ended = payload(event, kind)
            call = started.get(ended["key"])
            if call is not None and "result" in ended:
                found.side_effects[(call[0], _canonical(call[1]))].append(ended["result"])
    return found


# comparing -----------------------------------------------------------------------------------


def _diff(recorded: Any, now: Any, limit: int = 24) -> str:
    """A short unified diff of two JSON values (strings compared line by line)."""

    def lines(value: Any) -> list[str]:
        if isinstance(value, str):
            return value.splitlines()
        return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False).splitlines()

    out = list(
        difflib.unified_diff(lines(recorded), lines(now), "recorded", "replay", n=1, lineterm="")
    )
    if len(out) > limit:
        out = [*out[:limit], f"... ({len(out) - limit} more diff lines)"]
    return "\n".join(out)


def _part_kind(part: Any) -> str:
    return str(part.get("part_kind", "")) if isinstance(part, dict) else ""


def _message_differences(recorded: list[Any], now: list[Any]) -> list[Difference]:
    """The parts of the request's messages that differ, each as a prompt or a tool result."""
    rec_parts = [p for m in recorded for p in m.get("parts", [])]
    now_parts = [p for m in now for p in m.get("parts", [])]
    found: list[Difference] = []
    for i in range(max(len(rec_parts), len(now_parts))):
        a = rec_parts[i] if i < len(rec_parts) else None
        b = now_parts[i] if i < len(now_parts) else None
        if a == b:
            continue
        kind = _part_kind(a) or _part_kind(b)
        what = "tool result" if kind == "tool-return" else "prompt"
        label = kind or "part"
        a_text = a.get("content") if isinstance(a, dict) else a
        b_text = b.get("content") if isinstance(b, dict) else b
        if a_text == b_text:  # the content is the same: show the whole part
            a_text, b_text = a, b
        found.append(Difference(what, f"{label}:\n{_diff(a_text, b_text)}"))
    if not found and recorded != now:
        found.append(Difference("prompt", _diff(recorded, now)))
    return found


def _tools_difference(recorded: list[Any], now: list[Any]) -> Difference:
    rec = {t.get("name"): t for t in recorded if isinstance(t, dict)}
    new = {t.get("name"): t for t in now if isinstance(t, dict)}
    said = []
    if added := [n for n in new if n not in rec]:
        said.append(f"offered now, not recorded: {', '.join(map(str, added))}")
    if removed := [n for n in rec if n not in new]:
        said.append(f"recorded, not offered now: {', '.join(map(str, removed))}")
    for name in rec.keys() & new.keys():
        if rec[name] != new[name]:
            said.append(f"{name} changed:\n{_diff(rec[name], new[name])}")
    return Difference("tools", "\n".join(said) or _diff(recorded, now))


class _Referee:
    """Answers requests and side-effecting calls from a recording; collects divergences."""

    def __init__(self, recording: _Recording, scrub: Callable[[Any], Any], top: str) -> None:
        self.recording = recording
        self.top = top
        """The replay's run id: a request's sub-run is its run's id past it."""
        self.scrub = scrub
        self.divergences: list[Divergence] = []
        self.made: set[tuple[_Key, int]] = set()

    def _diverge(self, divergence: Divergence) -> None:
        self.divergences.append(divergence)

    def answer(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> ModelResponse:
        site = REQUEST_SITE.get()
        if site is None or site.turn is None:
            raise LookupError("the replay model answers only an agent specialist's requests")
        key = (site.run[len(self.top) :], site.phase, site.role, site.item, site.attempt)
        recorded = self.recording.exchanges.get(key, [])
        where = (site.phase, site.role, site.item, site.attempt, site.turn)
        if site.turn >= len(recorded):
            after = recorded[-1].seq if recorded else self._finished_seq(key)
            self._diverge(
                Divergence(
                    *where,
                    (
                        Difference(
                            "extra request",
                            f"the recorded attempt made {len(recorded)} model request(s); "
                            f"the replay makes request {site.turn}",
                        ),
                    ),
                    position=after + 0.5,
                    sub_run=key[0],
                )
            )
            raise LookupError(f"no recorded response for request {site.turn} of {key}")
        self.made.add((key, site.turn))
        exchange = recorded[site.turn]
        first = recorded[0].recorded.get("request", {})
        offered = dump_tools(params)
        now = self.scrub(
            {
                "messages": dump_messages(messages[-1:]),
                "tools": offered,
                "settings": dump_settings(settings or {}),
            }
        )
        differences: list[Difference] = []
        # The digest was taken before scrubbing: compare it with this request's, unscrubbed.
        if first.get("tools_digest") != tools_digest(offered):
            recorded_tools = self.recording.tools.get(site.role)
            differences.append(
                _tools_difference(recorded_tools, now["tools"])
                if recorded_tools is not None
                else Difference("tools", "the tools offered differ from the recorded ones")
            )
        if first.get("settings", {}) != now["settings"]:
            differences.append(
                Difference("settings", _diff(first.get("settings", {}), now["settings"]))
            )
        request = exchange.recorded.get("request", {})
        differences += _message_differences(request.get("messages", []), now["messages"])
        if differences:
            self._diverge(
                Divergence(*where, tuple(differences), position=exchange.seq, sub_run=key[0])
            )
        data = exchange.recorded
        if "response" not in data:
            error = data.get("error", "an error")
            if error.startswith("HTTP "):
                status = int(error.removeprefix("HTTP ").strip() or 500)
                raise ModelHTTPError(status, data.get("model", "replay"), "as recorded")
            raise ModelAPIError(data.get("model", "replay"), f"as recorded: {error}")
        return load_response(data["response"])

    def _finished_seq(self, key: _Key) -> float:
        found = self.recording.finished.get(key)
        return float(found[0]) if found is not None else _LAST

    def side_effect(self, tool: Tool) -> Callable[..., Any]:
        """The function a side-effecting tool runs during a replay: the recorded result of
        the same call (tool and arguments), or a divergence."""

        async def recorded_result(**arguments: Any) -> Any:
            arguments.pop(KEY_PARAMETER, None)
            results = self.recording.side_effects.get((tool.name, _canonical(arguments)))
            if results:
                return results.popleft() if len(results) > 1 else results[0]
            site = REQUEST_SITE.get()
            where: tuple[str | None, str | None, str | None, int | None, int | None] = (
                None,
                None,
                None,
                None,
                None,
            )
            position, sub_run = _LAST, ""
            if site is not None:
                where = (site.phase, site.role, site.item, site.attempt, site.turn)
                sub_run = site.run[len(self.top) :]
                key = (sub_run, site.phase, site.role, site.item, site.attempt)
                recorded = self.recording.exchanges.get(key, [])
                if site.turn is not None and site.turn < len(recorded):
                    # after the response that asked for it, before the next request
                    position = recorded[site.turn].seq + 0.25
                else:  # a function's call: before its dispatch's outcome
                    position = self._finished_seq(key) - 0.5
            self._diverge(
                Divergence(
                    *where,
                    (
                        Difference(
                            "tool call",
                            f"side-effecting tool {tool.name} called with arguments "
                            f"{_canonical(arguments)}, a call the recorded run did not make "
                            "(it was not run)",
                        ),
                    ),
                    position=position,
                    sub_run=sub_run,
                )
            )
            raise LookupError(f"{tool.name}: no recorded call with these arguments")

        return recorded_result


class ReplayModel(Model):
    """A pydantic-ai model that answers each request with the recorded response of the same
    request (found through `REQUEST_SITE`), comparing the request with the recorded one.

    Built by `replay`; its `model_name` and `system` are the recorded model's and provider's,
    so that it has the recorded model's price (a USD budget binds as it did) and the replay's
    exchanges name the model the recording did. It has no `base_url`: nothing leaves the
    process.
    """

    def __init__(self, referee: _Referee, model_name: str, system: str) -> None:
        super().__init__()
        self._referee = referee
        self._name = model_name
        self._system = system

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def system(self) -> str:
        return self._system

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        return self._referee.answer(messages, model_settings, model_request_parameters)


def _texts(store: Store, run_id: str, events: list[tuple[str, Event]]) -> dict[str, str]:
    """The artifacts of a run and its sub-runs, as JSON text by artifact id."""
    texts: dict[str, str] = {}
    for sub_run in dict.fromkeys(sub for sub, _ in events):
        texts.update(store.artifact_texts(run_id + sub_run))
    return texts


def _replay_workflow(workflow: Workflow, referee: _Referee) -> Workflow:
    """`workflow` with every side-effecting tool answered from the recording, its
    sub-workflows' too."""
    from hubspoke.workflow import Workflow

    roles = []
    for role in workflow.roles:
        if isinstance(role.delegate, Workflow):
            role = replace(role, delegate=_replay_workflow(role.delegate, referee))
        if not any(t.side_effect for t in role.compiled_tools):
            roles.append(role)
            continue
        tools = [
            replace(t, function=referee.side_effect(t), is_async=True) if t.side_effect else t
            for t in role.compiled_tools
        ]
        roles.append(replace(role, tools=tools))
    return replace(workflow, roles=roles)


def _outputs(texts: Mapping[str, str], accepted: Mapping[Any, tuple[int, str]]) -> dict[Any, Any]:
    """Each accepted item's output, as JSON values (by (sub-run, phase, role, item))."""
    return {where: json.loads(texts.get(aid, "null")) for where, (_, aid) in accepted.items()}


def _compare_dispatches(
    recording: _Recording,
    recorded_texts: Mapping[str, str],
    replayed: list[tuple[str, Event]],
    replayed_texts: Mapping[str, str],
    referee: _Referee,
) -> list[Divergence]:
    """Each dispatch's outcome and each accepted output against the recording's; missing
    and extra dispatches and requests."""
    now = _recording("the replay", replayed)
    found: list[Divergence] = []
    for key, (seq, outcome) in recording.finished.items():
        if key not in now.finished:
            why = Difference(
                "missing dispatch", "the recorded run made this dispatch; the replay did not"
            )
            found.append(Divergence(*key[1:], None, (why,), position=seq, sub_run=key[0]))
        elif now.finished[key][1] != outcome:
            detail = f"outcome {outcome!r} recorded, {now.finished[key][1]!r} in the replay"
            changed = (Difference("output", detail),)
            found.append(Divergence(*key[1:], None, changed, position=seq, sub_run=key[0]))
    for key in now.finished.keys() - recording.finished.keys():
        why = Difference(
            "extra dispatch", "the replay made this dispatch; the recorded run did not"
        )
        at = referee._finished_seq(key)
        found.append(Divergence(*key[1:], None, (why,), position=at, sub_run=key[0]))
    was = _outputs(recorded_texts, recording.accepted)
    new = _outputs(replayed_texts, now.accepted)
    for where, (seq, aid) in recording.accepted.items():
        if aid in recorded_texts and where in new and new[where] != was[where]:
            detail = _diff(was[where], new[where])
            changed = (Difference("output", detail),)
            found.append(
                Divergence(*where[1:], None, None, changed, position=seq, sub_run=where[0])
            )
    for key, exchanges in recording.exchanges.items():
        for turn, exchange in enumerate(exchanges):
            if (key, turn) not in referee.made:
                why = Difference(
                    "missing request",
                    f"the recorded run made request {turn} of this attempt; the replay did not",
                )
                at = exchange.seq
                found.append(Divergence(*key[1:], turn, (why,), position=at, sub_run=key[0]))
    return found


async def replay(
    store: Store,
    run_id: str,
    workflow: Workflow,
    *,
    secrets: Redactor | None = None,
) -> ReplayReport:
    """Run `workflow` again, offline, against the model exchanges `run_id` recorded.

    Args:
        store: the journal that holds the recorded run; only read.
        run_id: the recorded run's id.
        workflow: the workflow to replay, as it is now (the point: a changed prompt, tool or
            schema shows up as a divergence).
        secrets: what to scrub from the new requests before comparing them (the recording
            was scrubbed when written); the configuration's ``[secrets]`` by default.

    Returns:
        The report: `identical`, or the first divergence.

    Raises:
        RunNotFound: no run `run_id` in `store`.
        NotReplayable: the run was recorded without requests and responses.
    """
    from hubspoke.foreman import Foreman
    from hubspoke.journal import SQLiteStore
    from hubspoke.models.config import Config

    record = store.run(run_id)
    if record is None:
        raise RunNotFound(f"no run {run_id!r} in this journal")
    recording = _recording(run_id, _flatten(store, run_id, run_id))
    config = Config.load()
    if secrets is None:
        from hubspoke.journal import Redactor

        found = config.secrets
        secrets = Redactor(extra_names=found.names, patterns=found.patterns)
    top = f"{run_id}.replay_{uuid.uuid4().hex[:8]}"
    referee = _Referee(recording, secrets.scrub_json, top)
    replaying = _replay_workflow(workflow, referee)
    models: dict[str, str | Model] = {
        path: ReplayModel(
            referee, *recording.models.get(path.rpartition("/")[2], ("replay", "replay"))
        )
        for path in replaying.agent_roles()
    }
    budget = record.options.get("budget")
    with tempfile.TemporaryDirectory(prefix="hubspoke-replay-") as scratch:
        scratch_store = SQLiteStore(str(Path(scratch) / "replay.db"))
        try:
            foreman = Foreman(
                replaying,
                scratch_store,
                model=models,
                config=config,
                secrets=secrets,
                tracing=False,
                # a recorded 429 or 5xx is raised again: the replay need not wait for it
                backoff=Backoff(first=0.0, cap=0.0, retry_after_cap=0.0),
            )
            await foreman.run(
                record.input,
                run_id=top,
                budget=Budget(**budget) if isinstance(budget, Mapping) else None,
            )
            replayed = _flatten(scratch_store, top, top)
            replayed_texts = _texts(scratch_store, top, replayed)
        finally:
            scratch_store.close()
    recorded_texts = _texts(store, run_id, _flatten(store, run_id, run_id))
    divergences = referee.divergences + _compare_dispatches(
        recording, recorded_texts, replayed, replayed_texts, referee
    )
    first = min(divergences, key=lambda d: d.position) if divergences else None
    compared = sum(len(x) for x in recording.exchanges.values())
    return ReplayReport(run_id, compared, first, recording.not_replayed)


def replay_sync(
    store: Store, run_id: str, workflow: Workflow, *, secrets: Redactor | None = None
) -> ReplayReport:
    """`replay` from synchronous code (a test, the CLI): runs its own event loop."""
    return asyncio.run(replay(store, run_id, workflow, secrets=secrets))


def export_run(store: Store, run_id: str, path: str | Path) -> Path:
    """Write run `run_id` (its record, events, artifacts and cards) to a new journal file of
    its own at `path`, e.g. to keep it in a test folder as a regression test
    (`hubspoke.testing.assert_replays`).

    Returns:
        The path written.

    Raises:
        RunNotFound: no run `run_id` in `store`.
        FileExistsError: `path` exists (an export never overwrites a journal).
    """
    from hubspoke.journal import SQLiteStore

    record = store.run(run_id)
    if record is None:
        raise RunNotFound(f"no run {run_id!r} in this journal")
    target = Path(path)
    if target.exists():
        raise FileExistsError(f"{target} exists; export to a new file")
    out = SQLiteStore(str(target))
    try:
        out.create_run(record)
        status = None if record.status == "running" else (run_id, record.status)
        out.append(
            store.events(run_id),
            artifacts=store.artifacts(run_id),
            cards=store.cards(run_id),
            status=status,
        )
    finally:
        out.close()
    return target
