"""StabilityMonitor: loss ratio and Adam variance statistics."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("composer")

from composer import Trainer  # noqa: E402
from composer.loggers import InMemoryLogger  # noqa: E402
from composer.models import ComposerModel  # noqa: E402
from composer.optim import DecoupledAdamW  # noqa: E402

from slwdata.composer import StabilityMonitor, adam_variance_stats, loss_ratio_stats  # noqa: E402

from helpers_composer import loader, logged  # noqa: E402


def test_loss_ratio_stats_known_sequence():
    # ratios: 3/4, 3.9/3=1.3, 2.5/3, 2.6/2.5=1.04, 3.5/2.5=1.4, 2.0/2.5
    stats = loss_ratio_stats([4.0, 3.0, 3.9, 2.5, 2.6, 3.5, 2.0])
    assert stats == {"steps": 7, "max_ratio": 1.4, "steps_above_threshold": 2, "threshold": 1.2}
    assert loss_ratio_stats([4.0, 3.0, 3.9, 2.5, 2.6, 3.5, 2.0], threshold=1.35)["steps_above_threshold"] == 1
    assert loss_ratio_stats([]) == {"steps": 0, "max_ratio": None, "steps_above_threshold": 0, "threshold": 1.2}
    assert loss_ratio_stats([5.0])["max_ratio"] is None
    nan = loss_ratio_stats([2.0, float("nan"), 2.2])
    assert nan["max_ratio"] == math.inf and nan["steps_above_threshold"] == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.Adam(p, lr=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.1),
        lambda p: DecoupledAdamW(p, lr=0.1),
    ],
)
def test_adam_variance_stats_from_hand_set_state(make):
    a, b = torch.nn.Parameter(torch.zeros(2, 3)), torch.nn.Parameter(torch.zeros(4))
    opt = make([a, b])
    assert adam_variance_stats(opt) is None  # no state before the first step
    (a.sum() + b.sum()).backward()
    opt.step()
    opt.state[a]["exp_avg_sq"].copy_(torch.tensor([[1.0, 4.0, 0.25], [0.0, 9.0, 1.0]]))
    opt.state[b]["exp_avg_sq"].copy_(torch.tensor([16.0, 0.0, 2.0, 1.0]))
    stats = adam_variance_stats(opt)
    # Both statistics are on sqrt(exp_avg_sq) (the paper): l1 = sum of the roots, max = largest root.
    sqrt_a, sqrt_b = 1 + 2 + 0.5 + 0 + 3 + 1, 4 + 0 + math.sqrt(2) + 1
    assert stats["var_l1"] == pytest.approx(sqrt_a + sqrt_b)
    assert stats["var_sqrt_max"] == pytest.approx(4.0)
    mon = StabilityMonitor()
    mon.observe_optimizers([opt])
    opt.state[b]["exp_avg_sq"].zero_()
    mon.observe_optimizers([opt])
    summary = mon.summary()
    assert summary["adam_var_sqrt_max_max"] == pytest.approx(4.0) and summary[
        "adam_var_sqrt_max_last"
    ] == pytest.approx(3.0)
    assert summary["adam_var_l1_max"] == pytest.approx(sqrt_a + sqrt_b) and summary[
        "adam_var_l1_last"
    ] == pytest.approx(sqrt_a)


def test_monitor_keeps_running_statistics_not_every_loss():
    losses = [4.0, 3.0, 3.9, 2.5, 2.6, 3.5, 2.0]
    mon = StabilityMonitor()
    for x in losses[:4]:
        mon.observe_loss(x)
    sd = mon.state_dict()
    assert "losses" not in sd and not hasattr(mon, "losses")  # memory does not grow with the run
    resumed = StabilityMonitor()
    resumed.load_state_dict(sd)
    for x in losses[4:]:
        resumed.observe_loss(x)
    expected = loss_ratio_stats(losses)
    summary = resumed.summary()
    assert (summary["steps"], summary["max_loss_ratio"], summary["steps_above_threshold"]) == (
        expected["steps"],
        expected["max_ratio"],
        expected["steps_above_threshold"],
    )
    old = StabilityMonitor()  # a checkpoint from before: the losses list still loads
    old.load_state_dict({"losses": losses[:4], "max_ratio": 1.3, "steps_above": 1})
    assert old.observe_loss(3.5) == pytest.approx(1.4) and old.summary()["steps"] == 5


SCRIPT = [4.0, 3.0, 3.9, 2.5, 2.6, 3.5, 2.0, 2.1]


class ScriptedLoss(ComposerModel):
    """Reports losses from a script, so the monitor's counts are known in advance."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.i = 0

    def forward(self, batch):
        return self.w.sum()

    def loss(self, outputs, batch, *args, **kwargs):
        value = SCRIPT[self.i]
        self.i += 1
        return outputs * 0 + value + (outputs - outputs.detach())  # value, with a gradient of 1


def test_monitor_in_a_trainer():
    model = ScriptedLoss()
    mon, mem = StabilityMonitor(threshold=1.2, interval=2), InMemoryLogger()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    Trainer(
        model=model,
        train_dataloader=loader(n=64, batch_size=4),
        max_duration=f"{len(SCRIPT)}ba",
        optimizers=opt,
        callbacks=[mon],
        loggers=[mem],
        device="cpu",
        progress_bar=False,
    ).fit()
    expected = loss_ratio_stats(SCRIPT)
    summary = mon.summary()
    assert summary["steps"] == len(SCRIPT)
    assert summary["steps_above_threshold"] == expected["steps_above_threshold"] == 2
    assert summary["max_loss_ratio"] == pytest.approx(1.4)
    assert logged(mem, "stability/loss_ratio") == pytest.approx(
        [b / min(SCRIPT[: i + 1]) for i, b in enumerate(SCRIPT[1:])]
    )
    # Adam statistics logged at steps 2, 4, 6, 8; the last equals the optimizer's final state.
    assert len(logged(mem, "stability/adam_var_l1")) == 4
    final = adam_variance_stats(opt)
    assert logged(mem, "stability/adam_var_l1")[-1] == pytest.approx(final["var_l1"])
    assert logged(mem, "stability/summary/steps_above_threshold") == [2]
