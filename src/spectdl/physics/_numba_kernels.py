"""The numba kernels of :mod:`spectdl.physics._compiled` (imported only where numba is installed).

The loops index 1-D views with plain loop counters: numba wraps negative indices, and an index like
``i − nc`` with a run-time ``nc`` kept LLVM from vectorising them (measured 10× slower).
"""

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@_jit
def rotate(indptr, indices, data, src, dst, src2, dst2):
    # dst[p, :] = Σ_k data[k] · src[indices[k], :] over the CSR row p (src, dst [n², C]), and the
    # same for src2, dst2 [n², C2] in the same pass over the matrix (C2 may be 0).
    nc = dst.shape[1]
    nc2 = dst2.shape[1]
    for p in range(dst.shape[0]):
        d = dst[p]
        d2 = dst2[p]
        for c in range(nc):
            d[c] = 0.0
        for c in range(nc2):
            d2[c] = 0.0
        for k in range(indptr[p], indptr[p + 1]):
            w = data[k]
            sr = src[indices[k]]
            for c in range(nc):
                d[c] += w * sr[c]
            sr2 = src2[indices[k]]
            for c in range(nc2):
                d2[c] += w * sr2[c]


@_jit
def blur_step(src, dst, lit, k0, k1, r0, r1, r2, nc, ns, first):
    # dst = [k1, k0, k1] ∗ src + [r2, r1, r0, r1, r2] ∗ lit along the radial axis (rows of nc);
    # src, dst hold ns rows between one zero row each side, lit ns rows between two each side.
    n = ns * nc
    sm = src[0:n]
    s0 = src[nc : nc + n]
    sp = src[2 * nc : 2 * nc + n]
    lm2 = lit[0:n]
    lm1 = lit[nc : nc + n]
    l0 = lit[2 * nc : 2 * nc + n]
    lp1 = lit[3 * nc : 3 * nc + n]
    lp2 = lit[4 * nc : 4 * nc + n]
    d = dst[nc : nc + n]
    if first:
        for k in range(n):
            d[k] = r0 * l0[k] + r1 * lm1[k] + r1 * lp1[k] + r2 * lm2[k] + r2 * lp2[k]
    else:
        for k in range(n):
            d[k] = (k0 * s0[k] + k1 * sm[k] + k1 * sp[k]
                    + (r0 * l0[k] + r1 * lm1[k] + r1 * lp1[k] + r2 * lm2[k] + r2 * lp2[k]))


@_jit
def depth_loop(rot_a, h, base, rows, turn, res_k, step_k, moves, out):
    # rot_a [Vb, D·S, C] activity rotated into the base views, h [Vb, D·S, Cm] (Cm 1 or C) the
    # factors exp(−Δx·m/2) there; view v is base view base[v] turned by turn[v] quarter turns, its
    # row d·S+s being row rows[turn[v], d·S+s] of the base view. res_k [V, D, 3] (c0, c1, c2),
    # step_k [V, D−1, 2] (middle, side), moves [D−1] bool; out [V, S, C].
    nv = out.shape[0]
    ns = out.shape[1]
    nc = out.shape[2]
    nd = rot_a.shape[1] // ns
    ncm = h.shape[2]
    dt = rot_a.dtype
    surv = np.empty((nd * ns, ncm), dtype=dt)
    q = np.empty((ns, ncm), dtype=dt)
    lit = np.zeros((ns + 4) * nc, dtype=dt)  # two zero rows each side: the residual's padding
    acc = np.zeros((ns + 2) * nc, dtype=dt)  # one zero row each side: the step's padding
    tmp = np.zeros((ns + 2) * nc, dtype=dt)
    for v in range(nv):
        av = rot_a[base[v]]
        hv = h[base[v]]
        rv = rows[turn[v]]
        # surv_j = h_j · Π_{k>j} h_k², from the detector side
        q[:, :] = 1.0
        for j in range(nd - 1, -1, -1):
            for s in range(ns):
                hr = hv[rv[j * ns + s]]
                sr = surv[j * ns + s]
                qs = q[s]
                for m in range(ncm):
                    sr[m] = qs[m] * hr[m]
                    qs[m] = qs[m] * (hr[m] * hr[m])
        for j in range(nd):
            for s in range(ns):
                ar = av[rv[j * ns + s]]
                sr = surv[j * ns + s]
                lr = lit[(s + 2) * nc : (s + 3) * nc]
                if ncm == nc:
                    for c in range(nc):
                        lr[c] = ar[c] * sr[c]
                else:
                    f = sr[0]
                    for c in range(nc):
                        lr[c] = ar[c] * f
            r0 = res_k[v, j, 0]
            r1 = res_k[v, j, 1]
            r2 = res_k[v, j, 2]
            if j == 0:
                blur_step(tmp, acc, lit, r0, r0, r0, r1, r2, nc, ns, True)
            elif moves[j - 1]:
                blur_step(acc, tmp, lit, step_k[v, j - 1, 0], step_k[v, j - 1, 1], r0, r1, r2, nc, ns, False)
                acc, tmp = tmp, acc
            else:  # the identity step: [0, 1, 0]
                blur_step(acc, tmp, lit, dt.type(1.0), dt.type(0.0), r0, r1, r2, nc, ns, False)
                acc, tmp = tmp, acc
        ov = out[v]
        for s in range(ns):
            orow = ov[s]
            arow = acc[(s + 1) * nc : (s + 2) * nc]
            for c in range(nc):
                orow[c] = arow[c]
