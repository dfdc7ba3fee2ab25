"""The rich console every command prints to.

On a terminal rich fits output to the window. Elsewhere (a CI log, `| tee`, `| cat`) it
assumes 80 columns and cuts table cells to "not availab…": the figures are lost. There the
console gets a width no table reaches, and text is not wrapped, so every row prints whole
on one line (rich tables do not stretch to the console width; they take what they need).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

# Wider than any table these commands print; only a bound, nothing is padded to it.
UNCUT_WIDTH = 10_000


def make_console(stderr: bool = False) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=UNCUT_WIDTH, soft_wrap=True)
