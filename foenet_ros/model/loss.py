"""Training losses over a batch of B (drone, satellite) pairs that match index-wise.

``valid_neg[i, j]`` says whether satellite j may serve as a negative for drone i. With
geo-referenced data it is "ground distance > R metres", so a neighbouring, overlapping tile
is never pushed away as if it were a different place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _valid(b: int, valid_neg: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    eye = torch.eye(b, dtype=torch.bool, device=device)
    if valid_neg is None:
        return ~eye
    if valid_neg.shape != (b, b):
        raise ValueError(f"valid_neg must be [{b},{b}], got {tuple(valid_neg.shape)}")
    return valid_neg.to(device=device, dtype=torch.bool) & ~eye


def triplet_loss(
    d: torch.Tensor,
    s: torch.Tensor,
    valid_neg: torch.Tensor | None = None,
    margin: float | None = None,
    alpha: float = 10.0,
) -> torch.Tensor:
    """Batch-hard triplet ranking loss, both directions (drone->satellite and satellite->drone).

    Args:
        d, s: [B,D] L2-normalised drone / satellite descriptors; d[i] matches s[i].
        valid_neg: [B,B] bool mask of allowed negatives (diagonal ignored), or None (all others).
        margin: hinge margin on squared-L2 distances; None = soft margin
            ``log(1 + exp(alpha * (d_ap - d_an)))`` (the weighted soft-margin of cross-view work).
    Returns: scalar loss.
    """
    b = d.shape[0]
    valid = _valid(b, valid_neg, d.device)
    dist = (2.0 - 2.0 * d @ s.t()).clamp(min=0.0)  # squared L2 between unit vectors, [B,B]
    pos = dist.diagonal()
    big = torch.finfo(dist.dtype).max / 4
    losses = []
    for dd, vv in ((dist, valid), (dist.t(), valid.t())):  # drone anchors, then satellite anchors
        neg = dd.masked_fill(~vv, big).min(dim=1).values  # hardest allowed negative
        has_neg = vv.any(dim=1)
        diff = pos - neg
        l = F.relu(diff + margin) if margin is not None else F.softplus(alpha * diff)
        losses.append(l[has_neg])
    all_l = torch.cat(losses)
    return all_l.mean() if all_l.numel() else dist.sum() * 0.0


def info_nce_loss(
    d: torch.Tensor, s: torch.Tensor, temperature: float = 0.07, valid_neg: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP-style) over the batch; invalid negatives are masked out."""
    b = d.shape[0]
    logits = d @ s.t() / temperature
    mask = _valid(b, valid_neg, d.device) | torch.eye(b, dtype=torch.bool, device=d.device)
    logits = logits.masked_fill(~mask, float("-inf"))
    target = torch.arange(b, device=d.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
