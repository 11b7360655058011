"""The ``%sm_async`` magics driven in-process on an IPython shell (no kernel: the panel prints its final
line instead of showing a widget), against the local emulator."""

from __future__ import annotations

import re

import pytest
from IPython.core.interactiveshell import InteractiveShell

from mf_sm_async import AsyncEndpoint


@pytest.fixture(scope="module")
def shell(sm_home):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "mf_sm_async")
    digits = load_digits(as_frame=True)
    ip.user_ns["clf"] = LogisticRegression(max_iter=2000).fit(digits.data[:1000], digits.target[:1000])
    ip.user_ns["x_test"] = digits.data[1000:1200]
    ip.user_ns["y_test"] = digits.target[1000:1200]
    yield ip
    ep = ip.user_ns.get("ep")
    if isinstance(ep, AsyncEndpoint):
        ep.teardown("delete")


def run(shell, capsys, line: str, cell: str | None = None):
    """Run a magic; return (stdout, stderr lines)."""
    if cell is None:
        shell.run_line_magic("sm_async", line)
    else:
        shell.run_cell_magic("sm_async", line, cell)
    out = capsys.readouterr()
    return out.out, [line for line in out.err.splitlines() if line.strip()]


def test_deploy_predict_status_endpoints_teardown(shell, capsys):
    out, err = run(shell, capsys, "deploy ep --model clf --max-instances 1 --teardown delete")
    assert err == []
    ep = shell.user_ns["ep"]
    assert isinstance(ep, AsyncEndpoint) and ep.teardown_mode == "delete"
    assert f"endpoint {ep.name} InService" in out

    out, err = run(shell, capsys, "predict ep --input x_test --output result --rows-per-payload 20",
                   "# the body runs first\nx_test = x_test.head(150)\n")
    assert err == []
    result = shell.user_ns["result"]
    assert len(result.predictions) == 150 and result.failures.empty
    assert (result.predictions["prediction"] == shell.user_ns["y_test"].head(150)).mean() > 0.9
    # 8 payloads of 20 rows; a payload that fails on the way is retried in halves, which the count includes
    done = re.search(r"150 of 150 rows done, 0 failed, (\d+)/(\d+) payloads", out)
    assert done and done.group(1) == done.group(2) and int(done.group(1)) >= 8, out

    out, err = run(shell, capsys, "status ep")
    assert err == [] and ep.name in out and "InService" in out

    out, err = run(shell, capsys, "endpoints")
    assert err == [] and ep.name in out and "InService" in out and "age" in out

    out, err = run(shell, capsys, f"teardown {ep.name} --delete")
    assert err == [] and f"endpoint {ep.name} deleted" in out
    out, err = run(shell, capsys, "endpoints")
    assert ep.name not in out and "no endpoints made by mf-sm-async" in out


@pytest.mark.parametrize("line, cell, expected", [
    ("status no-such-endpoint", None, "cannot attach to endpoint 'no-such-endpoint'"),
    ("teardown no-such-endpoint", None, "cannot attach to endpoint 'no-such-endpoint'"),
    ("predict no-such-endpoint --input x_test --output r", "# score", "cannot attach to endpoint 'no-such-endpoint'"),
    ("predict ep2 --input missing_df --output r", "# score", "no variable named 'missing_df'"),
    ("predict ep2 --input x_test --output r --rows-per-payload 0", "# score", "--rows-per-payload: 0 is not a positive"),
    ("predict ep2 --input x_test", "# score", "the following arguments are required: --output"),
    ("deploy ep2", None, "the following arguments are required: --model"),
    ("deploy ep2 --model no_such_model", None, "no variable or path named 'no_such_model'"),
    ("deploy ep2 --model clf --teardown sometimes", None, "invalid choice: 'sometimes'"),
    ("deploy ep2 --model clf --instance-type ml.bogus", None, "instance_type='ml.bogus' is invalid"),
    ("scale ep2", None, "expected one of deploy, status, endpoints, teardown, predict"),
])
def test_user_errors_print_one_line(shell, capsys, line, cell, expected):
    if "ep2" in line and not line.startswith("deploy"):
        shell.user_ns["ep2"] = AsyncEndpoint.deploy(model=shell.user_ns["clf"], max_instances=1, teardown="delete") \
            if "ep2" not in shell.user_ns else shell.user_ns["ep2"]
    out, err = run(shell, capsys, line, cell)
    assert len(err) == 1, err
    assert expected in err[0], err[0]
    assert "Traceback" not in out
    assert "r" not in shell.user_ns  # no failed predict stored a result


def test_zz_cleanup(shell):
    ep2 = shell.user_ns.pop("ep2", None)
    if ep2 is not None:
        ep2.teardown("delete")
