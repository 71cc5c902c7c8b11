"""OpenTelemetry spans from a run's journal events (`OtelTracer`, a journal listener), and
whether and where a run is traced (`tracer_for`: `Foreman(tracing=...)`, the CLI's
``--otel``/``--no-otel`` and the standard ``OTEL_*`` variables; see `hubspoke.tracing._setup`).

`OtelTracer` follows the OpenTelemetry GenAI semantic conventions v1.41.0 (agent and framework
spans, status Development): a run is an ``invoke_workflow {workflow}`` span, a dispatch an
``invoke_agent {role}`` span, a model request a ``chat {gen_ai.request.model}`` span (kind
``CLIENT``, with ``gen_ai.provider.name``, the response model if known, its tokens and its
cost in ``hubspoke.usage.usd``) and a tool call an ``execute_tool {tool}`` span, each with
``gen_ai.operation.name``. A phase has no GenAI
operation: it is a ``phase {name}`` span. Every span carries ``hubspoke.run_id``.

The spans are made only from the events the journal writes (so they never disagree with it):
a span opens at its start event and ends at its finishing event, with both times taken from
the events' timestamps (`Event.ts`, seconds, as nanoseconds). A dispatch's trace entries
(``model.exchange``, ``tool.called``) are journaled when the dispatch ends: they become child
spans of its span, laid end to end from the dispatch's start by their ``seconds`` (zero-length
when the payload has none). A sub-run's span is a child of its parent dispatch's span: the
foreman passes its listeners to its sub-foremen, and the child run's ``run.started`` (and, on
a resume, ``run.resumed``) names its ``parent_run`` and ``parent_item``; in an older journal,
whose ``run.resumed`` names neither, a resumed sub-run is found by its id, which its parent's
dispatch determines (`SubForeman.child_id`). A session that stops without ``run.finished``
ends its open spans ``interrupted`` (`OtelTracer.end_open`), so that they are sent.

A side-effecting tool call is journaled as it happens, ``tool.started`` then ``tool.finished``
(no ``tool.called``, unless replayed): its ``execute_tool`` span runs between the two, with
``hubspoke.side_effect``; one its dispatch ended without finishing is ``hubspoke.in_doubt``.
A failed call's ``error.type`` is low-cardinality, as the conventions ask (the exception's
class, ``ConnectionError``); the journaled error is the span's status description.

Nothing is imported from ``opentelemetry`` until tracing is asked for; the SDK and the OTLP
exporter come with the ``otel`` extra (``pip install 'hubspoke[otel]'``).
"""

from hubspoke.tracing._setup import tracer_for, tracing_wanted
from hubspoke.tracing._tracer import INSTALL_HINT, OtelTracer, format_tree, in_memory

__all__ = ["INSTALL_HINT", "OtelTracer", "format_tree", "in_memory", "tracer_for", "tracing_wanted"]
