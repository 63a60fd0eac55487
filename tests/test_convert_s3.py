"""Convert straight to s3:// (moto server), then stream the shards back and compare tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters import ConvertError, convert
from converters.inspect import read_rows


@pytest.fixture()
def s3(moto_s3):
    """The moto server's client, with the bucket ``corpus``."""
    _, client = moto_s3
    client.create_bucket(Bucket="corpus")
    return client


@pytest.mark.slow
def test_convert_to_s3_and_stream_back(s3, tmp_path):
    docs = [f"remote document {i} " * (1 + i % 9) for i in range(400)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    kw = dict(seq_len=48, tokenizer="bytes", size_limit=4096, progress=False, log=lambda m: None)
    local = tmp_path / "local"
    ref = convert([tmp_path / "a.jsonl"], str(local), **kw)
    meta = convert([tmp_path / "a.jsonl"], "s3://corpus/owt/gpt2", work_dir=tmp_path / "work", **kw)
    assert meta == ref
    assert list((tmp_path / "work").iterdir()) == []  # staging removed after upload; the work dir stays
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="corpus", Prefix="owt/gpt2/")["Contents"]}
    assert {"owt/gpt2/index.json", "owt/gpt2/slwdata.json"} <= keys
    assert sum(k.endswith(".mds.zstd") for k in keys) >= 2
    # the uploaded files are the local files, byte for byte
    for p in local.iterdir():
        body = s3.get_object(Bucket="corpus", Key=f"owt/gpt2/{p.name}")["Body"].read()
        assert body == p.read_bytes(), p.name

    from streaming import StreamingDataset

    ds = StreamingDataset(remote="s3://corpus/owt/gpt2", local=str(tmp_path / "cache"), shuffle=False, batch_size=1)
    rows = read_rows(local)
    assert len(ds) == len(rows) == meta["counts"]["rows"]
    got = np.stack([ds[i]["tokens"] for i in range(len(ds))])
    assert np.array_equal(got, rows)

    # a finished remote output is detected: same settings -> no-op, other settings -> clear error
    assert convert([tmp_path / "a.jsonl"], "s3://corpus/owt/gpt2", work_dir=tmp_path / "work", **kw) == ref
    with pytest.raises(ConvertError, match="seq_len: existing 48, requested 64"):
        convert([tmp_path / "a.jsonl"], "s3://corpus/owt/gpt2", work_dir=tmp_path / "work", **{**kw, "seq_len": 64})
    # a prefix holding some other MDS dataset is not written into
    s3.put_object(Bucket="corpus", Key="other/index.json", Body=b"{}")
    with pytest.raises(ConvertError, match="already holds an MDS dataset"):
        convert([tmp_path / "a.jsonl"], "s3://corpus/other", work_dir=tmp_path / "work2", **kw)
