"""Counting statistics: Poisson noise, binomial thinning (exact lower dose), count scaling, and
repeat acquisitions with their own decay, kinetics, motion and noise (:mod:`spectdl.noise.scans`)."""

from spectdl.noise.counts import expected_counts
from spectdl.noise.poisson import poisson, scale_to_counts
from spectdl.noise.scans import ScanKinetics, decay_factor, random_motion, repeat_scan, warp
from spectdl.noise.thinning import split_gates, thin

__all__ = ["ScanKinetics", "decay_factor", "expected_counts", "poisson", "random_motion", "repeat_scan",
           "scale_to_counts", "split_gates", "thin", "warp"]
