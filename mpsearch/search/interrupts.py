"""Ctrl-C that a library cannot lose.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be. Raised inside a finalizer
or a weakref callback, which a database driver's connection pool runs during garbage collection, it
is printed ("Exception ignored in ...") and dropped: the search would go on as if Ctrl-C had never
been pressed. And a query it cut short there can leave a pooled connection in the middle of a
statement, so that the next storage call fails with an error that has nothing to do with the user's
data. :func:`recorded_interrupts` remembers that SIGINT arrived, so that the search loop stops at its
next step, and an error raised after it reads as the interruption it follows.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


_arrived = threading.Event()


def _record_and_raise(signum, frame) -> None:
    _arrived.set()
    raise KeyboardInterrupt


def _check() -> None:
    if _arrived.is_set():
        raise KeyboardInterrupt


def _no_check() -> None:
    """Where no handler of this module records SIGINT, there is nothing to check."""


@contextmanager
def recorded_interrupts() -> Iterator[Callable[[], None]]:
    """Within the block SIGINT still raises ``KeyboardInterrupt`` at once, and is also recorded.

    Yields ``check``, which raises ``KeyboardInterrupt`` if SIGINT arrived (call it where stopping is
    safe). An ``Exception`` leaving the block after SIGINT arrived leaves it as ``KeyboardInterrupt``,
    chained to that exception. Blocks nest (the outermost one installs the handler and removes it).
    Only in the main thread, and only while Python's default SIGINT handler is installed: a caller's
    own handler is left alone, and elsewhere ``check`` does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield _no_check
        return
    current = signal.getsignal(signal.SIGINT)
    if current is _record_and_raise:  # within an outer block: its record is this one's
        yield _check
        return
    if current is not signal.default_int_handler:
        yield _no_check
        return
    _arrived.clear()
    signal.signal(signal.SIGINT, _record_and_raise)
    try:
        yield _check
    except Exception as err:
        if _arrived.is_set():
            raise KeyboardInterrupt from err
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
