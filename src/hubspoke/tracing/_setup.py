"""Whether to trace, and where the spans go, from an option and the standard ``OTEL_*``
variables.

The variables mean what the OpenTelemetry specification says ("Environment Variable
Specification", https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/,
and "OTLP Exporter Configuration",
https://opentelemetry.io/docs/specs/otel/protocol/exporter/). hubspoke adds one rule of its
own: tracing is off unless something asks for it, since a run traced by default would try to
reach a collector on localhost that most machines do not have. What asks for it:

- the option (`Foreman(tracing=True)`, ``hubspoke run --otel``), which wins over the variables
  either way (``False``/``--no-otel`` turns tracing off whatever they say; ``True`` exports
  with ``otlp`` when ``OTEL_TRACES_EXPORTER`` is ``none``), except ``OTEL_SDK_DISABLED``,
  which the SDK itself honours: asking for tracing with it set is an error; or
- ``OTEL_TRACES_EXPORTER`` naming an exporter (``otlp``, ``console``; a comma-separated list
  for more than one), or an OTLP endpoint (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
  ``OTEL_EXPORTER_OTLP_ENDPOINT``), with the exporter then ``otlp``, the specification's
  default; unless ``OTEL_SDK_DISABLED`` is ``true`` or ``OTEL_TRACES_EXPORTER`` is ``none``.

As the specification says, an empty variable counts as unset and only ``true`` (in any case)
is true (another value than ``false`` is logged as a warning, on the ``hubspoke.tracing``
logger). The OTLP exporter speaks ``http/protobuf`` (the specification's default protocol, and
the exporter the ``otel`` extra installs); it reads its own variables (endpoint, headers,
timeout, compression, certificates), and the SDK reads ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and ``OTEL_BSP_*``. The service is named
``hubspoke`` unless ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` names it.

Nothing is imported from ``opentelemetry`` unless tracing is asked for.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from hubspoke.errors import ConfigError
from hubspoke.tracing._tracer import MISSING, OtelTracer

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["tracer_for", "tracing_wanted"]

EXPORTERS = ("otlp", "console")
"""The values of ``OTEL_TRACES_EXPORTER`` hubspoke can honour (and ``none``)."""

_PROTOCOL = "http/protobuf"

_providers: dict[tuple[Any, ...], TracerProvider] = {}
"""Providers built from the variables, one per distinct setting: each runs a batch thread, so
every foreman of a process with the same variables shares one."""
_lock = threading.Lock()


def _env(name: str) -> str:
    """The variable's value, stripped; ``""`` when unset (the specification: empty = unset)."""
    return os.environ.get(name, "").strip()


def _true(name: str) -> bool:
    """A boolean variable: true only for ``true`` in any case, as the specification says,
    which also asks for a warning when the value is neither ``true`` nor ``false``."""
    value = _env(name).lower()
    if value not in ("", "true", "false"):
        logging.getLogger("hubspoke.tracing").warning(
            "%s=%r is read as false: only 'true' (in any case) is true", name, _env(name)
        )
    return value == "true"


def _exporters() -> tuple[str, ...] | None:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (``()`` for ``none``), or `None` unset.

    Raises:
        ConfigError: it names an exporter hubspoke cannot use.
    """
    value = _env("OTEL_TRACES_EXPORTER")
    if not value:
        return None
    names = tuple(dict.fromkeys(n.strip().lower() for n in value.split(",") if n.strip()))
    if "none" in names:
        return ()
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={value!r}: hubspoke can export spans with "
            f"{', '.join(EXPORTERS)} (or none), not {', '.join(unknown)}; set it to otlp to "
            "send them to a collector over OTLP/HTTP, or console to print them"
        )
    return names


def tracing_wanted(option: bool | None = None) -> bool:
    """Whether a run is traced: `option` if given, else what the ``OTEL_*`` variables ask
    (see the module's docstring). Imports nothing from OpenTelemetry.

    Raises:
        ConfigError: ``OTEL_TRACES_EXPORTER`` names an exporter hubspoke cannot use.
    """
    if option is not None:
        return option
    if _true("OTEL_SDK_DISABLED"):
        return False
    names = _exporters()
    if names is not None:
        return bool(names)
    return bool(_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _protocol() -> None:
    """Refuse an OTLP protocol other than http/protobuf (the signal's variable first)."""
    name = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    value = _env(name)
    if not value:
        name, value = "OTEL_EXPORTER_OTLP_PROTOCOL", _env("OTEL_EXPORTER_OTLP_PROTOCOL")
    if value and value != _PROTOCOL:
        raise ConfigError(
            f"{name}={value!r}: hubspoke sends spans over OTLP as {_PROTOCOL} only (the "
            f"exporter of hubspoke[otel]); unset it, or set it to {_PROTOCOL} and point "
            "OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (4318 by default)"
        )


def _build(names: tuple[str, ...], console: TextIO | None) -> TracerProvider:
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        raise ImportError(MISSING) from None
    resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "hubspoke"}))
    provider = TracerProvider(resource=resource)  # reads OTEL_TRACES_SAMPLER
    for name in names:
        if name == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError:
                raise ImportError(MISSING) from None
            # The exporter reads its endpoint, headers, timeout, compression and certificates
            # from the OTEL_EXPORTER_OTLP_(TRACES_)* variables; the processor OTEL_BSP_*.
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            out = console if console is not None else sys.stdout
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out)))
    return provider


def tracer_for(
    option: bool | TracerProvider | None = None, *, console: TextIO | None = None
) -> OtelTracer | None:
    """The tracer a run gets, or `None` when it is not traced.

    Args:
        option: ``True`` or ``False`` to trace or not whatever the ``OTEL_*`` variables say;
            `None` to do what they ask (see the module's docstring); or a `TracerProvider` the
            application set up, which the spans go to.
        console: where the ``console`` exporter writes (standard output by default; the CLI
            gives standard error, which keeps standard output for its summary).

    Without a provider given, the spans go to OpenTelemetry's global provider if the
    application (or ``opentelemetry-instrument``) set one, else to a provider built from the
    variables, shared by every run of the process with the same settings. The exporters are
    those ``OTEL_TRACES_EXPORTER`` names, ``otlp`` if it names none (or ``none``, when the
    option asks for tracing).

    Raises:
        ImportError: tracing is asked for and the OpenTelemetry SDK is not installed; the
            message says which extra to install (``pip install 'hubspoke[otel]'``).
        ConfigError: an ``OTEL_*`` variable asks for what hubspoke cannot do (an exporter
            other than ``otlp``/``console``, an OTLP protocol other than ``http/protobuf``),
            or `option` asks for tracing while ``OTEL_SDK_DISABLED`` is ``true``.
    """
    if option is not None and not isinstance(option, bool):
        return OtelTracer(option)
    if not tracing_wanted(option):
        return None
    if _true("OTEL_SDK_DISABLED"):  # the SDK would make every span a no-op
        raise ConfigError(
            "tracing is asked for, but OTEL_SDK_DISABLED=true turns the OpenTelemetry SDK off; "
            "unset OTEL_SDK_DISABLED, or do not ask for tracing (--no-otel, tracing=False)"
        )
    names = _exporters() or ("otlp",)
    if "otlp" in names:
        _protocol()
    try:
        from opentelemetry import trace
    except ImportError:
        raise ImportError(MISSING) from None
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return OtelTracer(current)  # the application's own
    settings = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("OTEL_")))
    key = (names, id(console), settings)
    with _lock:
        provider = _providers.get(key)
        if provider is None:
            provider = _providers[key] = _build(names, console)
    return OtelTracer(provider)
