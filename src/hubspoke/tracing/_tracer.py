"""`OtelTracer`: a journal listener that makes OpenTelemetry spans of a run's events (see the
package's docstring for the spans), and `format_tree` to print them."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hubspoke.events import Event, EventKind, payload

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Span, SpanKind, Tracer, TracerProvider

__all__ = ["INSTALL_HINT", "MISSING", "OtelTracer", "format_tree", "in_memory"]

INSTALL_HINT = "pip install 'hubspoke[otel]'"
"""How to get the OpenTelemetry SDK that tracing needs."""

MISSING = f"tracing needs the OpenTelemetry SDK, which is not installed: {INSTALL_HINT}"

_NS = 1_000_000_000


def _ns(seconds: float) -> int:
    return int(seconds * _NS)


@dataclass(slots=True)
class _Dispatch:
    span: Span
    start_ns: int
    cursor_ns: int
    """Where the next trace entry's span starts: entries are laid end to end."""
    child: str
    """The id a sub-run of this dispatch gets (`_child_id`)."""


def _child_id(run_id: str, item: str, attempt: int | None) -> str:
    # The id a sub-foreman gives the sub-run of a dispatch (`SubForeman.child_id`).
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{run_id}.{item}.{attempt}")


class OtelTracer:
    """A journal listener that turns a run's events into OpenTelemetry spans.

    Give it to `Foreman(listeners=[OtelTracer()])`; it sees the run's events and its sub-runs'.

    Args:
        tracer_provider: where the spans go; ``None`` for OpenTelemetry's global provider
            (set up by the application, or by the ``OTEL_*`` variables through the SDK's
            auto-configuration).

    Raises:
        ImportError: OpenTelemetry is not installed (the message says which extra to
            install).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            raise ImportError(MISSING) from None
        self._trace = trace
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.provider: TracerProvider = provider
        """Where the spans go."""
        self._tracer: Tracer = provider.get_tracer("hubspoke")
        self._runs: dict[str, Span] = {}
        self._phases: dict[tuple[str, str], Span] = {}
        self._dispatches: dict[tuple[str, str], _Dispatch] = {}
        """Open dispatches by (run id, item key)."""
        self._sub_runs: dict[str, Span] = {}
        """A sub-run's id → the span of the dispatch that runs it."""
        self._parent_of: dict[str, str] = {}
        """A sub-run's id → its parent run's id (while the sub-run is open)."""
        self._calls: dict[tuple[str, str], tuple[str, Span]] = {}
        """Side-effecting calls started and not finished, by (run id, key): item key, span."""

    def flush(self, timeout_millis: int = 30_000) -> bool:
        """Send the spans ended so far, now (the SDK's batch processor otherwise sends them
        every few seconds and when the process exits). Returns whether they all went within
        `timeout_millis`; a provider that cannot flush (the API's no-op one) returns `True`."""
        force_flush = getattr(self.provider, "force_flush", None)
        return True if force_flush is None else bool(force_flush(timeout_millis))

    # the listener ------------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        kind = event.kind
        if kind is EventKind.RUN_STARTED or kind is EventKind.RUN_RESUMED:
            self._start_run(event)
        elif kind is EventKind.RUN_FINISHED:
            self._finish_run(event)
        elif kind is EventKind.PHASE_STARTED:
            self._phase(event)
        elif kind is EventKind.PHASE_FINISHED:
            self._finish_phase(event)
        elif kind is EventKind.DISPATCH_STARTED:
            self._start_dispatch(event)
        elif kind is EventKind.DISPATCH_FINISHED:
            self._finish_dispatch(event)
        elif kind is EventKind.MODEL_EXCHANGE:
            self._model_exchange(event)
        elif kind is EventKind.TOOL_CALLED:
            self._tool_called(event)
        elif kind is EventKind.TOOL_REFUSED:
            self._tool_refused(event)
        elif kind is EventKind.TOOL_STARTED:
            self._tool_started(event)
        elif kind is EventKind.TOOL_FINISHED:
            self._tool_finished(event)

    # spans -------------------------------------------------------------------------------------

    def _start(
        self,
        name: str,
        parent: Span | None,
        start_ns: int,
        attributes: dict[str, Any],
        *,
        kind: SpanKind | None = None,
    ) -> Span:
        context = None if parent is None else self._trace.set_span_in_context(parent)
        return self._tracer.start_span(
            name,
            context=context,
            kind=self._trace.SpanKind.INTERNAL if kind is None else kind,
            start_time=start_ns,
            attributes=attributes,
        )

    def _run_span(self, event: Event) -> Span:
        span = self._runs.get(event.run_id)
        if span is None:  # an event of a run whose start this tracer did not see
            span = self._start_run(event)
        return span

    def _start_run(self, event: Event) -> Span:
        workflow = ""
        parent_run = parent_item = None
        if event.kind is EventKind.RUN_STARTED:
            started = payload(event, EventKind.RUN_STARTED)
            workflow = started.get("workflow", "")
            parent_run, parent_item = started.get("parent_run"), started.get("parent_item")
        elif event.kind is EventKind.RUN_RESUMED:
            resumed = payload(event, EventKind.RUN_RESUMED)
            workflow = resumed.get("workflow", "")
            parent_run, parent_item = resumed.get("parent_run"), resumed.get("parent_item")
        parent: Span | None = None
        if parent_run is not None and parent_item is not None:
            self._parent_of[event.run_id] = parent_run
            found = self._dispatches.get((parent_run, parent_item))
            parent = None if found is None else found.span
        if parent is None:  # an older run.resumed names no parent: found by the sub-run's id
            parent = self._sub_runs.get(event.run_id)
        if event.run_id in self._runs:
            # Resumed in this process: the earlier session's spans end here, interrupted.
            self._end_open(event.run_id, _ns(event.ts))
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "hubspoke.run_id": event.run_id,
        }
        if workflow:
            attributes["gen_ai.workflow.name"] = workflow
        if event.kind is EventKind.RUN_RESUMED:
            attributes["hubspoke.resumed"] = True
        name = f"invoke_workflow {workflow}" if workflow else "invoke_workflow"
        span = self._runs[event.run_id] = self._start(name, parent, _ns(event.ts), attributes)
        if event.kind is EventKind.RUN_RESUMED:
            for charged in payload(event, EventKind.RUN_RESUMED).get("charged", []):
                self._charged(event, span, charged)
        return span

    def _charged(self, event: Event, run: Span, charged: dict[str, Any]) -> None:
        """The model requests of a dispatch the last session left in flight, as the resume
        charges them (`RunResumed.charged`): one zero-length ``chat`` span under the resumed
        run's, marked ``hubspoke.estimated`` and ``hubspoke.charged_at_resume``, so that the
        chat spans still add up to the run's usage."""
        model = charged.get("model")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "hubspoke.run_id": event.run_id,
            "gen_ai.usage.input_tokens": charged.get("input_tokens", 0),
            "gen_ai.usage.output_tokens": charged.get("output_tokens", 0),
            "hubspoke.usage.usd": charged.get("usd", 0.0),
            "hubspoke.usage.requests": charged.get("requests", 0),
            "hubspoke.estimated": True,
            "hubspoke.charged_at_resume": True,
        }
        if model:
            attributes["gen_ai.request.model"] = model
        if charged.get("provider"):
            attributes["gen_ai.provider.name"] = charged["provider"]
        for key in ("item", "phase", "role"):
            if charged.get(key):
                attributes[f"hubspoke.{key}"] = charged[key]
        at = _ns(event.ts)
        name = f"chat {model}" if model else "chat"
        self._start(name, run, at, attributes, kind=self._trace.SpanKind.CLIENT).end(at)

    def _end_open(self, run_id: str, end: int) -> None:
        """End the spans of `run_id` still open, its sub-runs' first, as ``interrupted``: the
        session that drove it stopped without `run.finished` (Ctrl-C, a kill in this process)."""
        for child in [c for c, p in self._parent_of.items() if p == run_id]:
            self._end_open(child, end)
        self._end_calls(run_id, None, end, "interrupted")
        for key in [k for k in self._dispatches if k[0] == run_id]:
            dispatch = self._drop_dispatch(key)
            dispatch.span.set_attribute("hubspoke.outcome", "interrupted")
            dispatch.span.end(max(end, dispatch.cursor_ns))
        for key in [k for k in self._phases if k[0] == run_id]:
            phase = self._phases.pop(key)
            phase.set_attribute("hubspoke.status", "interrupted")
            phase.end(end)
        run = self._runs.pop(run_id, None)
        if run is not None:
            run.set_attribute("hubspoke.status", "interrupted")
            run.end(end)

    def end_open(self, run_id: str | None = None) -> None:
        """End, now, the spans still open of `run_id` and its sub-runs (of every run for
        `None`), marked ``interrupted`` (``hubspoke.status`` of a run or phase,
        ``hubspoke.outcome`` of a dispatch), so that they are exported: a session stopped
        without `run.finished` (Ctrl-C, a cancelled task) leaves them open, and a span is sent
        only once it ends. A resume opens new ones. `Foreman(tracing=...)` and the CLI call it
        when a run returns or raises; spans of a finished run are already ended."""
        end = time.time_ns()
        if run_id is not None:
            roots = [run_id]
        else:
            roots = [r for r in self._runs if r not in self._parent_of]
        for root in roots:
            self._end_open(root, end)

    def _finish_run(self, event: Event) -> None:
        ended = payload(event, EventKind.RUN_FINISHED)
        end = _ns(event.ts)
        # Whatever of this run is still open ends with it (a run stopped mid-phase).
        self._end_calls(event.run_id, None, end, "in_doubt")
        for key in [k for k in self._dispatches if k[0] == event.run_id]:
            self._drop_dispatch(key).span.end(end)
        for key in [k for k in self._phases if k[0] == event.run_id]:
            self._phases.pop(key).end(end)
        span = self._runs.pop(event.run_id, None) or self._start_run(event)
        span.set_attribute("hubspoke.status", ended["status"])
        if ended.get("reason"):
            span.set_attribute("hubspoke.reason", ended["reason"])
        if ended["status"] in ("failed", "aborted"):
            span.set_status(self._trace.StatusCode.ERROR, ended.get("reason") or None)
        span.end(end)
        self._sub_runs.pop(event.run_id, None)
        self._parent_of.pop(event.run_id, None)

    def _phase(self, event: Event) -> Span:
        assert event.phase is not None
        span = self._phases.get((event.run_id, event.phase))
        if span is None:
            span = self._phases[(event.run_id, event.phase)] = self._start(
                f"phase {event.phase}",
                self._run_span(event),
                _ns(event.ts),
                {"hubspoke.run_id": event.run_id, "hubspoke.phase": event.phase},
            )
        return span

    def _finish_phase(self, event: Event) -> None:
        finished = payload(event, EventKind.PHASE_FINISHED)
        span = self._phase(event)
        del self._phases[(event.run_id, str(event.phase))]
        span.set_attribute("hubspoke.status", finished["status"])
        span.end(_ns(event.ts))

    def _start_dispatch(self, event: Event) -> None:
        assert event.item is not None and event.role is not None
        parent = self._phase(event) if event.phase is not None else self._run_span(event)
        start = _ns(event.ts)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": event.role,
            "hubspoke.run_id": event.run_id,
            "hubspoke.role": event.role,
            "hubspoke.item": event.item,
        }
        if event.phase is not None:
            attributes["hubspoke.phase"] = event.phase
        if event.attempt is not None:
            attributes["hubspoke.attempt"] = event.attempt
        span = self._start(f"invoke_agent {event.role}", parent, start, attributes)
        child = _child_id(event.run_id, event.item, event.attempt)
        self._dispatches[(event.run_id, event.item)] = _Dispatch(span, start, start, child)
        self._sub_runs[child] = span

    def _drop_dispatch(self, key: tuple[str, str]) -> _Dispatch:
        """Forget an ended dispatch, and the sub-run id it was kept under: a sub-run starts
        while its dispatch is open, so nothing of it is needed after (a tracer serving many
        runs keeps nothing of the finished ones)."""
        dispatch = self._dispatches.pop(key)
        if self._sub_runs.get(dispatch.child) is dispatch.span:
            del self._sub_runs[dispatch.child]
        return dispatch

    def _dispatch(self, event: Event) -> _Dispatch:
        found = self._dispatches.get((event.run_id, str(event.item)))
        if found is None:  # a dispatch whose start this tracer did not see
            self._start_dispatch(event)
            found = self._dispatches[(event.run_id, str(event.item))]
        return found

    def _finish_dispatch(self, event: Event) -> None:
        finished = payload(event, EventKind.DISPATCH_FINISHED)
        dispatch = self._dispatch(event)
        self._drop_dispatch((event.run_id, str(event.item)))
        # A side-effecting call its dispatch ended without finishing: it may have taken effect.
        self._end_calls(
            event.run_id, str(event.item), max(_ns(event.ts), dispatch.start_ns), "in_doubt"
        )
        span, usage = dispatch.span, finished["usage"]
        outcome = finished["outcome"]
        span.set_attribute("hubspoke.outcome", outcome)
        span.set_attribute("gen_ai.usage.input_tokens", usage["input_tokens"])
        span.set_attribute("gen_ai.usage.output_tokens", usage["output_tokens"])
        span.set_attribute("hubspoke.usage.usd", usage["usd"])
        span.set_attribute("hubspoke.usage.requests", usage["requests"])
        span.set_attribute("hubspoke.usage.tool_calls", usage["tool_calls"])
        if outcome != "output":
            span.set_attribute("error.type", outcome)
            span.set_status(self._trace.StatusCode.ERROR, finished.get("message") or outcome)
        span.end(max(_ns(event.ts), dispatch.start_ns))

    def _entry(
        self,
        event: Event,
        name: str,
        seconds: float | None,
        attributes: dict[str, Any],
        *,
        client: bool = False,
    ) -> None:
        """A trace entry's span, under its dispatch's, after the entries before it; `client`
        for a request to a model (span kind ``CLIENT``, as the conventions say of inference
        spans)."""
        dispatch = self._dispatch(event)
        start = dispatch.cursor_ns
        end = start + (_ns(seconds) if seconds is not None and seconds > 0 else 0)
        dispatch.cursor_ns = end
        attributes["hubspoke.run_id"] = event.run_id
        if event.item is not None:
            attributes["hubspoke.item"] = event.item
        error = attributes.pop("hubspoke.error", None) or attributes.get("error.type")
        kind = self._trace.SpanKind.CLIENT if client else self._trace.SpanKind.INTERNAL
        span = self._start(name, dispatch.span, start, attributes, kind=kind)
        if error is not None:
            span.set_status(self._trace.StatusCode.ERROR, str(error))
        span.end(end)

    def _model_exchange(self, event: Event) -> None:
        exchange = payload(event, EventKind.MODEL_EXCHANGE)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "hubspoke.turn": exchange["turn"],
        }
        model = exchange.get("model")
        if model:
            attributes["gen_ai.request.model"] = model
        if exchange.get("provider"):
            attributes["gen_ai.provider.name"] = exchange.get("provider")
        if exchange.get("response_model"):
            attributes["gen_ai.response.model"] = exchange.get("response_model")
        if "input_tokens" in exchange:
            attributes["gen_ai.usage.input_tokens"] = exchange["input_tokens"]
        if "output_tokens" in exchange:
            attributes["gen_ai.usage.output_tokens"] = exchange["output_tokens"]
        if exchange.get("cached_tokens"):
            attributes["gen_ai.usage.cache_read.input_tokens"] = exchange.get("cached_tokens")
        if "usd" in exchange:
            attributes["hubspoke.usage.usd"] = exchange["usd"]
        for flag in ("estimated", "cancelled", "overran"):
            if exchange.get(flag):
                attributes[f"hubspoke.{flag}"] = True
        if exchange.get("error"):
            attributes["error.type"] = exchange.get("error")
        # "{gen_ai.operation.name} {gen_ai.request.model}"; a journal written before the model
        # was recorded names none.
        name = f"chat {model}" if model else "chat"
        self._entry(event, name, exchange.get("seconds"), attributes, client=True)

    def _tool_called(self, event: Event) -> None:
        called = payload(event, EventKind.TOOL_CALLED)
        tool = called["tool"]
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
        }
        if called.get("replayed"):
            attributes["hubspoke.replayed"] = True
        error = called.get("error")
        if error:
            # The class, not the message; the message is the status (`_entry`).
            attributes["error.type"] = _error_type(error)
            attributes["hubspoke.error"] = error
        self._entry(event, f"execute_tool {tool}", called.get("seconds"), attributes)

    def _tool_refused(self, event: Event) -> None:
        """A call the card does not allow (the tool never ran): a zero-length span, so that a
        backend shows what the specialist tried. A malformed trace entry (no tool) has none."""
        refused = payload(event, EventKind.TOOL_REFUSED)
        tool = refused.get("tool")
        if not tool:
            return
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "error.type": "refused",
            "hubspoke.refused": True,
            "hubspoke.error": refused["reason"],
        }
        self._entry(event, f"execute_tool {tool}", None, attributes)

    def _tool_started(self, event: Event) -> None:
        """A side-effecting call, journaled as it starts: its span runs to its
        `tool.finished`, timed by the two events."""
        started = payload(event, EventKind.TOOL_STARTED)
        dispatch = self._dispatch(event)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": started["tool"],
            "hubspoke.run_id": event.run_id,
            "hubspoke.side_effect": True,
        }
        if event.item is not None:
            attributes["hubspoke.item"] = event.item
        if started.get("reconciled"):
            attributes["hubspoke.reconciled"] = True
        span = self._start(
            f"execute_tool {started['tool']}", dispatch.span, _ns(event.ts), attributes
        )
        self._calls[(event.run_id, started["key"])] = (str(event.item), span)

    def _tool_finished(self, event: Event) -> None:
        finished = payload(event, EventKind.TOOL_FINISHED)
        found = self._calls.pop((event.run_id, finished["key"]), None)
        end = _ns(event.ts)
        if found is None:
            # Settled by its reconcile function without running again (a call in doubt from
            # an earlier session): a zero-length span, as the call's outcome is known now.
            dispatch = self._dispatch(event)
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": finished["tool"],
                "hubspoke.run_id": event.run_id,
                "hubspoke.side_effect": True,
            }
            if event.item is not None:
                attributes["hubspoke.item"] = event.item
            span = self._start(f"execute_tool {finished['tool']}", dispatch.span, end, attributes)
        else:
            span = found[1]
        if finished.get("reconciled"):
            span.set_attribute("hubspoke.reconciled", True)
        error = finished.get("error")
        if error:
            span.set_attribute("error.type", _error_type(error))
            span.set_status(self._trace.StatusCode.ERROR, error)
        span.end(end)

    def _end_calls(self, run_id: str, item: str | None, end: int, why: str) -> None:
        """End the side-effecting calls of `run_id` (of its `item`, if given) left without
        their `tool.finished`: ``in_doubt`` when their dispatch or run ended, ``interrupted``
        when the session stopped."""
        for key in [k for k, (i, _) in self._calls.items() if k[0] == run_id and item in (None, i)]:
            span = self._calls.pop(key)[1]
            span.set_attribute("error.type", why)
            if why == "in_doubt":
                span.set_attribute("hubspoke.in_doubt", True)
            span.set_status(self._trace.StatusCode.ERROR, why)
            span.end(end)


_EXCEPTION = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\(")


def _error_type(error: str) -> str:
    """The ``error.type`` of a tool call's journaled error, low-cardinality as the conventions
    ask: the exception's class (``ConnectionError`` of ``ConnectionError('...')``),
    ``ToolArgumentsError`` for arguments that did not validate, ``unfinished`` for a call its
    dispatch's end cut short, else ``_OTHER``. The whole text goes to the span's status."""
    found = _EXCEPTION.match(error)
    if found is not None:
        return found.group(1)
    if error.startswith("invalid arguments for tool "):
        return "ToolArgumentsError"
    if error.startswith("unfinished:"):
        return "unfinished"
    return "_OTHER"


def format_tree(spans: Iterable[ReadableSpan]) -> str:
    """The spans as a tree, one line per span, children indented under their parent, in start
    order: name, duration, and a dispatch's tokens (in/out) and cost in US dollars.

    Spans whose parent is not among `spans` are roots. Returns ``""`` for no spans.
    """
    spans = list(spans)
    ids = {s.context.span_id for s in spans if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in spans:
        parent = s.parent.span_id if s.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(s)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in sorted(children.get(parent, ()), key=lambda x: x.start_time or 0):
            lines.append("  " * depth + _line(s))
            if s.context is not None:
                walk(s.context.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def _line(span: ReadableSpan) -> str:
    attrs = span.attributes or {}
    parts = [span.name]
    if span.start_time is not None and span.end_time is not None:
        parts.append(f"{(span.end_time - span.start_time) / 1e6:.1f}ms")
    for key, label in (("hubspoke.status", "status"), ("hubspoke.outcome", "outcome")):
        if key in attrs:
            parts.append(f"{label}={attrs[key]!s}")
    if "gen_ai.usage.input_tokens" in attrs or "gen_ai.usage.output_tokens" in attrs:
        tokens_in = attrs.get("gen_ai.usage.input_tokens", 0)
        tokens_out = attrs.get("gen_ai.usage.output_tokens", 0)
        parts.append(f"tokens={tokens_in!s}/{tokens_out!s}")
    if "hubspoke.usage.usd" in attrs:
        parts.append(f"${float(str(attrs['hubspoke.usage.usd'])):.6f}")
    return " ".join(parts)


def in_memory() -> tuple[OtelTracer, Any]:
    """A tracer whose spans stay in memory, and the SDK's `InMemorySpanExporter` holding them
    (``exporter.get_finished_spans()``): for tests and the CLI's ``--otel-console``.

    Raises:
        ImportError: the OpenTelemetry SDK is not installed (the message says which extra).
    """
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        raise ImportError(MISSING) from None
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelTracer(provider), exporter
