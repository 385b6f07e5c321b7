"""The paper's equations on tiny tensors: hand-computed values, and autograd against the analytic gradients."""

from __future__ import annotations

import pytest
import torch

from gramstyle import losses

F = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)  # N = 2 maps, M = 2 positions


def test_gram_matrix_eq3_by_hand() -> None:
    # G_ij = sum_k F_ik F_jk: [[1+4, 3+8], [3+8, 9+16]]
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]], dtype=torch.float64)
    assert torch.equal(losses.gram_matrix(F), expected)
    # The (1, N, h, w) layout of a feature map gives the same matrix.
    assert torch.equal(losses.gram_matrix(F.reshape(1, 2, 1, 2)), expected)
    assert torch.equal(losses.normalized_gram(F), expected / 2)


def test_content_loss_eq1_by_hand() -> None:
    P = torch.tensor([[0.0, 2.0], [3.0, 1.0]], dtype=torch.float64)
    # differences 1, 0, 0, 3 -> 1/2 (1 + 9) = 5
    assert losses.content_loss(F, P).item() == 5.0


def test_layer_style_loss_eq4_by_hand() -> None:
    A = torch.tensor([[4.0, 10.0], [10.0, 20.0]], dtype=torch.float64)
    # G - A = [[1, 1], [1, 5]], squares sum to 28; 1/(4 N^2 M^2) = 1/(4*4*4) -> 28/64
    e = losses.layer_style_loss(F.reshape(1, 2, 1, 2), A / 2)
    assert e.item() == pytest.approx(28 / 64, rel=1e-15)


def test_style_loss_eq5_and_total_eq7() -> None:
    feats = {"a": F, "b": 2 * F}
    targets = {"a": losses.normalized_gram(F) + 1, "b": losses.normalized_gram(2 * F)}
    # E_a: every entry of G/M - A/M is -1, so E_a = 4 / (4 * 2^2) = 0.25; E_b = 0.
    per_layer = {name: losses.layer_style_loss(feats[name], targets[name]) for name in feats}
    assert per_layer["a"].item() == pytest.approx(0.25) and per_layer["b"].item() == pytest.approx(0, abs=1e-12)
    style = losses.style_loss(per_layer, {"a": 0.5, "b": 0.5})
    assert style.item() == pytest.approx(0.125)
    total = losses.total_loss({"content": torch.tensor(5.0), "style": style}, {"content": 1e-3, "style": 2.0})
    assert total.item() == pytest.approx(1e-3 * 5 + 2 * 0.125)


def test_style_target_of_a_larger_image_is_normalised_by_its_own_size() -> None:
    # The same texture tiled twice has twice the positions and twice the raw Gram matrix; normalised by its
    # own M_l it is the same statistic, so E_l vanishes.
    torch.manual_seed(0)
    f = torch.rand(1, 8, 4, 4, dtype=torch.float64)
    tiled = torch.cat([f, f], dim=3)
    assert torch.allclose(losses.gram_matrix(tiled), 2 * losses.gram_matrix(f))
    assert losses.layer_style_loss(f, losses.normalized_gram(tiled)).item() == pytest.approx(0, abs=1e-24)


def test_content_gradient_is_eq2() -> None:
    torch.manual_seed(1)
    z = torch.randn(1, 6, 5, 7, dtype=torch.float64, requires_grad=True)  # pre-activation
    P = torch.relu(torch.randn(1, 6, 5, 7, dtype=torch.float64))
    Fl = torch.relu(z)
    losses.content_loss(Fl, P).backward()
    # eq. 2: (F - P)_ij if F_ij > 0, else 0
    expected = torch.where(Fl > 0, Fl - P, torch.zeros_like(Fl))
    assert z.grad is not None
    assert torch.allclose(z.grad, expected, rtol=0, atol=1e-12)


def test_style_gradient_is_eq6() -> None:
    torch.manual_seed(2)
    n, h, w = 5, 4, 3
    m = h * w
    z = torch.randn(1, n, h, w, dtype=torch.float64, requires_grad=True)
    style_features = torch.relu(torch.randn(1, n, 2 * h, w, dtype=torch.float64))  # another size on purpose
    target = losses.normalized_gram(style_features)  # A / M_style
    Fl = torch.relu(z)
    losses.layer_style_loss(Fl, target).backward()
    # eq. 6 with A expressed at this layer's M: dE/dF_ij = 1/(N^2 M^2) ((F^T (G - A))^T)_ij where F_ij > 0
    f = Fl.detach().reshape(n, m)
    G, A = f @ f.T, target * m
    analytic = ((f.T @ (G - A)).T / (n**2 * m**2)).reshape(1, n, h, w)
    expected = torch.where(Fl > 0, analytic, torch.zeros_like(analytic))
    assert z.grad is not None
    assert torch.allclose(z.grad, expected, rtol=1e-10, atol=1e-14)


def test_gradcheck_losses() -> None:
    torch.manual_seed(3)
    f = torch.rand(1, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    p = torch.rand(1, 3, 2, 3, dtype=torch.float64)
    a = losses.normalized_gram(torch.rand(1, 3, 4, 4, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda x: losses.content_loss(x, p), (f,))
    assert torch.autograd.gradcheck(lambda x: losses.layer_style_loss(x, a), (f,))
    assert torch.autograd.gradcheck(losses.total_variation, (f,))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gradcheck_style_loss_in_each_memory_layout(layout: torch.memory_format) -> None:
    """Real runs hand the style loss channels-last maps, whose F is a transposed view (`_as_matrix`) and whose
    gradient takes the other branch of eq. 6's backward: both layouts must give the true gradient."""
    torch.manual_seed(6)
    f = torch.rand(1, 4, 3, 5, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
    assert f.is_contiguous(memory_format=layout)
    a = losses.normalized_gram(torch.rand(1, 4, 6, 6, dtype=torch.float64)).requires_grad_(True)
    assert losses._as_matrix(f).stride(0) == (1 if layout == torch.channels_last else 15)
    assert torch.autograd.gradcheck(losses.layer_style_loss, (f, a))
    (grad,) = torch.autograd.grad(losses.layer_style_loss(f, a.detach()), f)
    assert grad.is_contiguous(memory_format=layout)  # no strided copy on the way back


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gradcheck_guided_losses(layout: torch.memory_format) -> None:
    torch.manual_seed(7)
    f = torch.rand(1, 3, 4, 4, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
    guides = torch.rand(2, 4, 4, dtype=torch.float64)
    targets = torch.stack([losses.guided_gram(torch.rand(1, 3, 4, 4, dtype=torch.float64), g) for g in guides])
    weights = torch.tensor([0.3, 0.7], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: losses.guided_gram(x, guides[0]), (f,))
    assert torch.autograd.gradcheck(lambda x: losses.guided_style_loss(x, guides, targets, weights), (f,))


def test_style_loss_backward_matches_autograd_of_eq4() -> None:
    """The hand-written backward (eq. 6, one product) equals autograd through eq. 4 written out, for the
    features and for the target Gram matrix."""
    torch.manual_seed(4)
    f = torch.rand(1, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    a = losses.normalized_gram(torch.rand(1, 6, 3, 3, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(losses.layer_style_loss, (f, a))
    fast = torch.autograd.grad(losses.layer_style_loss(f, a), (f, a))
    g = f.reshape(6, -1) @ f.reshape(6, -1).T / 35
    plain = torch.autograd.grad((g - a).pow(2).sum() / (4 * 36), (f, a))
    for mine, reference in zip(fast, plain, strict=True):
        assert torch.allclose(mine, reference, rtol=1e-12, atol=0)


def test_style_loss_of_bfloat16_features_is_formed_in_float32() -> None:
    torch.manual_seed(5)
    f = torch.rand(1, 8, 6, 6)
    target = losses.normalized_gram(torch.rand(1, 8, 5, 5))
    exact = losses.layer_style_loss(f, target)
    low = f.bfloat16().requires_grad_(True)
    approx = losses.layer_style_loss(low, target)
    assert approx.dtype == torch.float32
    assert float(approx.detach()) == pytest.approx(float(exact), rel=0.03)
    (grad,) = torch.autograd.grad(approx, low)
    assert grad.dtype == torch.bfloat16


def test_total_variation_by_hand() -> None:
    image = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # horizontal: (1-0)^2 + (4-2)^2 = 5; vertical: (2-0)^2 + (4-1)^2 = 13
    assert losses.total_variation(image).item() == 18.0


def test_blend_grams() -> None:
    a, b = torch.eye(2), 3 * torch.eye(2)
    assert torch.equal(losses.blend_grams([a, b], [1.0, 0.0]), a)
    assert torch.equal(losses.blend_grams([a, b], [0.0, 2.0]), b)
    assert torch.allclose(losses.blend_grams([a, b], [1.0, 1.0]), 2 * torch.eye(2))


def test_batch_of_more_than_one_is_refused() -> None:
    with pytest.raises(ValueError, match="batch of one"):
        losses.gram_matrix(torch.zeros(2, 3, 4, 4))
