"""Jupyter support: the ``%sm_async`` / ``%%sm_async`` magics (:mod:`.magics`) and the live progress
panel (:mod:`.widget`). ``%load_ext mf_sm_async`` registers the magics."""

from .widget import ProgressPanel, in_kernel

__all__ = ["ProgressPanel", "in_kernel", "load_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    """Register the ``sm_async`` line and cell magics on ``ipython``."""
    from .magics import SmAsyncMagics

    ipython.register_magics(SmAsyncMagics)
