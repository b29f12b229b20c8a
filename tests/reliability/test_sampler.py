"""EpochSampler / ResumableLoader: DistributedSampler semantics, a permutation per (seed, epoch), a position
that resumes, and per-sample seeds that do not depend on the worker that loads the sample."""
import pytest
import torch
from torch.utils.data import Dataset

from wsss.data.sampler import EpochSampler, ResumableLoader
from wsss.reliability.rng import TorchSeededTransform


class Numbers(Dataset):
    """Item i is (i, a random number drawn by the transform machinery's seed)."""

    def __init__(self, n):
        self.n = n
        self.draw = TorchSeededTransform(type("T", (), {"set_random_state": lambda s, np_rng, py_rng: setattr(
            s, "rng", np_rng), "__call__": lambda s, **d: {"x": float(s.rng.random())}})())

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([float(i), self.draw()["x"]])


def test_ranks_shard_one_permutation_like_distributed_sampler():
    ds = list(range(10))
    shards = [list(EpochSampler(ds, seed=3, num_replicas=3, rank=r, epoch=2)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded to 12, as DistributedSampler does
    order = EpochSampler(ds, seed=3, num_replicas=3, rank=0, epoch=2).order()
    assert sorted(set(order)) == list(range(10)) and order[10:] == order[:2]
    for r, shard in enumerate(shards):
        assert [i for i, _ in shard] == order[r::3]
    seeds = [s for shard in shards for _, s in shard]
    assert len(set(seeds)) == 12  # one seed per position, also for the padded repeats


def test_permutation_depends_on_seed_and_epoch_only():
    ds = list(range(50))
    a = [i for i, _ in EpochSampler(ds, seed=0, epoch=1)]
    assert a == [i for i, _ in EpochSampler(ds, seed=0, epoch=1)]
    assert a != [i for i, _ in EpochSampler(ds, seed=0, epoch=2)]
    assert a != [i for i, _ in EpochSampler(ds, seed=1, epoch=1)]
    s = EpochSampler(ds, seed=0)
    s.set_epoch(1)
    torch.manual_seed(123)  # the global generator plays no part
    assert [i for i, _ in s] == a


def test_resume_at_continues_the_same_epoch_once():
    ds = list(range(20))
    full = list(EpochSampler(ds, seed=0, epoch=4))
    s = EpochSampler(ds, seed=0)
    s.resume_at(4, 7)
    s.set_epoch(4)  # Lightning calls this for the resumed epoch too: the position is kept
    assert list(s) == full[7:]
    assert list(s) == full  # a resume point is used once
    with pytest.raises(ValueError, match="cannot resume epoch 4 at sample 21"):
        s.resume_at(4, 21)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_state_resumes_mid_epoch_with_identical_batches(workers):
    def loader():
        return ResumableLoader(Numbers(24), EpochSampler(list(range(24)), seed=5, epoch=1), batch_size=4,
                               num_workers=workers)

    reference = [b for b in ResumableLoader(Numbers(24), EpochSampler(list(range(24)), seed=5, epoch=1),
                                            batch_size=4)]  # no workers
    first = loader()
    it = iter(first)
    seen = [next(it), next(it)]
    state = first.state_dict()
    assert state["epoch"] == 1 and state["consumed"] == 8
    again = loader()
    again.load_state_dict(state)
    rest = list(again)
    assert len(rest) == 4
    for got, want in zip(seen + rest, reference):
        assert torch.equal(got, want)  # the same images and the same augmentation draws


def test_loader_refuses_a_state_of_other_settings():
    loader = ResumableLoader(Numbers(24), EpochSampler(list(range(24)), seed=5), batch_size=4)
    state = {**loader.state_dict(), "seed": 6, "batch_size": 8}
    with pytest.raises(ValueError, match=r"seed 6 -> 5, .*batch_size 8 -> 4"):
        loader.load_state_dict(state)
