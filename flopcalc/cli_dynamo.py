"""Keep torch's meta kernels from importing ``torch._dynamo`` during the command line's pass (CLI process only).

torch wraps the Python references behind most meta kernels (``relu``, ``batch_norm``, the elementwise ops) in
``torch._disable_dynamo``, whose wrapper imports all of ``torch._dynamo`` on its first call (1–2 s of CPU, more
than the analysis) to build ``torch._dynamo.disable(fn)`` and caches it as ``fn.__dynamo_disable``. While
``torch._dynamo`` is not imported nothing can be compiling (``torch.compile`` imports it first), and
``disable(fn)`` then only calls ``fn``, so :func:`meta_kernels_without_dynamo` caches a plain call in its place
for the duration of the pass and removes it afterwards, also when the pass raises. The cached call checks
again on every call: once anything imports ``torch._dynamo`` (a model's forward, a closed form), it builds
torch's own ``disable(fn)``, caches it as torch would, and uses it. When ``torch._dynamo`` is already imported
(a model file that imports it) nothing is touched.

This changes torch's global state for the pass, so only the ``flopcalc`` command, which owns its process and
exits after printing, uses it; :func:`flopcalc.analyze` never does.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

_CACHED = "__dynamo_disable"
"""The attribute torch's wrapper caches ``torch._dynamo.disable(fn)`` in (``torch/_compile.py``)."""


def _wrapped_functions() -> list[tuple[Callable[..., Any], bool]]:
    """Every function wrapped by ``torch._disable_dynamo`` so far, with its ``recursive`` flag, found by the
    wrapper's code object among the live functions."""
    import torch

    wrapper_code = torch._disable_dynamo(lambda: None).__code__
    found = []
    for obj in gc.get_objects():
        if type(obj) is types.FunctionType and obj.__code__ is wrapper_code:
            cells = dict(zip(wrapper_code.co_freevars, obj.__closure__ or (), strict=True))
            found.append((cells["fn"].cell_contents, cells["recursive"].cell_contents))
    return found


def _plain_call(fn: Callable[..., Any], recursive: bool) -> Callable[..., Any]:
    """``fn`` itself while ``torch._dynamo`` is not imported; torch's ``disable(fn)`` from its first import on."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" not in sys.modules:
            return fn(*args, **kwargs)
        import torch._dynamo

        disabled = torch._dynamo.disable(fn, recursive, wrapping=False)
        setattr(fn, _CACHED, disabled)
        return disabled(*args, **kwargs)

    return call


@contextlib.contextmanager
def meta_kernels_without_dynamo() -> Iterator[None]:
    """For the duration of the block, torch's ``_disable_dynamo`` wrappers call their function directly instead
    of importing ``torch._dynamo``, unless it is already imported; everything is restored afterwards."""
    if "torch._dynamo" in sys.modules:
        yield
        return
    seeded = []
    for fn, recursive in _wrapped_functions():
        if getattr(fn, _CACHED, None) is None:
            call = _plain_call(fn, recursive)
            with contextlib.suppress(AttributeError, TypeError):  # a function that takes no attributes: left as is
                setattr(fn, _CACHED, call)
                seeded.append((fn, call))
    try:
        yield
    finally:
        for fn, call in seeded:
            if getattr(fn, "__dict__", {}).get(_CACHED) is call:
                delattr(fn, _CACHED)
