"""Domain errors. The library raises these; only the CLI turns them into a one-line message and exit status 2."""


class FlopcalcError(Exception):
    """Base class of every error flopcalc raises on purpose."""


class InputError(FlopcalcError, ValueError):
    """A malformed input shape or input value."""


class ForwardError(FlopcalcError, RuntimeError):
    """The model's forward pass raised; the message names the layer and the shapes it was called with."""


class UncountedOpsError(FlopcalcError):
    """``strict=True`` and some executed ops have no counting rule."""


class UnknownModelError(FlopcalcError, LookupError):
    """A model name or ``file.py:factory`` reference that does not resolve."""
