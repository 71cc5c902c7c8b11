"""Blocking code off the event loop: one worker thread per call, never waited for past its use.

Sync tools and sync function specialists run here, so a blocking call (`time.sleep`, a
synchronous HTTP client, a long computation) neither stalls the other dispatches on the loop nor
escapes its dispatch's time-out. A thread cannot be killed: when the awaiting task is cancelled
(a time-out, a run that stops), the thread runs on to its end and its result is dropped.

Each call gets its own daemon thread rather than a slot in a shared pool: a call that never
returns holds no slot other work waits for, and does not keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["in_thread"]

T = TypeVar("T")


async def in_thread(function: Callable[..., T], /, *args: Any) -> T:
    """Call `function(*args)` in a new daemon thread and await its result.

    The thread runs with a copy of the caller's context variables. If the awaiting task is
    cancelled, the cancellation reaches the caller at once; the thread goes on, and whatever it
    returns or raises later is discarded.

    Raises:
        Exception: whatever `function` raised. A `BaseException` that is not an `Exception`
            (`SystemExit`, `KeyboardInterrupt` raised in the thread) comes back as a
            `RuntimeError` naming it: it must not stop the event loop's thread.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def deliver(value: Any, error: BaseException | None) -> None:
        if future.done():  # the caller stopped waiting (cancelled): a late result is dropped
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)

    def work() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = context.run(function, *args)
        except StopIteration as e:
            # A future cannot hold a StopIteration (it would end the coroutine awaiting it), so
            # it is a RuntimeError here, as PEP 479 makes it in a generator.
            error = RuntimeError(f"StopIteration raised in a worker thread: {e!r}")
        except Exception as e:
            error = e
        except BaseException as e:
            error = RuntimeError(f"{type(e).__name__} raised in a worker thread: {e}")
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for the result
            loop.call_soon_threadsafe(deliver, value, error)

    name = getattr(function, "__name__", None) or getattr(
        getattr(function, "func", None), "__name__", "call"
    )
    threading.Thread(target=work, name=f"hubspoke:{name}", daemon=True).start()
    return await future
