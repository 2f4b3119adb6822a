"""SAM-Net decoder (decoder.py): the droplink's probabilities in training and test, lift, shapes."""

from __future__ import annotations

import pytest
import torch

from semcorr.errors import ConfigError
from semcorr.methods.samnet.decoder import DropLink, FeatureDecoder


def skip_fraction(link: DropLink, n: int = 20000) -> float:
    """Fraction of the n samples of a batch whose output is the skip (decoded = 0, skip = 1)."""
    torch.manual_seed(0)
    out = link(torch.zeros(n, 1, 1, 1), torch.ones(n, 1, 1, 1))
    assert set(out.unique().tolist()) <= {0.0, 1.0}  # binary b_h in training
    return float(out.mean())


@pytest.mark.parametrize(("keeps", "skip_probability"), [("decoded", 0.1), ("skip", 0.9)])
def test_droplink_probabilities_in_training_and_test(keeps, skip_probability):
    link = DropLink(p=0.9, keeps=keeps, test_value=0.5)
    assert link.skip_probability == pytest.approx(skip_probability)
    assert skip_fraction(link.train()) == pytest.approx(skip_probability, abs=0.01)  # 3.4 sigma at n = 20000
    a, b = torch.zeros(3, 2, 2, 2), torch.ones(3, 2, 2, 2)
    assert torch.allclose(link.eval()(a, b), torch.full_like(a, 0.5))  # b_h = 0.5 at test
    assert torch.equal(DropLink(p=1.0, keeps=keeps).train()(a, b), b if keeps == "skip" else a)


def test_droplink_is_drawn_per_sample_and_rejects_bad_values():
    torch.manual_seed(0)
    out = DropLink(p=0.5, keeps="skip").train()(torch.zeros(64, 3, 2, 2), torch.ones(64, 3, 2, 2))
    per_sample = out.flatten(1)
    assert (per_sample == per_sample[:, :1]).all() and 0 < float(per_sample[:, 0].mean()) < 1
    with pytest.raises(ConfigError, match="droplink_keeps"):
        DropLink(keeps="both")
    with pytest.raises(ConfigError, match="droplink_p"):
        DropLink(p=1.5)


def test_decoder_links_follow_the_config_and_lift_maps_the_top():
    decoder = FeatureDecoder([4, 8, 40], convs_per_level=1, droplink_p=0.9, droplink_keeps="decoded", project=8)
    assert [link.skip_probability for link in decoder.droplinks] == pytest.approx([0.1, 0.1, 0.1])
    assert [link.test_value for link in decoder.droplinks] == [0.5, 0.5, 0.5]
    with torch.no_grad():
        lifted = decoder.lift(torch.rand(2, 40, 4, 4))
        skips = [torch.rand(2, 4, 16, 16), torch.rand(2, 8, 8, 8), lifted]
        image = decoder.eval()(lifted, skips, (32, 32))
    assert lifted.shape == (2, 8, 4, 4)
    assert image.shape == (2, 3, 32, 32) and 0 <= float(image.min()) and float(image.max()) <= 1
    plain = FeatureDecoder([4, 8], convs_per_level=1)
    assert isinstance(plain.lift, torch.nn.Identity)
