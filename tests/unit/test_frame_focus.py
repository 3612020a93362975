"""adversarial.frame_weighted: the erase loss's per-latent-frame weighting (``frame_focus``)."""

from __future__ import annotations

import torch

from vidunlearn.adversarial import frame_weighted


def test_focus_zero_is_the_plain_mean_and_focus_weighs_the_worse_frames_more():
    error = torch.ones(2, 3, 3, 4, 4)
    error[:, :, 2] = 4.0                          # the last latent frame is four times as wrong
    assert torch.equal(frame_weighted(error, 0.0), error.mean())
    # focus 1: weights 1, 1, 4 over their mean 2 -> (0.5 * 1 + 0.5 * 1 + 2 * 4) / 3 = 3
    assert torch.isclose(frame_weighted(error, 1.0), torch.tensor(3.0))
    assert frame_weighted(error, 3.0) > frame_weighted(error, 1.0) > frame_weighted(error, 0.0)
    flat = torch.full((1, 2, 3, 2, 2), 0.7)       # equal frames: any focus is the plain mean
    assert torch.isclose(frame_weighted(flat, 3.0), flat.mean())


def test_the_weights_carry_no_gradient_of_their_own():
    error = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 3, 1, 1).requires_grad_()
    frame_weighted(error, 1.0).backward()
    weights = torch.tensor([1.0, 2.0, 3.0]) / 2.0   # the frames' errors over their mean, held fixed
    assert torch.allclose(error.grad.flatten(), weights / 3)
