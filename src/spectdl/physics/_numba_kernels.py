"""The numba kernels of :mod:`spectdl.physics._compiled` (imported only where numba is installed).

The loops index 1-D views with plain loop counters: numba wraps negative indices, and an index like
``i − nc`` with a run-time ``nc`` kept LLVM from vectorising them (measured 10× slower).
"""

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def rotate(indptr, indices, data, src, dst, src2, dst2, accumulate):
    # dst[p, :] (+)= Σ_k data[k] · src[indices[k], :] over the CSR row p (src, dst [n², C]), and the
    # same for src2, dst2 [n², C2] in the same pass over the matrix (C2 may be 0); rows in parallel.
    # A row's terms are summed in CSR order and then added, as torch's CPU product and an add_ of
    # it do (the same bytes, tests/physics/test_compiled.py).
    nc = dst.shape[1]
    nc2 = dst2.shape[1]
    for p in numba.prange(dst.shape[0]):
        acc = np.zeros(nc, dtype=dst.dtype)
        acc2 = np.zeros(nc2, dtype=dst2.dtype)
        for k in range(indptr[p], indptr[p + 1]):
            w = data[k]
            sr = src[indices[k]]
            for c in range(nc):
                acc[c] += w * sr[c]
            sr2 = src2[indices[k]]
            for c in range(nc2):
                acc2[c] += w * sr2[c]
        d = dst[p]
        d2 = dst2[p]
        if accumulate:
            for c in range(nc):
                d[c] += acc[c]
            for c in range(nc2):
                d2[c] += acc2[c]
        else:
            for c in range(nc):
                d[c] = acc[c]
            for c in range(nc2):
                d2[c] = acc2[c]


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


# ---- the depth blur of the per-view path, [D, G, S, Z] planes, in padded slabs [S+4, Z+4] ----
# A slab holds one group's plane with two zero rows (radial) and two zero columns (axial) each side,
# so that every tap reads zeros past the edge. Radial passes run over whole padded rows (the pad
# columns stay zero: their inputs are zero), axial ones over the interior of each row.


@_jit
def _radial(src, dst, taps, ns, w):
    # dst rows 2..ns+1 = Σ_t taps[t] (src[row − t] + src[row + t]) (taps[0] once); taps of 3 or 2.
    n = ns * w
    o = 2 * w
    d = dst[o : o + n]
    s0 = src[o : o + n]
    s1m = src[o - w : o - w + n]
    s1p = src[o + w : o + w + n]
    c0 = taps[0]
    c1 = taps[1]
    if taps.shape[0] == 3:
        c2 = taps[2]
        s2m = src[o - 2 * w : o - 2 * w + n]
        s2p = src[o + 2 * w : o + 2 * w + n]
        for k in range(n):
            d[k] = c0 * s0[k] + c1 * s1m[k] + c1 * s1p[k] + c2 * s2m[k] + c2 * s2p[k]
    else:
        for k in range(n):
            d[k] = c0 * s0[k] + c1 * s1m[k] + c1 * s1p[k]


@_jit
def _axial(src, dst, taps, ns, nz, w, add):
    # dst[row, 2:nz+2] (+)= the same along the axial axis, row by row.
    c0 = taps[0]
    c1 = taps[1]
    three = taps.shape[0] == 3
    c2 = taps[2] if three else c1
    for s in range(ns):
        o = (s + 2) * w + 2
        d = dst[o : o + nz]
        s0 = src[o : o + nz]
        s1m = src[o - 1 : o - 1 + nz]
        s1p = src[o + 1 : o + 1 + nz]
        s2m = src[o - 2 : o - 2 + nz]
        s2p = src[o + 2 : o + 2 + nz]
        if three:
            if add:
                for z in range(nz):
                    d[z] += c0 * s0[z] + c1 * s1m[z] + c1 * s1p[z] + c2 * s2m[z] + c2 * s2p[z]
            else:
                for z in range(nz):
                    d[z] = c0 * s0[z] + c1 * s1m[z] + c1 * s1p[z] + c2 * s2m[z] + c2 * s2p[z]
        else:
            if add:
                for z in range(nz):
                    d[z] += c0 * s0[z] + c1 * s1m[z] + c1 * s1p[z]
            else:
                for z in range(nz):
                    d[z] = c0 * s0[z] + c1 * s1m[z] + c1 * s1p[z]


@_jit
def _separable(src, tmp, dst, taps_s, taps_z, ns, nz, w, axial, add):
    # dst (+)= taps_z ∗ (taps_s ∗ src); without an axial blur dst (+)= taps_s ∗ src (radial only).
    if axial:
        _radial(src, tmp, taps_s, ns, w)
        _axial(tmp, dst, taps_z, ns, nz, w, add)
    elif add:
        _radial(src, tmp, taps_s, ns, w)
        o = 2 * w
        n = ns * w
        d = dst[o : o + n]
        t = tmp[o : o + n]
        for k in range(n):
            d[k] += t[k]
    else:
        _radial(src, dst, taps_s, ns, w)


@_jit
def _slabs(size, like):
    # four zeroed slabs of like's dtype
    return (np.zeros(size, dtype=like.dtype), np.zeros(size, dtype=like.dtype),
            np.zeros(size, dtype=like.dtype), np.zeros(size, dtype=like.dtype))


@_jit
def _load(plane, slab, ns, nz, w):
    for s in range(ns):
        row = slab[(s + 2) * w + 2 : (s + 2) * w + 2 + nz]
        src = plane[s]
        for z in range(nz):
            row[z] = src[z]


@_jit
def _store(slab, plane, ns, nz, w):
    for s in range(ns):
        row = slab[(s + 2) * w + 2 : (s + 2) * w + 2 + nz]
        dst = plane[s]
        for z in range(nz):
            dst[z] = row[z]


@numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def blur_forward(planes, res_s, res_z, step_s, step_z, moves, axial, out):
    # planes [D, G, S, Z] → out [G, S, Z] = acc_{D−1} of the recursion (psf module docstring), per
    # group g in parallel: res_* [G, D, 3] (c0, c1, c2), step_* [G, D−1, 2] (middle, side); the
    # _z kernels are ignored unless axial.
    nd, ng, ns, nz = planes.shape
    w = nz + 4
    size = (ns + 4) * w
    for g in numba.prange(ng):
        p, tmp, acc, nxt = _slabs(size, planes)
        for j in range(nd):
            _load(planes[j, g], p, ns, nz, w)
            if j == 0:
                _separable(p, tmp, acc, res_s[g, j], res_z[g, j], ns, nz, w, axial, False)
                continue
            if moves[j - 1]:
                _separable(acc, tmp, nxt, step_s[g, j - 1], step_z[g, j - 1], ns, nz, w, axial, False)
                acc, nxt = nxt, acc
            _separable(p, tmp, acc, res_s[g, j], res_z[g, j], ns, nz, w, axial, True)
        _store(acc, out[g], ns, nz, w)


@numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def blur_adjoint(image, res_s, res_z, step_s, step_z, moves, axial, out):
    # image [G, S, Z] (after the adjoint of the final base blur) → out [D, G, S, Z]: the recursion
    # run from near to far, out[j] = R_j ∗ u_j with u_{j−1} = S_{j−1} ∗ u_j.
    nd, ng, ns, nz = out.shape
    w = nz + 4
    size = (ns + 4) * w
    for g in numba.prange(ng):
        u, tmp, r, nxt = _slabs(size, image)
        _load(image[g], u, ns, nz, w)
        for j in range(nd - 1, -1, -1):
            _separable(u, tmp, r, res_s[g, j], res_z[g, j], ns, nz, w, axial, False)
            _store(r, out[j, g], ns, nz, w)
            if j > 0 and moves[j - 1]:
                _separable(u, tmp, nxt, step_s[g, j - 1], step_z[g, j - 1], ns, nz, w, axial, False)
                u, nxt = nxt, u
