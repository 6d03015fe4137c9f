"""How a formula sheet is laid out, in plain Python (no sympy), so that the sheet computed by sympy
(:mod:`flopcalc.render.formulas`) and the one printed from the planned templates (:mod:`flopcalc.sheet_fast`)
share every character that is not a formula."""

from __future__ import annotations

from collections.abc import Sequence

Line = tuple[str, str, "str | None"]
"""One line of a sheet: its label, its formula as printed, and the formula with numbers (``None``: no values)."""


def with_total(body: str, total: int, latex: bool = False) -> str:
    """``body`` (a formula with numbers) followed by its whole-number value: ``3·64 + 64 = 256``; the value
    alone when the body already is that number."""
    total_text = f"{total:,}"
    if latex:
        return f"{body} = {total_text.replace(',', '{,}')}"
    return body if body == total_text.replace(",", "") else f"{body} = {total_text}"


def latex_word(label: str) -> str:
    """A word in math mode: ``\\text{bias\\_add}``."""
    return r"\text{" + label.replace("_", r"\_") + "}"


def text_sheet(header: Sequence[str], lines: Sequence[Line], notes: Sequence[str]) -> str:
    """The plain-text sheet: the header lines, each line as ``label = formula`` (and ``= numbers`` under it),
    then the notes."""
    width = max(len(label) for label, _, _ in lines)
    out = list(header)
    for label, symbolic, substituted in lines:
        out.append(f"  {label:<{width}} = {symbolic}")
        if substituted is not None:
            out.append(f"  {'':<{width}} = {substituted}")
    out += notes
    return "\n".join(out) + "\n"


def latex_sheet(title: str, lines: Sequence[Line], notes: Sequence[str]) -> str:
    """The LaTeX sheet: an ``align*`` block after a comment with the title, the notes as comments."""
    body = []
    for label, symbolic, substituted in lines:
        body.append(f"{label} &= {symbolic}")
        if substituted is not None:
            body.append(f"&= {substituted}")
    out = [f"% {title}", r"\begin{align*}", " \\\\\n".join(body), r"\end{align*}"]
    out += [f"% {note}" for note in notes]
    return "\n".join(out) + "\n"


def notes(defaults: dict[str, int], unbound: Sequence[str], unchecked: Sequence[str] = ()) -> list[str]:
    """The lines under a sheet: the defaults that were used, the symbols left unbound, then ``unchecked`` (a
    line for each rule not yet checked for want of a symbol only it names)."""
    found = [f"defaults: {', '.join(f'{k}={v}' for k, v in defaults.items())}"] if defaults else []
    found += [f"unbound: {', '.join(unbound)}"] if unbound else []
    return found + list(unchecked)
