import json

import pytest
import torch

from spectdl.data.transforms import (
    Compose,
    NormalizeMean,
    RandomCrop,
    RandomFlip,
    RandomRotate,
    from_spec,
    replay,
)
from spectdl.errors import InputError


def _sample():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 12, 12, 6, generator=g)
    return {"input": x, "target": x * 2, "labels": (x > 0.7).long(), "case_id": "c1"}


def test_compose_records_every_step_and_replays_exactly_from_json():
    t = Compose([RandomFlip((0, 1, 2)), RandomRotate(("xy", "xz", "yz"), step_deg=30), RandomCrop((8, 8, 4)),
                 NormalizeMean(("input", "target"))])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    out, spec = t(_sample(), g1)
    same, spec2 = t(_sample(), g2)
    assert spec == spec2 and all(torch.equal(out[k], same[k]) for k in ("input", "target", "labels"))
    text = json.dumps(spec)
    again = replay(_sample(), text)
    assert all(torch.equal(out[k], again[k]) for k in ("input", "target", "labels"))
    assert [s["transform"] for s in spec["transforms"]] == ["flip", "rotate", "crop", "scale"]
    assert out["input"].shape == (1, 8, 8, 4) and out["case_id"] == "c1"
    assert from_spec(spec).spec() == spec
    other, _ = t(_sample(), torch.Generator().manual_seed(6))
    assert not torch.equal(other["input"], out["input"])


def test_bad_specs_raise_input_error():
    with pytest.raises(InputError, match="unknown transform 'shear'"):
        replay(_sample(), {"transform": "shear"})
    with pytest.raises(InputError, match="not valid JSON"):
        from_spec("{flip")
    with pytest.raises(InputError, match="do not fit transform 'flip'"):
        from_spec({"transform": "flip", "angle": 3})
    with pytest.raises(InputError, match="random"):
        Compose([RandomFlip()]).spec()
