"""SequenceLengthWarmup in a real Composer Trainer (CPU, tiny models)."""

from __future__ import annotations

import importlib.metadata
import warnings

import pytest
import torch

pytest.importorskip("composer")

from composer import Trainer  # noqa: E402
from composer.loggers import InMemoryLogger  # noqa: E402
from composer.optim import LinearScheduler  # noqa: E402

from slwdata.composer import SequenceLengthWarmup, SLWMismatchError, registry  # noqa: E402
from slwdata.pacing import PacingSchedule  # noqa: E402

from helpers_composer import FULL, ROWS, PlanningRows, Recorder, TinyLM, loader, logged  # noqa: E402


def fit(model=None, dl=None, max_duration="12ba", lr=0.5, schedulers=None, microbatch=None, **slw_kwargs):
    torch.manual_seed(0)
    model = model or TinyLM()
    slw = SequenceLengthWarmup(**slw_kwargs)
    rec, mem = Recorder(), InMemoryLogger()
    trainer = Trainer(
        model=model,
        train_dataloader=dl if dl is not None else loader(seq_len=FULL, batch_size=ROWS),
        max_duration=max_duration,
        algorithms=[slw],
        callbacks=[rec],
        loggers=[mem],
        optimizers=torch.optim.SGD(model.parameters(), lr=lr),
        schedulers=schedulers or [],
        device="cpu",
        progress_bar=False,
        seed=0,
        device_train_microbatch_size=microbatch,
    )
    trainer.fit()
    return trainer, slw, rec, mem


def test_token_duration_token_stop_and_token_wise_lr():
    """Trained tokens (after truncation) drive the pacing, the stop and the LR schedule."""
    sched = LinearScheduler(alpha_i=1.0, alpha_f=0.0, t_max="6000tok")
    trainer, slw, rec, mem = fit(max_duration="6000tok", duration="2000tok", schedulers=[sched], lr=1.0)
    plan = PacingSchedule(start=8, end=FULL, duration="2000tok").plan(len(rec.lengths), ROWS)
    assert rec.lengths == plan  # what the model was trained on, step by step
    assert rec.lengths[0] == 8 and rec.lengths[-1] == FULL
    trained = [sum(plan[: i + 1]) * ROWS for i in range(len(plan))]
    assert rec.tokens_after == trained  # Composer's timestamp counts trained tokens
    # Stops within one batch of max_duration.
    assert trained[-1] >= 6000 > trained[-2]
    assert int(trainer.state.timestamp.token) == trained[-1]
    # Composer evaluates the LR schedule at scheduler.step(), before the timestamp of the step
    # that just ran is updated, so step i runs with f(trained tokens before step i-1).
    expected_lr = [1.0] + [1.0 - min((trained[i - 2] if i >= 2 else 0) / 6000, 1.0) for i in range(1, len(plan))]
    assert rec.lrs == pytest.approx(expected_lr)
    # Logged metrics.
    assert logged(mem, "slw/seq_len") == plan
    assert logged(mem, "slw/trained_tokens") == trained
    dropped = [sum(FULL - n for n in plan[: i + 1]) * ROWS for i in range(len(plan))]
    assert logged(mem, "slw/dropped_tokens") == dropped and slw.dropped_tokens == dropped[-1]
    assert "slw/reserved_tokens" not in mem.data


def test_non_hf_model_preallocates_at_full_length_first():
    model = TinyLM()
    _, _, rec, _ = fit(model=model, max_duration="5ba", duration="10ba")
    assert model.seen[0] == FULL  # the memory pre-activation pass
    assert model.seen[1:] == rec.lengths == PacingSchedule(end=FULL, duration="10ba").plan(5, ROWS)


def test_preallocation_does_not_change_the_first_step():
    def one_step(preallocate):
        torch.manual_seed(123)
        model = TinyLM(dropout=0.5)  # dropout: the pre-activation pass must not consume the RNG
        trainer, *_ = fit(model=model, max_duration="1ba", duration="10ba", preallocate=preallocate)
        return [p.detach().clone() for p in model.parameters()], trainer.state.timestamp, model.seen

    with_pre, ts_a, seen_a = one_step(True)
    without, ts_b, seen_b = one_step(False)
    assert seen_a == [FULL, 8] and seen_b == [8]
    assert all(torch.equal(a, b) for a, b in zip(with_pre, without))
    assert (int(ts_a.batch), int(ts_a.sample), int(ts_a.token)) == (int(ts_b.batch), int(ts_b.sample), int(ts_b.token))


def test_preallocation_with_microbatches():
    torch.manual_seed(5)
    model = TinyLM()
    trainer, _, rec, _ = fit(model=model, max_duration="2ba", duration="10ba", microbatch=2)
    assert model.seen == [FULL, 8, 8, 8, 8]  # one pre-activation microbatch, then 2 microbatches a step
    assert int(trainer.state.timestamp.token) == (8 + 8) * ROWS


def test_tuple_batches_with_sample_duration():
    dl = loader(seq_len=FULL, batch_size=ROWS, style="tuple")
    _, slw, rec, mem = fit(dl=dl, max_duration="40sp", duration="20sp")
    assert rec.lengths == PacingSchedule(end=FULL, duration="20sp").plan(10, ROWS)
    assert logged(mem, "slw/seq_len") == rec.lengths


def test_tuple_batches_refuse_token_durations_composer_cannot_count():
    dl = loader(seq_len=FULL, batch_size=ROWS, style="tuple")
    with pytest.raises(ValueError, match="counted 0 tokens"):
        fit(dl=dl, max_duration="4ba", duration="1000tok")


@pytest.mark.parametrize(
    "max_duration,total", [("3ba", "3ba"), ("1ba", "1ba"), ("2ep", "32ba"), ("40sp", "40sp"), ("700tok", "700tok")]
)
def test_short_runs_and_every_max_duration_unit(max_duration, total):
    """Composer's SeqLengthWarmup dies on these (ZeroDivisionError / NotImplementedError)."""
    trainer, _, rec, _ = fit(max_duration=max_duration, duration="0.3dur")
    sched = PacingSchedule(end=FULL, duration="0.3dur")
    assert rec.lengths == sched.plan(len(rec.lengths), ROWS, total=total)
    assert rec.lengths[0] == 8 and (len(rec.lengths) < 2 or rec.lengths[-1] == FULL)
    assert trainer.state.timestamp >= trainer.state.max_duration


def test_hf_gpt2_model():
    transformers = pytest.importorskip("transformers")
    from composer.models import HuggingFaceModel

    config = transformers.GPT2Config(vocab_size=64, n_positions=FULL, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = HuggingFaceModel(transformers.GPT2LMHeadModel(config), use_logits=True)
    trainer, _, rec, mem = fit(model=model, max_duration="6ba", duration="4ba")
    assert rec.lengths == [8, 16, 32, 48, 64, 64]
    assert int(trainer.state.timestamp.token) == sum(rec.lengths) * ROWS
    assert torch.isfinite(torch.tensor(trainer.state.total_loss_dict["loss/train/total"]))


def test_end_can_be_smaller_than_rows_and_truncate_false_keeps_full_length():
    _, _, rec, _ = fit(max_duration="4ba", duration="2ba", end=32)
    assert rec.lengths == [8, 16, 32, 32]
    _, slw, rec, mem = fit(max_duration="3ba", duration="2ba", truncate=False)
    assert rec.lengths == [FULL] * 3 and logged(mem, "slw/seq_len") == [FULL] * 3 and slw.dropped_tokens == 0


def test_dataset_cooperation_bind_check_and_reserved_tokens():
    ds = PlanningRows()
    dl = torch.utils.data.DataLoader(ds, batch_size=ROWS)
    _, slw, rec, mem = fit(dl=dl, max_duration="10ba", duration="0.5dur")
    schedule, rows_per_step, run_total = ds.bound
    assert schedule.end == FULL and rows_per_step == ROWS and run_total == "10ba"
    assert rec.lengths == ds.lengths[:10]
    # 1 re-served row on odd steps, trained at that step's length.
    reserved = [sum(n for j, n in enumerate(rec.lengths[: i + 1]) if j % 2) for i in range(10)]
    assert logged(mem, "slw/reserved_tokens") == reserved
    assert slw.reserved_tokens == reserved[-1]


def test_dataset_disagreeing_with_the_trainer_is_a_clear_error():
    ds = PlanningRows(wrong_by=8)
    dl = torch.utils.data.DataLoader(ds, batch_size=ROWS)
    with pytest.raises(SLWMismatchError, match="dataset planned length"):
        fit(dl=dl, max_duration="4ba", duration="4ba")


def test_registry_config_and_llmfoundry_entry_point():
    algo = SequenceLengthWarmup.from_config({"start": 8, "duration": "0.3dur"})
    assert algo.schedule == PacingSchedule(start=8, duration="0.3dur")
    assert registry["slw"] is SequenceLengthWarmup
    algo = SequenceLengthWarmup(schedule={"kind": "stages", "end": 1024, "stages": [[0, 128], [500, 1024]]})
    assert algo.schedule.seq_len(step=499) == 128
    eps = [ep for ep in importlib.metadata.entry_points(group="llmfoundry_algorithms") if ep.name == "slw"]
    assert eps, "the llmfoundry_algorithms entry point 'slw' is not installed (pip install -e .)"
    assert eps[0].load() is SequenceLengthWarmup


def test_bad_config_errors():
    with pytest.raises(ValueError, match="epochs are not supported"):
        SequenceLengthWarmup(duration="2ep")
    with pytest.raises(ValueError, match="must not exceed end"):
        SequenceLengthWarmup(start=128, end=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TypeError, match="PacingSchedule"):
            SequenceLengthWarmup(schedule=42)


def test_yaml_config_builds_the_algorithm():
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load("algorithms:\n  slw: {start: 8, duration: 0.3dur}\n")["algorithms"]
    algos = [registry[name](**kwargs) for name, kwargs in cfg.items()]
    assert algos[0].schedule == PacingSchedule(start=8, duration="0.3dur")
    # YAML reads a bare 0.3 as a float: a fraction of the run, like Composer's duration=0.3.
    algo = registry["slw"](**yaml.safe_load("{duration: 0.3, end: 1024}"))
    assert algo.schedule.seq_len(step=150, total="1000ba") == 512


def test_paced_loader_sets_the_distributed_sampler_epoch():
    """The trainer only calls set_epoch on real DataLoaders; the wrapper must do it itself."""
    from types import SimpleNamespace

    from composer.core import Timestamp
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from slwdata.composer import PacedDataLoader

    ds = list(range(16))
    sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=3)
    dl = DataLoader([{"input_ids": torch.full((8,), i)} for i in ds], batch_size=16, sampler=sampler)
    state = SimpleNamespace(timestamp=Timestamp(), dataset_resumption={})
    slw = SequenceLengthWarmup(end=8, duration="1ba", preallocate=False)
    wrapped = PacedDataLoader(dl, slw, state)
    orders = []
    for epoch in range(2):
        state.timestamp = Timestamp(epoch=epoch)
        orders.append(next(iter(wrapped))["input_ids"][:, 0].tolist())
        reference = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=3)
        reference.set_epoch(epoch)
        assert orders[-1] == list(reference)
    assert orders[0] != orders[1]
    assert len(wrapped) == 1 and wrapped.dataset is dl.dataset and wrapped.sampler is sampler


def test_preallocation_auto_microbatching_halves_on_oom():
    """'auto' needs a GPU in Composer; drive the OOM search directly with a model that 'runs out
    of memory' above 2 full-length rows."""
    from types import SimpleNamespace

    from composer.devices import DeviceCPU

    class OOMAbove2(TinyLM):
        def forward(self, batch):
            if batch["input_ids"].shape[0] > 2 and batch["input_ids"].shape[1] == FULL:
                raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB (simulated)")
            return super().forward(batch)

    model = OOMAbove2()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = SimpleNamespace(
        model=model,
        optimizers=[opt],
        device=DeviceCPU(),
        precision="fp32",
        precision_config=None,
        auto_microbatching=True,
        device_train_microbatch_size=8,
        scaler=None,
    )
    slw = SequenceLengthWarmup(end=FULL, duration="10ba")
    slw._original_model = model
    slw._full_batch = {"input_ids": torch.zeros(8, FULL, dtype=torch.long), "slw_tail_rows": torch.zeros(8)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Composer warns on each halving
        slw._preallocate(state)
    assert state.device_train_microbatch_size == 2 and slw._preallocated
    assert model.seen == [FULL]  # only the successful pass reached the embedding
    assert all(p.grad is None for p in model.parameters())


def test_missing_composer_is_a_clear_error():
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] == 'composer':
                    raise ModuleNotFoundError(name, name=name)
        sys.meta_path.insert(0, Block())
        try:
            import slwdata.composer
        except ModuleNotFoundError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'slwdata[composer]'" in out.stdout, out.stderr


def test_variable_length_batches_with_inferred_end_are_a_clear_error():
    """end=None reads the first batch's length; a later longer batch must not be cut silently."""
    from torch.utils.data import DataLoader

    batches = [{"input_ids": torch.randint(0, 64, (ROWS, n))} for n in (32, 32, 64)]
    dl = DataLoader(batches, batch_size=None)
    with pytest.raises(ValueError, match=r"length 64, longer than the end length 32.*pass end="):
        fit(dl=dl, max_duration="3ba", duration="100ba", preallocate=False, microbatch=ROWS)


def _counting_loader(count):
    from composer.core import DataSpec

    return DataSpec(loader(seq_len=FULL, batch_size=ROWS), get_num_tokens_in_batch=count)


@pytest.mark.parametrize(
    "max_duration,duration,count,why",
    [
        ("2000tok", "10ba", lambda b: ROWS * FULL, r"max_duration \(2000tok\) is in tokens"),
        ("2000tok", "10ba", lambda b: 0, r"max_duration \(2000tok\) is in tokens"),  # else: never stops
        ("4ba", "500tok", lambda b: ROWS * FULL, r"duration \(500tok"),
        ("4ba", "500tok", lambda b: 0, r"duration \(500tok"),
    ],
)
def test_wrong_token_counter_is_an_error_when_tokens_matter(max_duration, duration, count, why):
    """A counter reporting full-length (untruncated) tokens or 0 would pace or stop on a wrong clock."""
    with pytest.raises(ValueError, match=r"Composer counted (256|0) tokens for a batch of 32 trained.*" + why):
        fit(dl=_counting_loader(count), max_duration=max_duration, duration=duration, preallocate=False)


def test_wrong_token_counter_only_warns_when_nothing_uses_tokens():
    with pytest.warns(UserWarning, match="counted 256 tokens for a batch of 32 trained"):
        _, _, rec, _ = fit(dl=_counting_loader(lambda b: ROWS * FULL), max_duration="3ba", duration="10ba")
    assert rec.lengths == PacingSchedule(end=FULL, duration="10ba").plan(3, ROWS)


def test_unknown_option_lists_the_allowed_keys():
    for build in (SequenceLengthWarmup.from_config, lambda cfg: registry["slw"](**cfg)):
        with pytest.raises(
            ValueError, match=r"unknown SequenceLengthWarmup option\(s\) \['strat'\]; allowed: .*'start'"
        ):
            build({"strat": 8, "duration": "0.3dur"})


def test_method_card_documents_every_option():
    import inspect
    from pathlib import Path

    card = (Path(__file__).resolve().parents[1] / "docs" / "method_card.md").read_text()
    params = [
        p for p in inspect.signature(SequenceLengthWarmup).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    missing = [p.name for p in params if f"| `{p.name}`" not in card]
    assert not missing, f"docs/method_card.md parameter table lacks {missing}"
    for fact in ("int is steps", "fixed-length", "one step behind"):
        assert fact.lower() in card.lower(), fact


def test_schedule_with_other_pacing_options_is_an_error_not_ignored():
    with pytest.raises(ValueError, match=r"schedule= replaces the pacing options.*\['duration', 'start'\]"):
        SequenceLengthWarmup(schedule=PacingSchedule(end=64, duration="10ba"), start=16, duration="5ba")
    assert SequenceLengthWarmup(schedule={"end": 64, "duration": "10ba"}, truncate=False).schedule.end == 64
