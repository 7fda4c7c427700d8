"""Counting statistics: Poisson noise, binomial thinning (exact lower dose) and count scaling."""

from spectdl.noise.counts import expected_counts
from spectdl.noise.poisson import poisson, scale_to_counts
from spectdl.noise.thinning import split_gates, thin

__all__ = ["expected_counts", "poisson", "scale_to_counts", "split_gates", "thin"]
