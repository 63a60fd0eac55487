"""The SLW streaming dataset: fast batch reads over MDS shards and re-served truncated tails.

Example::

    from slwdata.dataset import SLWDataset, make_dataloader
    ds = SLWDataset(local='shards/', batch_size=8)
    loader = make_dataloader(ds, num_workers=2)
"""

from slwdata.dataset.dataset import REUSE_POLICIES, RankEpochAccount, ResumeMismatchError, SLWDataset
from slwdata.dataset.integrity import ShardHashError
from slwdata.dataset.ledger import SEGMENT_DTYPE, TailLedger
from slwdata.dataset.plan import BatchPlan, plan_epoch
from slwdata.dataset.reader import ShardFormatError, ShardTokenReader
from slwdata.dataset.transport import (TRANSFER_MODES, BatchAddress, SLWDataLoader,
                                       SLWStreamingDataLoader, make_dataloader)

__all__ = [
    'SLWDataset', 'make_dataloader', 'SLWDataLoader', 'SLWStreamingDataLoader', 'BatchAddress',
    'TRANSFER_MODES', 'RankEpochAccount', 'REUSE_POLICIES', 'ResumeMismatchError',
    'ShardTokenReader', 'ShardFormatError', 'ShardHashError', 'TailLedger', 'SEGMENT_DTYPE', 'BatchPlan',
    'plan_epoch'
]
