"""Object-store faults in ``slwdata convert`` (issue 15 cases 3, 5, 7), against real servers.

moto runs as its own process on 127.0.0.1 so that it can be frozen (SIGSTOP) or killed under a
running conversion; a tiny HTTP server that answers every request with 403 or 500 stands in for
a store that refuses or fails. Each conversion runs the real command line in a subprocess.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers_convert import REPO, all_bytes

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture()
def moto_proc(free_port):
    """A moto S3 server in its own process; yields (endpoint, Popen, s3 client)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **ENV},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="corpus")
        yield endpoint, proc, client
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(10)


class _Refuser(http.server.BaseHTTPRequestHandler):
    status = 403

    def _answer(self) -> None:
        code = {403: "AccessDenied", 500: "InternalError"}[self.status]
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>injected {self.status}</Message></Error>"
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(params=[403, 500])
def refusing_store(request):
    """A real HTTP server on 127.0.0.1 answering every request with 403 (or 500)."""
    handler = type("H", (_Refuser,), {"status": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", request.param
    server.shutdown()
    server.server_close()


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(4):
        (d / f"doc{i}.txt").write_text("".join(f"document {i} sentence {j}. " for j in range(800)))
    return d


def convert_cmd(corpus: Path, out: str, work: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "slwdata.cli",
        "convert",
        str(corpus),
        "--out",
        out,
        "--tokenizer",
        "bytes",
        "--seq-len",
        "64",
        "--workers",
        "1",
        "--no-progress",
        "--size-limit",
        "32768",
        "--work-dir",
        str(work),
        *extra,
    ]


def run(cmd: list[str], endpoint: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **ENV, "S3_ENDPOINT_URL": endpoint, **env},
    )


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``slwdata convert:`` error line (retry notes may precede it); no traceback."""
    assert proc.returncode not in (0, None), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("slwdata convert: error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_missing_bucket_is_named_before_any_tokenizing(moto_proc, corpus, tmp_path):
    endpoint, _, _ = moto_proc
    work = tmp_path / "work"
    work.mkdir()
    line = error_line(run(convert_cmd(corpus, "s3://no-such-bucket/x", work), endpoint))
    assert "bucket 'no-such-bucket' does not exist — create it or fix --out" in line
    assert os.listdir(work) == []  # refused before a work unit was tokenized


def test_refused_or_failing_finished_output_check_stops_the_run(refusing_store, corpus, tmp_path):
    """The check for a finished remote output fails closed: a 403 stops at once, a 500 after
    bounded retries, each naming the object and the error; nothing is tokenized."""
    endpoint, status = refusing_store
    work = tmp_path / "work"
    work.mkdir()
    t0 = time.time()
    proc = run(convert_cmd(corpus, "s3://corpus/out", work, "--remote-timeout", "3"), endpoint)
    elapsed = time.time() - t0
    line = error_line(proc)
    assert "s3://corpus/out" in line
    if status == 403:
        assert "AccessDenied" in line and "check the credentials and permissions" in line
        assert "retrying" not in proc.stderr
    else:
        assert "no answer after" in line and "InternalError" in line
        assert "retrying in" in proc.stderr
    assert elapsed < 60
    assert os.listdir(work) == []


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["stopped", "killed"])
def test_store_that_stops_answering_mid_convert_ends_in_bounded_time(moto_proc, corpus, tmp_path, fault):
    """The store is frozen (SIGSTOP) or killed after the preflight checks, before the upload:
    the run ends within --remote-timeout plus one try, naming the object, after saying it is
    retrying; the work is kept, and once the store is back a rerun completes the same bytes."""
    endpoint, server, client = moto_proc
    work = tmp_path / "work"
    work.mkdir()
    cmd = convert_cmd(corpus, "s3://corpus/out", work, "--remote-timeout", "4")
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV, "S3_ENDPOINT_URL": endpoint},
    )
    try:
        deadline = time.time() + 60
        while not list(work.rglob("plan.json")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read()
        os.kill(server.pid, signal.SIGSTOP if fault == "stopped" else signal.SIGKILL)
        t0 = time.time()
        _, err = proc.communicate(timeout=120)
        waited = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    line = error_line(subprocess.CompletedProcess(cmd, proc.returncode, "", err))
    assert "cannot upload s3://corpus/out/shard.00000.mds.zstd: no answer after" in line
    assert "4 of 4 tokenized work units kept in" in line and "rerun the same command to resume" in line
    assert "retrying in" in err
    assert waited < 60  # the import of streaming and the local writing come first
    assert list(work.glob("*/unit-*.json"))  # the tokenized units are kept

    if fault == "stopped":
        os.kill(server.pid, signal.SIGCONT)
        again = run(cmd, endpoint)
        assert again.returncode == 0, again.stderr
        assert "resuming" in again.stderr
        local = tmp_path / "local"
        ref = run(convert_cmd(corpus, str(local), tmp_path / "w2"), endpoint)
        assert ref.returncode == 0, ref.stderr
        for name, data in all_bytes(local).items():
            assert client.get_object(Bucket="corpus", Key=f"out/{name}")["Body"].read() == data, name
        assert os.listdir(work) == []


# --- 9. one writer per remote output: a lease object ---------------------------------------------


@pytest.mark.slow
def test_a_busy_remote_out_is_refused_and_a_dead_runs_lease_is_taken_over(moto_proc, corpus, tmp_path):
    """Run A holds the lease (frozen after its checks, so the timing is certain); B, with its own
    work dir, is refused naming A. A is killed; its rerun takes the lease over, resumes, and
    writes the same bytes as a local conversion; the lease is gone afterwards."""
    endpoint, _, client = moto_proc
    cmd_a = convert_cmd(corpus, "s3://corpus/out", tmp_path / "wa")
    env = {**os.environ, **ENV, "S3_ENDPOINT_URL": endpoint}
    a = subprocess.Popen(cmd_a, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 60
        while not list((tmp_path / "wa").rglob("plan.json")) and a.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        assert a.poll() is None, a.stderr.read()
        os.kill(a.pid, signal.SIGSTOP)
        lease = json.loads(client.get_object(Bucket="corpus", Key="out/.slwdata-lease.json")["Body"].read())
        assert lease["pid"] == a.pid
        for extra in ([], ["--seq-len", "32"]):
            line = error_line(run(convert_cmd(corpus, "s3://corpus/out", tmp_path / "wb", *extra), endpoint))
            assert f"s3://corpus/out is being written by another conversion (pid {a.pid} on " in line
            assert "this run changed nothing" in line
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(10)
    again = run(cmd_a, endpoint)
    assert again.returncode == 0, again.stderr
    assert "took over the lease of a conversion that is gone" in again.stderr
    local = tmp_path / "local"
    assert run(convert_cmd(corpus, str(local), tmp_path / "wl"), endpoint).returncode == 0
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="corpus", Prefix="out/")["Contents"]}
    assert keys == {f"out/{n}" for n in all_bytes(local)}  # no lease left, nothing else
    for name, data in all_bytes(local).items():
        assert client.get_object(Bucket="corpus", Key=f"out/{name}")["Body"].read() == data, name


def test_a_live_lease_from_another_host_is_respected(moto_proc, corpus, tmp_path):
    endpoint, _, client = moto_proc
    client.put_object(
        Bucket="corpus",
        Key="out/.slwdata-lease.json",
        Body=json.dumps(
            {"token": "x", "pid": 4242, "host": "trainer-7", "started": "earlier", "expires": time.time() + 600}
        ),
    )
    line = error_line(run(convert_cmd(corpus, "s3://corpus/out", tmp_path / "w"), endpoint))
    assert "is being written by another conversion (pid 4242 on trainer-7, started earlier;" in line
    assert os.listdir(tmp_path / "w") == []
