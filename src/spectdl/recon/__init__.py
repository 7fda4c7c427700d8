"""Reconstruction: ML-EM/OSEM on one template, filtered back-projection, post-filters, and
partial-volume correction by the iterative Yang method (:mod:`spectdl.recon.pvc`)."""

from spectdl.recon.fbp import fbp
from spectdl.recon.filters import butterworth_filter, gaussian_filter
from spectdl.recon.oracle import OsemIterates, osem_iterates
from spectdl.recon.osem import mlem, osem, poisson_nll, subsets
from spectdl.recon.pvc import iterative_yang, template_means

__all__ = ["OsemIterates", "butterworth_filter", "fbp", "gaussian_filter", "iterative_yang", "mlem", "osem",
           "osem_iterates", "poisson_nll", "subsets", "template_means"]
