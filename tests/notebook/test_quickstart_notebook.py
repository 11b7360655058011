"""``notebooks/quickstart.ipynb`` executed top to bottom in a real ipykernel (nbclient), from the repo
root, on the emulator of this module's MF_SM_ASYNC_HOME; assertions on what the saved notebook shows."""

from __future__ import annotations

import json
import os
import re
import time

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import NOTEBOOK, ROOT

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@pytest.fixture(scope="module")
def executed(sm_home):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), \
        "the committed notebook must hold no outputs"
    started = time.monotonic()
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}},
                   store_widget_state=True).execute(env=dict(os.environ))
    print(f"quickstart executed in {time.monotonic() - started:.1f}s")
    return nb


def code_cell(nb, starts_with: str):
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts_with))


def text_of(cell) -> str:
    parts = []
    for out in cell.outputs:
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def widget_states(nb) -> dict:
    return nb.metadata["widgets"][WIDGET_STATE]["state"]


def panel_of(nb, cell) -> dict:
    """The final values of the panel a cell displayed: its bar and its text lines."""
    states = widget_states(nb)
    views = [o["data"][WIDGET_VIEW]["model_id"] for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]
    assert views, f"no widget shown by {cell.source.splitlines()[0]!r}"
    box = states[views[-1]]["state"]
    children = [states[ref.removeprefix("IPY_MODEL_")] for ref in box["children"]]
    bar = next(c["state"] for c in children if c["model_name"] == "IntProgressModel")
    lines = " | ".join(c["state"]["value"] for c in children if c["model_name"] == "HTMLModel")
    return {"value": bar["value"], "max": bar["max"], "text": lines}


def test_no_cell_failed(executed):
    for cell in executed.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", json.dumps(out)[:2000]
            assert out.get("name") != "stderr" or "Warning" in out.get("text", ""), out.get("text")


def test_predict_cell_shows_the_panel_with_every_row_done(executed):
    panel = panel_of(executed, code_cell(executed, "%%sm_async predict"))
    assert panel["max"] == 450 and panel["value"] == 450
    assert "finished</b>: 450 of 450 rows done, 0 failed" in panel["text"]
    assert "45/45 payloads" in panel["text"]


def test_python_api_predict_shows_the_panel_too(executed):
    panel = panel_of(executed, code_cell(executed, "again = ep.predict"))
    assert panel["value"] == panel["max"] == 450 and "9/9 payloads" in panel["text"]


def test_accuracy_printed(executed):
    text = text_of(code_cell(executed, "accuracy ="))
    accuracy = float(re.search(r"accuracy (\d\.\d+)", text).group(1))
    assert accuracy > 0.9, text
    assert "label" in text and "prediction" in text  # the result's head


def test_deploy_status_and_teardown(executed):
    deploy = code_cell(executed, "%load_ext")
    states = widget_states(executed)
    views = [o["data"][WIDGET_VIEW]["model_id"] for o in deploy.outputs if WIDGET_VIEW in o.get("data", {})]
    header = states[states[views[0]]["state"]["children"][0].removeprefix("IPY_MODEL_")]["state"]["value"]
    assert "InService after" in header and "bound to ep" in header
    assert "InService" in text_of(code_cell(executed, "%sm_async status"))
    assert re.search(r"endpoint \S+ deleted", text_of(code_cell(executed, "%sm_async teardown")))
