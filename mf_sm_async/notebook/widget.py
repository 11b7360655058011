"""An ipywidgets panel that shows a run's progress events (see :mod:`mf_sm_async.progress`): a bar of
rows scored and lines for rows done / failed, rows/s, payloads, in flight, backlog, instances and elapsed
time. It mirrors the Metaflow card (:mod:`mf_sm_async.metaflow_ext.card`), a consumer of the same events.

The final state is set on the ``finished`` event, before ``predict`` returns, so a saved notebook keeps it.
Outside a Jupyter kernel (a terminal IPython) nothing is displayed and the final line is printed instead.
"""

from __future__ import annotations

import html
import sys


def in_kernel() -> bool:
    """True inside a running Jupyter (ipykernel) kernel, where widgets can be shown."""
    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class ProgressPanel:
    """A progress-event consumer (``panel(event)``) drawing on a VBox of an IntProgress bar and HTML
    lines; ``status(text)`` sets the header line (used on its own while deploying)."""

    def __init__(self, title: str = "scoring", *, bar: bool = True, show: bool | None = None):
        import ipywidgets as w

        self.title = title
        self.header = w.HTML(f"<b>{html.escape(title)}</b>")
        self.bar = w.IntProgress(value=0, min=0, max=1, description="rows", bar_style="info",
                                 layout=w.Layout(width="60%"))
        self.counts = w.HTML("")
        self.rates = w.HTML("")
        self.box = w.VBox([self.header, self.bar, self.counts, self.rates] if bar else [self.header])
        self.shown = in_kernel() if show is None else show
        self.last = None
        if self.shown:
            from IPython.display import display

            display(self.box)

    def status(self, text: str) -> None:
        """Set the header line (and print it when the panel is not shown)."""
        self.header.value = f"<b>{html.escape(self.title)}</b>: {html.escape(text)}"
        if not self.shown:
            print(f"{self.title}: {text}")

    def __call__(self, event) -> None:
        self.last = event
        self.bar.max = max(event.rows, 1)
        self.bar.value = min(event.rows_done + event.rows_failed, self.bar.max)
        self.counts.value = f"<b>{event.state}</b>: {event.counts_text}"
        self.rates.value = event.rates_text
        if event.kind == "finished":
            self.bar.bar_style = "danger" if event.rows_failed else "success"
            if not self.shown:
                print(f"{self.title}: {self.summary()}")

    def summary(self) -> str:
        """The last event as one line of text."""
        e = self.last
        if e is None:
            return "no progress yet"
        return (f"{e.counts_text}, {e.done}/{e.payloads} payloads, {e.rows_per_second:,.0f} rows/s, {e.elapsed_seconds:.1f}s")
