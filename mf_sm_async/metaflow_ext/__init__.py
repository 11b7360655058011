"""Metaflow integration: the ``@async_inference`` step decorator, the fan-out step type and the live card.

Named ``metaflow_ext`` so it never shadows the ``metaflow`` package itself.
"""
