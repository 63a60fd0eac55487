"""The SLW streaming dataset: fast batch reads over MDS shards and re-served truncated tails.

``__all__`` is what a user needs: the dataset, its loader, its epoch account and the errors to
catch. The other names below stay importable from here for code written against earlier
releases; everything else is importable from its own module (see ``docs/DESIGN.md``).

Example::

    from slwdata.dataset import SLWDataset, make_dataloader
    ds = SLWDataset(local='shards/', batch_size=8)
    loader = make_dataloader(ds, num_workers=2)
"""

from slwdata.dataset.accounting import EpochAccount
from slwdata.dataset.dataset import REUSE_POLICIES, ResumeMismatchError, SLWDataset  # noqa: F401
from slwdata.dataset.integrity import ShardHashError
from slwdata.dataset.ledger import SEGMENT_DTYPE, TailLedger  # noqa: F401
from slwdata.dataset.plan import BatchPlan, plan_epoch  # noqa: F401
from slwdata.dataset.reader import ShardFormatError, ShardTokenReader  # noqa: F401
from slwdata.dataset.remote import RemoteTimeoutError
from slwdata.dataset.transport import (  # noqa: F401
    TRANSFER_MODES,
    BatchAddress,
    SLWDataLoader,
    SLWStreamingDataLoader,
    make_dataloader,
)

# The per-rank account's name before the planner's and the dataset's accounts became one type.
RankEpochAccount = EpochAccount

__all__ = [
    'SLWDataset',
    'make_dataloader',
    'EpochAccount',
    'ResumeMismatchError',
    'ShardFormatError',
    'ShardHashError',
    'RemoteTimeoutError',
]
