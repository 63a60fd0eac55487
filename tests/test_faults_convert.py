"""Faults a user can meet in ``slwdata convert`` (issue 15, converter half), against real processes.

Each test runs the real command line in a subprocess (bounded by a timeout) and checks what a
user relies on: their files still there, one line naming what went wrong and what to do, a
non-zero exit, and a rerun that gives the same bytes. Object-store faults are in
test_faults_convert_s3.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers_convert import REPO, all_bytes

PILE = REPO.parent / "shared" / "data" / "corpora" / "pile-mini"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slwdata.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def convert_args(inputs: list[Path], out: Path, *extra: str) -> list[str]:
    return [
        "convert",
        *map(str, inputs),
        "--out",
        str(out),
        "--tokenizer",
        "bytes",
        "--seq-len",
        "64",
        "--workers",
        "1",
        "--no-progress",
        "--size-limit",
        "65536",
        *extra,
    ]


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The run failed with exactly one line on stderr and no traceback; return that line."""
    assert proc.returncode not in (0, None), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("slwdata convert: "), lines[0]
    return lines[0]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """Four .txt documents, about 160 KB in all."""
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(4):
        (d / f"doc{i}.txt").write_text("".join(f"document {i} sentence {j} of some length. " for j in range(1000)))
    return d


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


# --- 1. --work-dir is never deleted -----------------------------------------------------------


def test_work_dir_keeps_the_users_files_and_only_the_scratch_folder_goes(corpus, tmp_path):
    work = tmp_path / "mywork"
    work.mkdir()
    (work / "keep.txt").write_text("the user's file")
    out = tmp_path / "out"
    for _ in range(2):  # the second run is the "already complete, nothing to do" path
        proc = cli(*convert_args([corpus], out, "--work-dir", str(work)))
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in work.iterdir()) == ["keep.txt"]
        assert (work / "keep.txt").read_text() == "the user's file"
    assert (out / "slwdata.json").exists()
    assert cli("verify", str(out)).returncode == 0


@pytest.mark.parametrize("which", ["input-parent", "input-itself", "out-parent", "out-itself"])
def test_work_dir_overlapping_inputs_or_output_is_refused_up_front(corpus, tmp_path, which):
    out = tmp_path / "shards" / "out"
    work = {"input-parent": corpus.parent, "input-itself": corpus, "out-parent": out.parent, "out-itself": out}[which]
    before = all_bytes(corpus)
    proc = cli(*convert_args([corpus], out, "--work-dir", str(work)))
    line = one_error_line(proc)
    assert f"--work-dir {work}" in line and "choose a work dir" in line
    assert all_bytes(corpus) == before
    assert not out.exists()  # refused before anything was written


# --- 6. workers die with their parent; Ctrl-C says what was kept -------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_pool_workers_die_with_the_main_process_and_release_stdout(tmp_path, sig):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slwdata.cli",
            "convert",
            str(PILE),
            "--out",
            str(out),
            "--seq-len",
            "64",
            "--workers",
            "2",
            "--no-progress",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    workers: list[int] = []
    try:
        deadline = time.time() + 60
        while len(workers) < 2 and proc.poll() is None and time.time() < deadline:
            workers = children(proc.pid)
            time.sleep(0.01)
        assert len(workers) == 2, "the pool never started"
        os.kill(proc.pid, sig)  # the main process only, as a supervisor or the OOM killer would
        proc.wait(30)
        # The caller's pipes reach EOF: no orphan holds them (a capture_output wrapper returns).
        assert proc.stdout.read() == b""
        deadline = time.time() + 10
        while any(alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if alive(w)], "pool workers outlived the main process"
    finally:
        for w in [proc.pid, *workers]:
            if alive(w):
                os.kill(w, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, to_group, code, said",
    [
        (signal.SIGINT, True, 130, "interrupted"),  # a terminal's Ctrl-C reaches the whole process group
        (signal.SIGTERM, False, 143, "terminated (SIGTERM)"),  # `kill` or a supervisor: the main process
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_interrupt_ends_with_one_line_and_a_rerun_resumes_to_the_same_bytes(tmp_path, sig, to_group, code, said):
    out, ref = tmp_path / "out", tmp_path / "ref"
    args = ["convert", str(PILE), "--out", str(out), "--seq-len", "64", "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "slwdata.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while not list((out / ".slwdata-work").glob("unit-*.json")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        (os.killpg if to_group else os.kill)(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"slwdata convert: {said} — ")
    assert re.search(
        r"\d+ of 2 tokenized work units and [1-9]\d* tokenized chunks of compressed JSON-lines "
        r"files kept in ",
        lines[0],
    ), lines[0]
    assert "rerun the same command to resume" in lines[0]
    assert not (out / "slwdata.json").exists()

    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    assert cli(*[a if a != str(out) else str(ref) for a in args]).returncode == 0
    assert all_bytes(out) == all_bytes(ref)


# --- 7. one-line errors -------------------------------------------------------------------------


def test_out_that_is_a_file_or_under_one_is_refused(corpus, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("precious")
    line = one_error_line(cli(*convert_args([corpus], f)))
    assert f"--out {f} is an existing file — choose a directory" in line
    line = one_error_line(cli(*convert_args([corpus], f / "sub" / "out")))
    assert f"lies under {f}, which is a file" in line
    assert f.read_text() == "precious"


@pytest.fixture()
def tmpfs(tmp_path: Path):
    """Mount a small tmpfs (needs root); yields (path, remount(options))."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True, timeout=30
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")

    def remount(opts: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{opts}", str(mnt)], check=True, timeout=30)

    try:
        yield mnt, remount
    finally:
        subprocess.run(["umount", "-l", str(mnt)], timeout=30)


def test_read_only_output_is_one_line(corpus, tmpfs):
    mnt, remount = tmpfs
    remount("ro")
    line = one_error_line(cli(*convert_args([corpus], mnt / "out")))
    assert f"cannot write {mnt / 'out'}" in line and "Read-only file system" in line
    assert "choose a writable --out" in line


@pytest.mark.parametrize("phase", ["tokenizing", "writing the output"])
def test_disk_full_says_how_far_it_got_and_a_rerun_gives_the_same_bytes(corpus, tmp_path, tmpfs, phase):
    # ~170 KB of text -> ~340 KB of uint16 token files (in the work dir), then as much in shards
    mnt, remount = tmpfs
    if phase == "tokenizing":  # the work dir on a file system smaller than one unit's tokens
        remount("size=64k")
        out, work = tmp_path / "out", mnt
    else:  # the output on it
        out, work = mnt / "out", tmp_path / "work"
        work.mkdir()
    ref = tmp_path / "ref"
    args = convert_args([corpus], out, "--work-dir", str(work), "--compression", "none", "--workers", "2")
    line = one_error_line(cli(*args))
    assert f"disk full while {phase}" in line
    kept = re.search(r"(\d+) of 4 tokenized work units kept in ", line)
    assert kept, line
    assert "rerun the same command to resume" in line
    if phase == "writing the output":
        assert "rows written before it stopped" in line
    assert not (out / "slwdata.json").exists()

    remount("size=16m")
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert ("resuming" in again.stderr) == (int(kept.group(1)) > 0)
    assert cli(*convert_args([corpus], ref, "--compression", "none")).returncode == 0
    assert all_bytes(out) == all_bytes(ref)
    assert os.listdir(work) == []  # the scratch folder is gone, the work dir stays


def test_inspect_on_a_damaged_shard_0_is_one_line(corpus, tmp_path):
    out = tmp_path / "out"
    assert cli(*convert_args([corpus], out)).returncode == 0
    shard0 = out / json.loads((out / "index.json").read_text())["shards"][0]["zip_data"]["basename"]
    data = bytearray(shard0.read_bytes())
    data[8:40] = b"\xff" * 32
    shard0.write_bytes(bytes(data))
    proc = cli("inspect", str(out))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"slwdata inspect: error: {shard0}: cannot read this shard")
    assert "slwdata verify" in lines[0]


# --- 8. nothing usable is not success ----------------------------------------------------------


def test_zero_rows_exits_non_zero_with_the_counts_unless_allowed(corpus, tmp_path):
    out = tmp_path / "out"
    line = one_error_line(cli(*convert_args([corpus], out, "--seq-len", "1000000")))
    assert "no rows produced" in line and "fewer than one row of 1000000" in line
    assert "4 documents" in line and "--allow-empty" in line
    assert not out.exists()
    ok = cli(*convert_args([corpus], out, "--seq-len", "1000000", "--allow-empty"))
    assert ok.returncode == 0, ok.stderr
    assert json.loads((out / "slwdata.json").read_text())["counts"]["rows"] == 0


def test_every_input_rejected_exits_non_zero(tmp_path):
    bad = tmp_path / "in" / "data.jsonl.zst"
    bad.parent.mkdir()
    bad.write_text('{"text": "plain text, not zstd"}\n' * 50)
    out = tmp_path / "out"
    proc = cli(*convert_args([bad], out))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "no rows produced: every record was rejected" in proc.stderr
    assert not out.exists()


def test_verify_fails_without_slwdata_json_or_when_it_disagrees(corpus, tmp_path):
    out = tmp_path / "out"
    assert cli(*convert_args([corpus], out)).returncode == 0
    meta = json.loads((out / "slwdata.json").read_text())
    meta["counts"]["rows"] += 1
    (out / "slwdata.json").write_text(json.dumps(meta))
    proc = cli("verify", str(out))
    assert proc.returncode == 1 and "counts.rows=" in proc.stderr
    (out / "slwdata.json").unlink()  # as after a kill between index.json and slwdata.json
    proc = cli("verify", str(out))
    assert proc.returncode == 1 and "no slwdata.json: the conversion did not finish" in proc.stderr


# --- 9. two conversions into one --out --------------------------------------------------------


@pytest.mark.slow
def test_a_second_conversion_into_a_busy_out_is_refused_naming_the_live_one(tmp_path):
    out = tmp_path / "out"
    args = ["convert", str(PILE), "--out", str(out), "--seq-len", "64", "--workers", "1", "--no-progress"]
    first = subprocess.Popen(
        [sys.executable, "-m", "slwdata.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while not (out / ".slwdata-work" / "plan.json").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        assert first.poll() is None, "the first conversion ended too soon for this test"
        for extra in ([], ["--seq-len", "32"]):  # same settings (the race) and other settings
            line = one_error_line(cli(*args, *extra, timeout=60))
            assert f"is being written by another conversion (pid {first.pid} on " in line
            assert "this run changed nothing" in line
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert first.returncode == 0, err
    assert cli("verify", str(out)).returncode == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("shard.")) == ["index.json", "slwdata.json"]
