"""The paper's losses as pure functions, one per equation.

Notation of Gatys, Ecker & Bethge (2015): a layer l has N_l feature maps of M_l = height * width positions;
F^l (N_l x M_l) is the response to the generated image, P^l the content image's, A^l the style image's Gram
matrix. Feature maps come in PyTorch's (1, N_l, h, w) layout; a batch of one image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def _as_matrix(features: Tensor) -> Tensor:
    """(1, N, h, w), (N, h, w) or already (N, M) -> F in R^(N x M)."""
    if features.dim() == 4 and features.shape[0] != 1:
        raise ValueError(f"expected a batch of one image, got {features.shape[0]}")
    if features.dim() < 3:
        return features
    n = features.shape[-3]
    if features.dim() == 4 and features.is_contiguous(memory_format=torch.channels_last) and n > 1:
        # channels-last maps hold F^T (M x N) contiguously: take F as its transposed view, not a copy
        return features.permute(0, 2, 3, 1).reshape(-1, n).t()
    # reshape, not features[0]: a view whose backward is a view too (indexing's backward fills a zero tensor)
    return features.reshape(n, -1)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Eq. 1: L_content = 1/2 sum_ij (F^l_ij - P^l_ij)^2.

    Its gradient is eq. 2: dL/dF^l_ij = (F^l - P^l)_ij where F^l_ij > 0, else 0 (the ReLU's part is autograd's).
    """
    return 0.5 * (features - target).pow(2).sum()


def gram_matrix(features: Tensor) -> Tensor:
    """Eq. 3: G^l_ij = sum_k F^l_ik F^l_jk, the N_l x N_l inner products of the vectorised feature maps."""
    f = _as_matrix(features)
    return f @ f.t()


def normalized_gram(features: Tensor) -> Tensor:
    """G^l / M_l: the Gram matrix of eq. 3 divided by the number of positions.

    Eq. 4's factor 1/(4 N_l^2 M_l^2) assumes the generated and the style image have the same M_l. Dividing
    each Gram by its own M_l keeps eq. 4 exact when they do, and compares like with like when they do not
    (a style image of another size); `gram_error` applies the remaining 1/(4 N_l^2).
    """
    f = _as_matrix(features)
    return gram_matrix(f) / f.shape[1]


def gram_error(gram: Tensor, target_gram: Tensor) -> Tensor:
    """Eq. 4 on normalised Gram matrices (see `normalized_gram`): E_l = 1/(4 N_l^2) sum_ij (G/M - A/M)^2, which
    is algebraically 1/(4 N_l^2 M_l^2) sum_ij (G^l_ij - A^l_ij)^2."""
    n = gram.shape[0]
    return (gram - target_gram).pow(2).sum() / (4 * n * n)


def layer_style_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """Eq. 4 of one layer's features against its target A^l / M_l, with eq. 6 as the backward.

    Gradient (eq. 6): dE_l/dF^l_ij = 1/(N_l^2 M_l^2) ((F^l)^T (G^l - A^l))_ji where F^l_ij > 0, else 0.
    """
    f = _as_matrix(features)
    loss: Tensor = _StyleLoss.apply(f, target_gram)  # type: ignore[no-untyped-call]
    return loss


def style_loss(layer_losses: Mapping[str, Tensor], layer_weights: Mapping[str, float]) -> Tensor:
    """Eq. 5: L_style = sum_l w_l E_l, from each layer's E_l (eq. 4) and its weight w_l."""
    return weighted_sum(layer_losses, layer_weights)


def weighted_sum(values: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """sum_k w_k v_k over the names in `weights`: eq. 5's form, also used for several content layers
    (sum_l c_l L_content(l); the paper uses one, c = 1) and, with the terms' weights, for eq. 7."""
    return torch.stack([w * values[name] for name, w in weights.items()]).sum()


def total_loss(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Eq. 7, L_total = alpha L_content + beta L_style, as the weighted sum of the objective's terms: with the
    terms {content, style} and weights {alpha, beta} it is eq. 7 itself; further terms (total variation, the
    temporal loss of video) add their own weighted summands."""
    return weighted_sum(terms, weights)


def total_variation(image: Tensor) -> Tensor:
    """Not in the paper: sum of squared differences of neighbouring pixels, a smoothness prior (Mahendran &
    Vedaldi 2015), for the optional total-variation term. Computed on the RGB image in [0, 1]."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).sum() + dy.pow(2).sum()


def blend_grams(grams: list[Tensor], weights: list[float]) -> Tensor:
    """Style target of several style images: sum_k b_k A_k / M_k with blend weights b_k normalised to sum 1."""
    total = float(sum(weights))
    return torch.stack([g * (w / total) for g, w in zip(grams, weights, strict=True)]).sum(0)


def guided_gram(features: Tensor, guide: Tensor) -> Tensor:
    """Guided Gram matrix (Gatys et al., CVPR 2017, sec. 4, eq. 6): the Gram matrix (eq. 3) of the feature maps
    weighted by a region's guidance channel T (h x w, in [0, 1]), normalised by sum T^2, the region's effective
    number of positions (with T = 1 everywhere this is `normalized_gram`)."""
    f = _as_matrix(features)
    t = guide.reshape(1, -1).to(f.dtype)
    return gram_matrix(f * t) / t.pow(2).sum().clamp_min(1e-12)


def guided_style_loss(features: Tensor, guides: Tensor, target_grams: Tensor, region_weights: Tensor) -> Tensor:
    """E_l for spatially guided style (CVPR 2017, sec. 4): sum_r a_r E_l(G_r, A_r) (eq. 4 per region r) with
    guidance channels `guides` (R x h x w), targets `target_grams` (R x N x N) and weights a_r (the regions'
    shares of the picture, so that one region covering everything gives eq. 4)."""
    terms = [gram_error(guided_gram(features, guides[r]), target_grams[r]) * region_weights[r]
             for r in range(guides.shape[0])]
    return torch.stack(terms).sum()


class _StyleLoss(torch.autograd.Function):
    """E_l of eq. 4 with eq. 6 as its backward: one matrix product forward (G) and one backward ((G - A) F).

    Autograd through ``f @ f.t()`` spends two products on the backward (one per factor); eq. 6 needs one,
    because G - A is symmetric. With D = (G - A)/M (the normalised Grams' difference), eq. 6 reads
    dE_l/dF = D F / (N_l^2 M_l); the ReLU's part of eq. 6 (zero where F <= 0) is autograd's, upstream.

    Features in reduced precision (bfloat16) multiply in it, accumulating in float32 inside the product, and
    D is formed in the target's precision (float32), where G and A nearly cancel.
    """

    @staticmethod
    def forward(ctx: Any, f: Tensor, target_gram: Tensor) -> Tensor:
        m = f.shape[1]
        gram = gram_matrix(f).to(target_gram.dtype).div_(m)
        ctx.save_for_backward(f, gram - target_gram)
        return gram_error(gram, target_gram)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        f, diff = ctx.saved_tensors
        n, m = f.shape
        grad_f = None
        if ctx.needs_input_grad[0]:
            d = diff.to(f.dtype)
            # D F, laid out like F (so a channels-last map gets a channels-last gradient: no strided copies)
            grad_f = (torch.mm(f.t(), d).t() if f.stride(0) == 1 else torch.mm(d, f)).mul_(grad / (n * n * m))
        grad_target = diff * (-grad / (2 * n * n)) if ctx.needs_input_grad[1] else None
        return grad_f, grad_target
