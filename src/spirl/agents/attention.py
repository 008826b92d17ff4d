"""Fig. 6 maths (SPEC §11): a trained SPIRL policy's [cls]-query attention over the newest frame's patch keys, the
smallest set of keys holding a share of it, and the patch masks the figure colours. No plotting here.

Every key of the newest frame is a selected patch (slot j holds patch indices[j]) or a padded slot; the [cls] key
and the padded keys are not patches, so they are dropped and the remaining weights renormalised.
"""

from __future__ import annotations

import numpy as np
import torch

from spirl.agents.agent import QNetwork, real_rows

MASS_TOLERANCE = 1e-9  # absolute slack on "summed weight >= mass", for float round-off of the renormalised weights


@torch.no_grad()
def newest_frame_attention(network: QNetwork, stacks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The [cls]-query attention of the newest (last) frame over its K_max key slots, heads averaged.

    `PatchTransformerEncoder.attention_weights` returns [B, F, H, 1+K_max]: per frame and head, the softmax of the
    [cls] query over the keys [cls; slot 0 .. slot K_max-1]. Here: frame F-1 (frames are oldest first), the mean
    over the H heads, the [cls] key (index 0) and the padded slots (j >= count) dropped, the rest renormalised.

    Args: network: a QNetwork on embeddings with pool "cls"; stacks [B, F, K_max, D] the agent's observation stacks
        (any float dtype, padded rows exactly 0). Returns: weights [B, K_max] float32 (rows sum to 1 over the valid
        slots, 0 elsewhere; all 0 for a frame without real rows), valid [B, K_max] bool (slot j < count).
    """
    if network.spec.kind != "embeddings":
        raise ValueError(f"Fig. 6 needs a SPIRL network on patch embeddings, got frames of kind {network.spec.kind!r}")
    encoder = network.encoder
    if encoder.pool != "cls":
        raise ValueError(f"Fig. 6 needs pool 'cls' (the [cls]-query attention); this network has pool {encoder.pool!r}")
    x = stacks.to(device=encoder.cls_token.device, dtype=torch.float32)  # [B, F, K, D], as QNetwork.features
    counts = real_rows(x)  # [B, F]
    att = encoder.attention_weights(x, counts)  # [B, F, H, 1+K]
    keys = att[:, -1].mean(dim=1)[:, 1:]  # [B, K]: newest frame, heads averaged, [cls] key dropped
    valid = torch.arange(encoder.k_max, device=x.device)[None, :] < counts[:, -1, None]  # [B, K]
    kept = torch.where(valid, keys, 0.0)  # [B, K]
    total = kept.sum(dim=1, keepdim=True)  # [B, 1]
    return torch.where(total > 0, kept / total.clamp(min=torch.finfo(kept.dtype).tiny), 0.0), valid


def attention_set(weights: np.ndarray, valid: np.ndarray, mass: float) -> np.ndarray:
    """The smallest set of valid keys, taken by decreasing weight (ties: lower key index first), whose summed weight
    reaches `mass` after the invalid keys are dropped and the valid weights renormalised to sum 1.

    Args: weights [L] >= 0; valid [L] bool; mass in (0, 1]. Returns: [L] bool, True for keys in the set.
    """
    w = np.asarray(weights, dtype=np.float64)
    ok = np.asarray(valid, dtype=bool)
    if w.ndim != 1 or ok.shape != w.shape:
        raise ValueError(f"weights and valid must be 1-D of one length, got {w.shape} and {ok.shape}")
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must lie in (0, 1], got {mass!r}")
    if not ok.any():
        raise ValueError("no valid key: the attention set is undefined")
    if not np.all(np.isfinite(w[ok])) or np.any(w[ok] < 0) or w[ok].sum() <= 0:
        raise ValueError("the valid weights must be finite, >= 0 and not all 0")
    p = np.where(ok, w, 0.0) / w[ok].sum()  # [L]: renormalised over the valid keys
    order = np.lexsort((np.arange(len(p)), -p))  # decreasing weight, lower index first among ties
    order = order[ok[order]]  # valid keys only
    reached = np.cumsum(p[order]) >= mass - MASS_TOLERANCE  # [n_valid]
    size = int(np.argmax(reached)) + 1 if reached.any() else len(order)
    out = np.zeros(len(p), dtype=bool)
    out[order[:size]] = True
    return out


def fig6_masks(indices: np.ndarray, count: int, attention_keys: np.ndarray, grid: int) -> dict[str, np.ndarray]:
    """Key slots -> patches: the three coloured patch sets of Fig. 6.

    Args: indices [K_max] patch index held by each key slot of the newest frame (slots >= count are padding and
        ignored); count: the frame's K; attention_keys [K_max] bool (from attention_set; valid slots only); grid.
    Returns: {"selected": selected and not in the attention set, "attention": in the attention set and not
        selected, "both": both}, each bool [grid*grid]. Keys are selected patches, so "attention" is empty for sets
        built from this network's keys; it stays for the figure's legend and for other patch sets.
    """
    idx = np.asarray(indices, dtype=np.int64)
    keys = np.asarray(attention_keys, dtype=bool)
    if idx.ndim != 1 or keys.shape != idx.shape or not 0 <= count <= len(idx):
        raise ValueError(f"indices {idx.shape}, attention_keys {keys.shape} and count {count} do not match")
    if keys[count:].any():
        raise ValueError("the attention set holds padded key slots")
    n = grid * grid
    if count and (idx[:count].min() < 0 or idx[:count].max() >= n):
        raise ValueError(f"selected patch indices must lie in [0, {n})")
    selected = np.zeros(n, dtype=bool)
    selected[idx[:count]] = True
    attended = np.zeros(n, dtype=bool)
    attended[idx[:count][keys[:count]]] = True
    return {"selected": selected & ~attended, "attention": attended & ~selected, "both": selected & attended}
