"""Fixtures that several test files share: token shards, a free port, a moto S3 server on loopback."""

from __future__ import annotations

import socket
from typing import Callable, Iterator

import numpy as np
import pytest

# Credentials moto accepts; set so that no real account is ever reached.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def make_shards(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[str, np.ndarray]]:
    """Call ``make_shards(num_rows, seq_len, rows_per_shard, arange=False)`` for MDS token shards
    (zstd, xxh64, ``slwdata.json``) in a fresh folder; returns (folder, the rows written).
    ``arange`` writes the tokens 0, 1, 2, ... (each token's position), else random rows."""
    from slwdata.dataset.testing import write_token_shards

    def make(num_rows: int, seq_len: int, rows_per_shard: int, arange: bool = False) -> tuple[str, np.ndarray]:
        root = str(tmp_path_factory.mktemp("shards"))
        tokens = np.arange(num_rows * seq_len, dtype=np.uint16).reshape(num_rows, seq_len) if arange else None
        return root, write_token_shards(
            root, num_rows=num_rows, seq_len=seq_len, rows_per_shard=rows_per_shard, tokens=tokens
        )

    return make


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """Call it for a free TCP port on 127.0.0.1, once per server a test starts."""
    return _free_port


@pytest.fixture()
def moto_s3(monkeypatch: pytest.MonkeyPatch, free_port: Callable[[], int]) -> Iterator[tuple]:
    """A moto S3 server in a thread on 127.0.0.1, with fake credentials and ``S3_ENDPOINT_URL``
    in the environment; yields (server, boto3 client). A test may stop the server itself."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {**AWS_TEST_ENV, "S3_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    try:
        yield server, boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    finally:
        try:
            server.stop()
        except Exception:  # already stopped by the test
            pass
