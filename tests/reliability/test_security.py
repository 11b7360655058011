"""Security, against a real emulator: no credential in logs, exceptions, CLI output, a flow's artifacts,
cards and logs, notebook output or the emulator's own files; the emulator binds loopback unless told;
every object written for an endpoint with ``kms_key_id`` is SSE-KMS with that key; the package calls no
AWS action outside the documented IAM policy (docs/iam.md).

Credentials: a known fake access key, secret and session token are exported before anything starts. The
local target signs with fixed dummy keys, so to make the fake ones travel the scoring runs on the AWS
target pointed at the emulator (``AWS_ENDPOINT_URL``): every S3, SQS, SNS, SageMaker request then carries
the fake session token and a signature made with the fake secret.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import uuid
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mf_sm_async import AsyncEndpoint, ConfigError, aws
from mf_sm_async import endpoint as endpoints
from mf_sm_async.errors import AsyncInferenceError
from mf_sm_async.local import daemon
from mf_sm_async.role_check import needed_permissions

from .security_support import MODELS, ROOT, own_emulator, raw_client

FAKE = {"AWS_ACCESS_KEY_ID": "AKIAMFSAFAKE00000001",
        "AWS_SECRET_ACCESS_KEY": "mfsaFakeSecret/0123456789+abcdefghijKLMNOPQRST",
        "AWS_SESSION_TOKEN": "mfsaFakeSessionToken" + "Zx9" * 40}
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
DOCS = ROOT / "docs"


def leaks(text: str | bytes) -> list[str]:
    """The credentials, or credential-bearing URL parameters, that ``text`` shows."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    found = [name for name, value in FAKE.items() if value in text]
    # a session token cut short by a log formatter is still a leak
    found += ["AWS_SESSION_TOKEN prefix"] if FAKE["AWS_SESSION_TOKEN"][:24] in text else []
    found += re.findall(r"X-Amz-(?:Signature|Credential|Security-Token)=(?!<redacted>)[^&\s'\"]{4}", text)
    found += re.findall(r"Signature[=:]\n?[0-9a-f]{64}", text)
    return found


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The fake credentials exported, then the emulator started (it must not keep them)."""
    saved = {k: os.environ.get(k) for k in FAKE}
    os.environ.update(FAKE)
    try:
        with own_emulator(tmp_path_factory.mktemp("security")) as state:
            yield state
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        aws._clients.clear()  # clients built with the fake credentials or AWS_ENDPOINT_URL


@pytest.fixture(scope="module")
def endpoint(emulator):
    # min_instances=1: a model-server process is always there to inspect
    ep = AsyncEndpoint.deploy(model=str(MODELS / "rowsum"), min_instances=1, max_instances=1, teardown="delete")
    yield ep
    ep.teardown()


@pytest.fixture
def aws_target_on_emulator(emulator, monkeypatch):
    """The AWS target (standard credential chain: the fake keys) answered by the emulator."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator["url"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield
    for key in [k for k in aws._clients if k[1] == "aws"]:
        del aws._clients[key]


@pytest.fixture
def debug_log():
    """Everything logged at DEBUG by any logger (botocore and urllib3 included), as a user who turned
    logging up would see it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def frame(rows: int, columns: int = 3, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(rows, columns)),
                        columns=[f"f{n}" for n in range(columns)])


def proc_environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def counts(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_mf_sm_async/counts") as response:
        return json.load(response)


# ------------------------------------------------------------------------------------ credentials


def test_scoring_on_the_aws_target_logs_no_credential_even_at_debug(endpoint, aws_target_on_emulator, debug_log):
    ep = AsyncEndpoint.attach(endpoint.name, target="aws")
    shown = []
    try:
        df = frame(3_000, columns=20)
        df.iloc[7, 0] = -999  # a failure: its error text and failure location end up in the result
        result = ep.predict(df, rows_per_payload=1_500, progress=False)  # ~600 KB payloads: uploaded to S3
        shown += [result.failures.to_string(), repr(result), str(result.metrics.as_dict())]
        assert len(result.failures) == 1 and result.predictions["prediction"].notna().sum() == 2_999
        shown.append(repr(ep.invoke_async(b"1.0,2.0\n", content_type="text/csv").result(60)))
        for bad in (lambda: AsyncEndpoint.attach("no-such-endpoint", target="aws"),
                    lambda: ep.predict(df.head(20), on_error="raise", rows_per_payload=20, progress=False),
                    lambda: ep.predict(df, content_type="text/plain")):
            with pytest.raises(AsyncInferenceError) as error:
                bad()
            shown += [str(error.value), repr(error.value), repr(error.value.__cause__)]
        shown.append(repr(ep.status()))
    finally:
        ep.teardown()
    logged = debug_log.getvalue()
    # the fake credentials did travel: botocore signed with them and logged the token header, redacted
    assert "x-amz-security-token" in logged.lower() and "<redacted>" in logged
    assert leaks(logged) == []
    assert leaks("\n".join(shown)) == []


def test_the_emulator_and_its_model_servers_never_hold_aws_credentials(endpoint, emulator):
    pids = [emulator["pid"]]
    for state in counts(emulator["url"]).values():
        pids += state["pids"]
    assert len(pids) >= 2  # the daemon and at least one model server
    for pid in pids:
        assert leaks(proc_environ(pid)) == [], pid


def test_the_emulator_writes_no_credential_to_its_state_directory(endpoint, emulator, aws_target_on_emulator):
    ep = AsyncEndpoint.attach(endpoint.name, target="aws")
    try:
        ep.predict(frame(50), rows_per_payload=10, progress=False)  # signed with the fake keys
        raw_client("sns", emulator["url"]).list_topics()
    finally:
        ep.teardown()
    scanned = 0
    for path in Path(emulator["state_dir"]).rglob("*"):
        if path.is_file() and path.stat().st_size < 64 << 20:
            assert leaks(path.read_bytes()) == [], path
            scanned += 1
    assert scanned > 10 and (Path(emulator["state_dir"]) / "journal.jsonl").exists()


def test_cli_output_shows_no_credential(endpoint, emulator):
    env = {**os.environ, "AWS_ENDPOINT_URL": emulator["url"], "AWS_DEFAULT_REGION": "us-east-1"}
    outputs = []
    for args in (["endpoints", "list", "--target", "aws"], ["endpoints", "teardown", "no-such", "--target", "aws"],
                 ["local", "status"], ["local", "env"], ["endpoints", "logs", endpoint.name]):
        done = subprocess.run([sys.executable, "-m", "mf_sm_async.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120, cwd=ROOT)
        outputs.append(done.stdout + done.stderr)
    assert endpoint.name in outputs[0] and "cannot attach to endpoint 'no-such'" in outputs[1]
    assert "Traceback" not in "".join(outputs[:4])  # the model's log (the last) shows its own tracebacks
    assert leaks("\n".join(outputs)) == []


def test_a_flow_run_leaves_no_credential_in_artifacts_cards_or_logs(emulator, tmp_path):
    home = tmp_path / "mf"
    env = {**os.environ, "USERNAME": "tester", "METAFLOW_HOME": str(home / "metaflow"),
           "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(home / "datastore"),
           "METAFLOW_CARD_LOCALROOT": str(home / "cards"), "MF_SM_ASYNC_LEASE_TTL_SECONDS": "15"}
    flow = ROOT / "tests" / "integration" / "flows" / "rowsum_flow.py"
    done = subprocess.run([sys.executable, str(flow), "run", "--rows", "60", "--poison", "3"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    dump = tmp_path / "everything.bin"
    script = textwrap.dedent(f"""
        import pickle
        from metaflow import Flow, namespace
        namespace(None)
        run = Flow("RowSumFlow").latest_run
        blobs = []
        for step in run:
            for task in step:
                blobs.append(task.stdout.encode() + task.stderr.encode())
                for artifact in task:
                    blobs.append(pickle.dumps(artifact.data))
        open({str(dump)!r}, "wb").write(b"\\n".join(blobs))
    """)
    read = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert read.returncode == 0, read.stderr
    everything = dump.read_bytes()
    assert b"RowSumFlow" in everything or len(everything) > 1000
    cards = [p for p in home.rglob("*.html")]
    assert cards, "the run made no card"
    for blob in [everything, done.stdout.encode(), done.stderr.encode(), *(p.read_bytes() for p in cards)]:
        assert leaks(blob) == []


def test_notebook_magics_show_no_credential(emulator, capsys, debug_log):
    from IPython.core.interactiveshell import InteractiveShell
    from sklearn.linear_model import LogisticRegression

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mf_sm_async")
    x = frame(200, columns=4, seed=3)
    shell.user_ns.update(clf=LogisticRegression().fit(x, (x["f0"] > 0).astype(int)), x=x)
    shell.run_line_magic("sm_async", "deploy nbep --model clf --max-instances 1 --teardown delete")
    try:
        shell.run_cell_magic("sm_async", "predict nbep --input x --output scored --rows-per-payload 50",
                               "# the cell body runs first")
        shell.run_line_magic("sm_async", "status nbep")
        shell.run_line_magic("sm_async", "endpoints")
        shell.run_line_magic("sm_async", "status no-such-endpoint")  # a user error: one line
        assert len(shell.user_ns["scored"].predictions) == 200
    finally:
        shell.run_line_magic("sm_async", f"teardown {shell.user_ns['nbep'].name} --delete")
    out = capsys.readouterr()
    assert "cannot attach to endpoint 'no-such-endpoint'" in out.out + out.err
    assert leaks(out.out + out.err + debug_log.getvalue()) == []


def test_redaction_covers_what_botocore_and_urllib3_print():
    samples = [
        "Sending http request: <AWSPreparedRequest stream_output=False, method=PUT, url=http://h/b/k, "
        f"headers={{'X-Amz-Security-Token': b'{FAKE['AWS_SESSION_TOKEN']}', 'Authorization': b'AWS4-HMAC-SHA256 "
        f"Credential={FAKE['AWS_ACCESS_KEY_ID']}/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, "
        f"Signature={'a' * 64}'}}>",
        f"CanonicalRequest:\nPUT\n/b/k\n\nhost:h\nx-amz-security-token:{FAKE['AWS_SESSION_TOKEN']}\n\nhost\nUNSIGNED",
        f"Signature:\n{'b' * 64}",
        "http://h:80 \"GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAX%2F20240101%2Fus-east-1"
        f"&X-Amz-Security-Token={FAKE['AWS_SESSION_TOKEN']}&X-Amz-Signature={'c' * 64} HTTP/1.1\" 200 5",
    ]
    for sample in samples:
        assert leaks(sample), "the sample itself must leak"
        assert leaks(aws.redact(sample)) == [], aws.redact(sample)


# ------------------------------------------------------------------------------------ loopback


def non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def listening_addresses(pids: set[int]) -> set[str]:
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.add(line.split()[3].rsplit(":", 1)[0])
    return found


def test_the_emulator_and_everything_it_starts_listen_on_loopback_only(endpoint, emulator):
    pids = {emulator["pid"]}
    children = subprocess.run(["pgrep", "-P", str(emulator["pid"])], capture_output=True, text=True).stdout.split()
    pids.update(int(p) for p in children)  # rclone and the model servers
    addresses = listening_addresses(pids)
    assert addresses and addresses <= {"127.0.0.1", "[::1]"}, addresses
    assert emulator["url"].startswith("http://127.0.0.1:")
    other = non_loopback_address()
    if other:
        with pytest.raises(OSError):
            socket.create_connection((other, emulator["port"]), timeout=2).close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "8.8.8.8"])
def test_a_non_loopback_bind_is_refused_naming_the_host_and_the_flag(tmp_path, host):
    with pytest.raises(ConfigError) as error:
        daemon.start(tmp_path / "state", host=host)
    assert error.value.field == "--host" and error.value.value == host
    assert "--allow-remote" in error.value.allowed and f"--host {host} --allow-remote" in error.value.hint
    assert not (tmp_path / "state" / daemon.STATE_FILE).exists()
    done = subprocess.run([sys.executable, "-m", "mf_sm_async.cli", "local", "serve", "--host", host,
                           "--state-dir", str(tmp_path / "cli")], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 2 and done.stderr.startswith(f"mf-sm-async: --host={host!r} is invalid: allowed a "
                                                          "loopback address")


def test_allow_remote_binds_as_asked_but_keeps_the_control_api_to_loopback(tmp_path):
    other = non_loopback_address()
    if other is None:
        pytest.skip("this machine has no non-loopback IPv4 address to test from")
    state_dir = tmp_path / "remote"
    state = daemon.start(state_dir, host="0.0.0.0", allow_remote=True)
    try:
        assert state["url"].startswith("http://127.0.0.1:")  # what local clients use
        remote = f"http://{other}:{state['port']}"
        assert raw_client("sns", remote).list_topics()["Topics"] == []  # AWS APIs answer, as asked
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{remote}/_mf_sm_async/health", timeout=5)
        assert refused.value.code == 403
        with urllib.request.urlopen(f"{state['url']}/_mf_sm_async/health", timeout=5) as ok:
            assert json.load(ok)["pid"] == state["pid"]
    finally:
        daemon.stop(state_dir)


# ------------------------------------------------------------------------------------ KMS


def test_every_object_written_for_an_endpoint_with_a_kms_key_is_sse_kms(emulator, tmp_path):
    ep = AsyncEndpoint.deploy(model=str(MODELS / "rowsum"), max_instances=1, teardown="delete", kms_key_id=KMS_KEY)
    s3 = raw_client("s3", emulator["url"])
    bucket, prefix = ep.resources.bucket, ep.resources.prefix
    try:
        config = raw_client("sagemaker", emulator["url"]).describe_endpoint_config(EndpointConfigName=ep.name)
        assert config["AsyncInferenceConfig"]["OutputConfig"]["KmsKeyId"] == KMS_KEY
        df = frame(3_000, columns=20, seed=1)
        df.iloc[11, 2] = -999  # a failure object, written by the emulator
        result = ep.predict(df, rows_per_payload=1_500, keep_inputs=True, progress=False, run_id="kms-run")
        assert len(result.failures) == 1
        big = tmp_path / "big.csv"
        with open(big, "wb") as out:  # over the 64 MiB multipart threshold: a multipart upload
            out.truncate(70 << 20)
        with pytest.raises(AsyncInferenceError):
            ep.invoke_async(str(big), content_type="text/csv").result(300)  # zeros are no CSV: a failure
        ep.invoke_async(b"1.0,2.0\n" * 20_000, content_type="text/csv").result(120)  # a PutObject input
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for o in page.get("Contents", [])]
        kinds = {}
        for key in keys:
            head = s3.head_object(Bucket=bucket, Key=key)
            assert (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == ("aws:kms", KMS_KEY), key
            kind = key[len(prefix) + 1:].split("/")[0]
            kind = key.split("/runs/kms-run/")[1].split("/")[0] if "/runs/kms-run/" in key and kind == "runs" else kind
            kinds[kind] = kinds.get(kind, 0) + 1
        # model tarball, lease, run inputs / journal / manifest, invoke_async inputs, outputs and failures
        assert {"model", "leases", "in", "journal", "manifest.json", "invocations", "outputs",
                "failures"} <= set(kinds), kinds
    finally:
        ep.teardown()


def test_a_key_that_is_no_kms_key_id_is_refused_before_anything_is_made():
    with pytest.raises(ConfigError) as error:
        AsyncEndpoint.deploy(model=str(MODELS / "rowsum"), kms_key_id="arn:aws:kms:us-east-1:1:key/x")
    assert error.value.field == "kms_key_id" and "key ARN" in error.value.allowed


# ------------------------------------------------------------------------------------ IAM

# API operations whose IAM action has another name; sts:GetCallerIdentity needs no permission
ACTION_OF = {"s3:HeadObject": "s3:GetObject", "s3:HeadBucket": "s3:ListBucket", "s3:ListObjectsV2": "s3:ListBucket",
             "s3:CreateMultipartUpload": "s3:PutObject", "s3:UploadPart": "s3:PutObject",
             "s3:CompleteMultipartUpload": "s3:PutObject", "s3:DeleteObjects": "s3:DeleteObject",
             "sqs:DeleteMessageBatch": "sqs:DeleteMessage", "sts:GetCallerIdentity": None}
SERVICE_PREFIX = {"sagemaker-runtime": "sagemaker"}
# in the policy although the emulator lifecycle does not call them: docs/iam.md says why, one by one
NOT_CALLED_HERE = {"iam:PassRole", "sagemaker:AddTags", "sns:TagResource", "sqs:TagQueue", "cloudwatch:TagResource",
                   "iam:CreateServiceLinkedRole", "s3:AbortMultipartUpload", "kms:GenerateDataKey", "kms:Decrypt",
                   "iam:GetRole", "iam:SimulatePrincipalPolicy", "logs:DescribeLogStreams", "logs:GetLogEvents",
                   "sqs:ListQueueTags"}


def policy_actions(name: str) -> set[str]:
    document = json.loads((DOCS / name).read_text())
    return {action for statement in document["Statement"] for action in statement["Action"]}


def test_the_code_calls_no_aws_action_outside_the_documented_policy(emulator, tmp_path):
    called: set[str] = set()

    def record(model, **_):
        service = model.service_model.service_name
        called.add(f"{SERVICE_PREFIX.get(service, service)}:{model.name}" if service in SERVICE_PREFIX
                   else f"{service}:{model.name}")

    aws.register_hook("before-call", record)
    try:
        # a bucket of its own (so it is created here) and one instance kept up (so scale_to_zero has work)
        options = {"s3_prefix": f"s3://mfsa-iam-{uuid.uuid4().hex[:8]}", "min_instances": 1, "max_instances": 2}
        ep = AsyncEndpoint.deploy(model=str(MODELS / "rowsum"), teardown="zero", **options)
        again = AsyncEndpoint.deploy(model=str(MODELS / "rowsum"), teardown="zero", **options)  # re-use
        df = frame(3_000, columns=20, seed=2)
        df.iloc[3, 0] = -999
        ep.predict(df, rows_per_payload=1_500, progress=False)
        ep.predict(df.head(40), rows_per_payload=10, progress=False, run_id="iam-run")
        ep.predict(df.head(40), rows_per_payload=10, progress=False, run_id="iam-run", resume=True)
        ep.invoke_async(b"1.0,2.0\n", content_type="text/csv").result(60)
        big = tmp_path / "big.csv"
        with open(big, "wb") as out:
            out.truncate(70 << 20)
        with pytest.raises(AsyncInferenceError):
            ep.invoke_async(str(big), content_type="text/csv").result(300)
        ep.status()
        endpoints.list_managed()
        endpoints.container_logs(ep.name)
        ep.scale_to_zero()
        again.teardown()
        ep.teardown()
        endpoints.teardown_managed(ep.name, delete=True)
        AsyncEndpoint.deploy(model=str(MODELS / "rowsum"), teardown="keep", **options).teardown()
        deleted, _ = endpoints.cleanup(0)  # also deletes what earlier tests left at zero
        assert ep.name in deleted
    finally:
        aws.unregister_hook("before-call", record)
    actions = {ACTION_OF.get(call, call) for call in called} - {None}
    allowed = policy_actions("iam-caller-policy.json")
    assert actions - allowed == set(), "called but not in docs/iam-caller-policy.json"
    assert allowed - actions == NOT_CALLED_HERE, "in the policy, neither called nor explained in docs/iam.md"
    assert len(called) >= 40


def test_the_execution_role_policy_holds_what_the_role_check_asks_for():
    checked = {action for action, _ in needed_permissions("b", "p", ["arn:aws:sns:us-east-1:1:t"])}
    assert checked <= policy_actions("iam-execution-role-policy.json")
    explained = (DOCS / "iam.md").read_text()
    for action in NOT_CALLED_HERE:
        assert f"`{action}`" in explained, action


def test_register_hook_reaches_clients_made_before_and_after(emulator):
    seen = []
    before = aws.client("sns")

    def hook(model, **_):
        seen.append(model.name)

    aws.register_hook("before-call", hook)
    try:
        before.list_topics()
        aws.client("sqs").list_queues()
    finally:
        aws.unregister_hook("before-call", hook)
    before.list_topics()
    assert seen == ["ListTopics", "ListQueues"]

