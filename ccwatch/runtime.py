"""The event loop ccwatch runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv) runs the same coroutines with less work per loop iteration and per socket
operation; it is a dependency on Linux and macOS. ``--event-loop asyncio`` falls back to
the standard loop, for comparison or should uvloop misbehave somewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
Choice = Literal["auto", "uvloop", "asyncio"]
CHOICES: tuple[Choice, ...] = ("auto", "uvloop", "asyncio")


def loop_factory(choice: Choice = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """How to make the loop: ``uvloop`` (ImportError if it is missing), ``asyncio``, or
    ``auto``: uvloop when it can be imported."""
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: Choice = "auto") -> T:
    """``asyncio.run`` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``uvloop`` or ``asyncio``: the kind of ``loop`` (default: the running one)."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
