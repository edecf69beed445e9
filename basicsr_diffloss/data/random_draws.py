"""The random draws of the on-the-fly datasets: seeded numpy generators and the flips and rotations they pick."""
import numpy as np
from torch.utils import data


class ItemGenerators:
    """A ``numpy.random.Generator`` for each item read, from the dataset option ``seed``.

    With a seed, item i outside the train phase gets a generator seeded by ``[seed, i]``, the same in every epoch
    and run; in the train phase each reading process keeps one generator seeded by ``[seed, worker seed]``, so the
    train stream is reproducible for a given ``manual_seed`` and worker count. Without one (None), each item's
    generator is seeded from numpy's global stream, which BasicSR seeds from ``manual_seed`` (and per data worker)
    and exact resume restores: runs repeat under the same ``manual_seed``.
    """

    def __init__(self, seed, train):
        self.seed, self.train = seed, train
        self._train_rng = None  # (worker seed, generator), made in the process that reads

    def __call__(self, index):
        if self.seed is None:
            return np.random.default_rng(np.random.randint(2**63, dtype=np.int64))
        if not self.train:
            return np.random.default_rng([self.seed, index])
        worker = data.get_worker_info()
        worker_seed = worker.seed if worker is not None else 0  # torch draws a new one per epoch and worker
        if self._train_rng is None or self._train_rng[0] != worker_seed:
            self._train_rng = (worker_seed, np.random.default_rng([self.seed, worker_seed % 2**63]))
        return self._train_rng[1]


def random_augment(image, rng, hflip, rotation):
    """A random horizontal flip and one of the 90-degree rotations / flips of a square crop, drawn from ``rng``."""
    if hflip and rng.random() < 0.5:
        image = image[:, ::-1]
    if rotation:
        if rng.random() < 0.5:
            image = image[::-1]
        if rng.random() < 0.5:
            image = image.transpose(1, 0, 2)
    return np.ascontiguousarray(image)
