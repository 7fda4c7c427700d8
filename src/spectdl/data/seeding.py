"""Seeds derived from seeds: the one mixing function of spectdl, for simulations and training alike.

A simulation manifest records the seeds of every phantom and noise draw as ``mix_seed(seed, ...)``
and regenerates a sample from them, so this function must never change: its output for given
integers is fixed bit for bit (``numpy.random.SeedSequence``, the top 61 bits of its first 64-bit
word). Training's epoch order and worker seeds use it too, so that there is one way to turn
``(seed, epoch, ...)`` into a generator.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SEED_BITS", "generator_for", "mix_seed"]

SEED_BITS = 61


def mix_seed(*values: int) -> int:
    """A seed in ``[0, 2**61)`` from several integers, well mixed (``numpy.random.SeedSequence``).

    Nearby inputs (sample 7 and sample 8, seed 0 and seed 1) give unrelated seeds, so two datasets
    made with neighbouring seeds do not share samples, and epoch 3 of a run does not replay epoch 2.
    """
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(64 - SEED_BITS))


def generator_for(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed))
