"""Minibatch samplers: which images each minibatch of an epoch holds.

A sampler is a function `batches(epoch, rng) -> list of index arrays`;
`train.train_vae(batches=...)` calls it once per epoch with a generator seeded by (seed, epoch)
(`epoch_batches`), so a resumed run sees the same minibatches as an uninterrupted one.
`shuffled_batches` is the default (Keras `fit` with shuffling); `mixed_batches` is the paper's
Section 4 rule for overlay training.
"""

from __future__ import annotations

import numpy as np


def shuffled_batches(n_images: int, batch_size: int):
    """Default minibatches: a permutation of all images cut into batches (the last may be
    smaller)."""

    def batches(epoch: int, rng: np.random.Generator):
        order = rng.permutation(n_images)
        return [order[start : start + batch_size] for start in range(0, n_images, batch_size)]

    batches.__qualname__ = f"shuffled_batches({n_images}, {batch_size})"
    return batches


def mixed_batches(n_sources: int, copies: int, batch_size: int):
    """Batch sampler for `copies` copies of each of `n_sources` images, grouped by source (the
    paper's Section 4: "every minibatch holding samples of the images to combine").

    Guarantee: every batch holds at least one copy of every source, every copy appears exactly once
    per epoch, no batch is larger than `batch_size`, and the batches depend only on `rng`. There are
    ceil(n / batch_size) batches whose sizes differ by at most one. Each batch first gets one copy
    of every source; the remaining copies are shuffled together and dealt into the free places.
    """
    if n_sources < 1 or copies < 1:
        raise ValueError(f"need n_sources >= 1 and copies >= 1, got {n_sources} and {copies}")
    if batch_size < n_sources:
        raise ValueError(
            f"a batch of {batch_size} cannot hold all {n_sources} sources: use "
            f"BATCH_SIZE >= {n_sources}."
        )
    total = n_sources * copies
    n_batches = -(-total // batch_size)  # <= copies because batch_size >= n_sources
    sizes = np.full(n_batches, total // n_batches)
    sizes[: total % n_batches] += 1

    def batches(epoch: int, rng: np.random.Generator):
        per_source = [source * copies + rng.permutation(copies) for source in range(n_sources)]
        firsts = np.stack([order[:n_batches] for order in per_source], axis=1)  # (n_batches, k)
        rest = rng.permutation(np.concatenate([order[n_batches:] for order in per_source]))
        ends = np.cumsum(sizes - n_sources)
        starts = ends - (sizes - n_sources)
        result = [
            rng.permutation(np.concatenate([firsts[b], rest[starts[b] : ends[b]]]))
            for b in range(n_batches)
        ]
        return [result[b] for b in rng.permutation(n_batches)]

    batches.__qualname__ = f"mixed_batches({n_sources}, {copies}, {batch_size})"
    return batches


def epoch_batches(batches, epoch: int, seed: int, n_images: int) -> list[np.ndarray]:
    """The checked index batches of one epoch; they depend only on (seed, epoch), so a resumed run
    sees the same batches as an uninterrupted one."""
    result = []
    for number, batch in enumerate(batches(epoch, np.random.default_rng([seed, epoch])), start=1):
        batch = np.asarray(batch)
        if batch.ndim != 1 or batch.size == 0 or not np.issubdtype(batch.dtype, np.integer):
            raise ValueError(
                f"batches({epoch}, rng) gave batch {number} as {batch.dtype} {batch.shape}: "
                "expected a non-empty 1-D array of image indices."
            )
        if batch.min() < 0 or batch.max() >= n_images:
            raise ValueError(
                f"batches({epoch}, rng) gave batch {number} with an index outside [0, {n_images})."
            )
        result.append(batch.astype(np.int32))
    if not result:
        raise ValueError(f"batches({epoch}, rng) gave no batch.")
    return result
