"""The base of flopcalc's ``TorchDispatchMode``s (the op counter, the live-memory and bytes-moved tallies).

torch wraps every mode's ``__torch_dispatch__`` so that ``torch.compile`` never traces into it, and that wrapper
imports all of ``torch._dynamo`` on the mode's first op: 1–2 s of CPU, more than the analysis of a ResNet-50 on
meta. :class:`DispatchMode` keeps the same protection without that import: while ``torch._dynamo`` is not
imported nothing can be compiling (``torch.compile`` imports it first), so the op goes straight to the mode; once
it is imported, every op goes through ``torch._dynamo.disable`` exactly as torch's wrapper would send it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode


def _outside_dynamo(dispatch: Callable[..., Any]) -> Callable[..., Any]:
    """``dispatch`` kept out of ``torch.compile``'s tracing, importing nothing until something could compile."""
    disabled: list[Callable[..., Any]] = []

    @functools.wraps(dispatch)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not disabled:
            if "torch._dynamo" not in sys.modules:
                return dispatch(*args, **kwargs)
            import torch._dynamo

            disabled.append(torch._dynamo.disable(dispatch, recursive=True))
        return disabled[0](*args, **kwargs)

    return run


class DispatchMode(TorchDispatchMode):
    """A ``TorchDispatchMode`` whose subclasses' ``__torch_dispatch__`` is wrapped by :func:`_outside_dynamo`
    instead of torch's wrapper."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # torch's own wrapping; __init_subclass__ below wraps instead

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dispatch = cls.__dict__.get("__torch_dispatch__")
        if dispatch is not None and not isinstance(dispatch, classmethod):
            cls.__torch_dispatch__ = _outside_dynamo(dispatch)
