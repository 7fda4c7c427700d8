"""Photon attenuation of the materials spectdl simulates, as plain data.

Mass attenuation coefficients μ/ρ (cm²/g, total with coherent scattering) from the NIST X-ray
mass attenuation tables (Hubbell & Seltzer, NIST Standard Reference Database 126; ICRU-44
compositions for bone and lung). Between table energies the value is interpolated linearly in
log(μ/ρ) versus log(E), the usual practice for these smooth, edge-free ranges (lead's K edge at
88 keV lies between the 80 and 100 keV rows and is not interpolated across: energies from 80 to
100 keV raise an error for lead).
"""

from __future__ import annotations

import math

from spectdl.errors import InputError

_ENERGIES_KEV = (30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0)

# (density g/cm³, μ/ρ at each energy of _ENERGIES_KEV)
_TABLE: dict[str, tuple[float, tuple[float, ...]]] = {
    "water": (1.0, (0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505, 0.1370, 0.1186, 0.1061, 0.09687)),
    "bone": (1.92, (1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480, 0.1309, 0.1113, 0.09908, 0.09022)),
    # ICRU-44 lung tissue composition at the density of inflated lung, not of the tissue itself.
    "lung": (0.30, (0.3571, 0.2537, 0.2155, 0.1961, 0.1753, 0.1630, 0.1437, 0.1308, 0.1133, 0.1013, 0.09255)),
    "lead": (11.35, (30.32, 14.36, 8.041, 5.021, 2.419, 5.549, 2.014, 0.9985, 0.4031, 0.2323, 0.1614)),
}


def materials() -> tuple[str, ...]:
    return tuple(_TABLE)


def mass_attenuation_cm2_per_g(material: str, energy_kev: float) -> float:
    """μ/ρ of ``material`` at ``energy_kev`` (30–500 keV), log-log interpolated."""
    if material not in _TABLE:
        raise InputError(f"material: unknown {material!r}; expected one of {sorted(_TABLE)}")
    e = float(energy_kev)
    if not (_ENERGIES_KEV[0] <= e <= _ENERGIES_KEV[-1]):
        raise InputError(
            f"energy_kev: {e} is outside the tabulated range {_ENERGIES_KEV[0]}–{_ENERGIES_KEV[-1]} keV"
        )
    if material == "lead" and 80.0 < e < 100.0:
        raise InputError(f"energy_kev: {e} keV lies across lead's K edge (88 keV); expected < 80 or >= 100")
    values = _TABLE[material][1]
    for i in range(len(_ENERGIES_KEV) - 1):
        e0, e1 = _ENERGIES_KEV[i], _ENERGIES_KEV[i + 1]
        if e0 <= e <= e1:
            t = math.log(e / e0) / math.log(e1 / e0)
            return math.exp(math.log(values[i]) + t * (math.log(values[i + 1]) - math.log(values[i])))
    raise AssertionError("unreachable")  # pragma: no cover


def mu_per_cm(material: str, energy_kev: float, density_g_per_cm3: float | None = None) -> float:
    """Linear attenuation coefficient μ (cm⁻¹) = μ/ρ · ρ, with the tabulated density by default."""
    mass = mass_attenuation_cm2_per_g(material, energy_kev)
    rho = _TABLE[material][0] if density_g_per_cm3 is None else float(density_g_per_cm3)
    if not (rho >= 0 and math.isfinite(rho)):
        raise InputError(f"density_g_per_cm3: expected a finite value >= 0, found {density_g_per_cm3!r}")
    return mass * rho
