import math

import pytest

from spectdl.errors import InputError
from spectdl.materials import mu_per_cm


def test_tabulated_and_interpolated_values():
    # NIST: water mu/rho = 0.1505 cm^2/g at 150 keV; the textbook value at 140 keV is 0.154 /cm.
    assert math.isclose(mu_per_cm("water", 150.0), 0.1505)
    assert abs(mu_per_cm("water", 140.0) - 0.154) < 0.002
    assert abs(mu_per_cm("water", 208.0) - 0.135) < 0.002
    assert mu_per_cm("bone", 140.0) > 1.8 * mu_per_cm("water", 140.0)


def test_errors():
    with pytest.raises(InputError, match="material"):
        mu_per_cm("steel", 140.0)
    with pytest.raises(InputError, match="energy_kev"):
        mu_per_cm("water", 10.0)
    with pytest.raises(InputError, match="K edge"):
        mu_per_cm("lead", 90.0)
