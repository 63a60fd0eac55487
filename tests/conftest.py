"""Fixtures that several test files share: token shards, a free port, a moto S3 server on loopback;
and, for every test, the closing of the streaming datasets it built."""

from __future__ import annotations

import socket
from typing import Any, Callable, Iterator

import numpy as np
import pytest

# Credentials moto accepts; set so that no real account is ever reached.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(autouse=True)
def _close_streaming_datasets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close the streaming datasets a test built once it is done.

    streaming keeps each dataset's shared memory (about 12 file descriptors) until the process
    exits, and a new dataset's prefix search opens those of every dataset still open, so one
    pytest process running the whole suite reaches any descriptor limit. ``SLWDataset.close``
    releases its own; a plain ``StreamingDataset`` gets the same release here."""
    try:
        from streaming import StreamingDataset
    except ImportError:  # the core's tests without streaming
        yield
        return
    made: list[Any] = []
    init = StreamingDataset.__init__

    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(StreamingDataset, "__init__", recording_init)
    yield
    from slwdata.dataset import streaming_compat as compat

    for ds in made:
        if getattr(ds, "_closed", False):
            continue
        if hasattr(ds, "close"):
            try:
                ds.close()
            except Exception:  # noqa: BLE001 - a dataset the test broke on purpose
                pass
            continue
        compat.release_shared_memory(ds)


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
