"""Reconstruction: ML-EM/OSEM on one template, filtered back-projection, post-filters."""

from spectdl.recon.fbp import fbp
from spectdl.recon.filters import butterworth_filter, gaussian_filter
from spectdl.recon.oracle import OsemIterates, osem_iterates
from spectdl.recon.osem import mlem, osem, poisson_nll, subsets

__all__ = ["OsemIterates", "butterworth_filter", "fbp", "gaussian_filter", "mlem", "osem", "osem_iterates", "poisson_nll",
           "subsets"]
