#!/usr/bin/env python3
"""The seven methods of issue 11 as their published code computes them, in PyTorch (fp32, CPU), timed.

Each function follows the reference's tensor op sequence (see ../shared/methods/<method>.md for the commits):
  divprune       vbdi/divprune LlavaMetaForCausalLM.DivPrune: 1 - (normalize(x) @ normalize(x).T), then for each
                 of k picks the min over the rows of all earlier picks (index_select + min: O(k^2 n)), argmax
  cls-attention  FasterVLM: A[:, :, 0, 1:].mean(heads), topk per crop, scatter into a mask
  cdpruner       CDPruner encode_images: kernel = r_i S_ij r_j (bmm of the normalized features), greedy DPP loop
                 with cis / di2s (einsum over earlier picks), per crop as a batch, min-max over the whole image
  visionzip      VisionZip CLIPVisionTower_VisionZip.forward: keys averaged over heads (the metric), head-summed
                 [CLS] attention topk, masked_select, targets arange(0, m, step), bmm similarity, argmax,
                 one-hot bmm merge; the crops as a batch
  vispruner      VisPruner encode_images: head mean, argsort, then the duplicate-removal passes
                 (a @ b.T, max, argsort, gather with the reference's R // 2 - r width), crops as a batch
  evs            vLLM compute_retention_mask: cosine_similarity of frames 1.. with 0..T-2, 255 for frame 0,
                 stable argsort, mask
  dart           the embedding-level definition (TensorRT-Edge-LLM's op order): L1 norms, topk pivots (image,
                 then text, rank order), per pivot F.cosine_similarity against the pool, topk of -cos, pool mask
                 (the reference's per-pivot loop, with the definition's exact quotas ceil(rem / (P - j)))

    /usr/bin/python3 bench/torch_methods.py --threads 1 --repeat 7          # time every case, one JSON line each
    /usr/bin/python3 bench/torch_methods.py --only divprune/l15_d4096      # one case
    /usr/bin/python3 bench/torch_methods.py --check --tool build/bench-methods/tokenprune
        # each implementation on reference cases of ../shared/fixtures/reference (and DART on generated inputs)
        # against expected_keep.npy and against the tool's own answer (tokenprune prune ... --out)

Timing: after one warm-up call, median of --repeat calls of the whole method (inputs already in memory as
tensors, from them to the kept indices), under torch.inference_mode(), torch.set_num_threads(--threads).
Sizes match bench/bench_methods.cpp (same case names). Inputs are image-like (bench/make_features.py's recipe).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_features import image_features  # noqa: E402

P, SIDE, CROPS, HEADS = 576, 24, 5, 16


# ---------------------------------------------------------------------------------------------------------
# The methods (reference op sequences)
# ---------------------------------------------------------------------------------------------------------

def divprune(x, k):
    norm = x / x.norm(dim=1, keepdim=True)
    cosine_matrix = 1.0 - norm @ norm.t()
    s = torch.empty(k, dtype=torch.long)
    for i in range(k):
        if i == 0:
            m2 = cosine_matrix
            scores = torch.topk(m2, 2, dim=0, largest=False).values[1, :]
        else:
            m2 = torch.index_select(cosine_matrix, 0, s[:i])
            scores = torch.min(m2, dim=0).values
        s[i] = torch.argmax(scores)
    return torch.sort(s).values


def cls_attention(cls_rows, k):
    """cls_rows [B, H, 1 + n]: the [CLS] query row of each crop's maps (A[:, :, 0, :])."""
    scores = cls_rows[:, :, 1:].mean(dim=1)  # [B, n]
    top = scores.topk(k, dim=1).indices
    mask = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, top, True)
    b, n = scores.shape
    return (torch.arange(b * n).view(b, n))[mask]


def cdpruner(features, image_embeds, text_embeds, k, crops=1, theta=None):
    """features [n, d], image_embeds [n, e], text_embeds [m, e]; crops: the reference's batch of B crops."""
    b = crops
    image_features = features.view(b, -1, features.shape[-1])
    n = image_features.shape[1]
    image_normalized = (image_features / image_features.norm(dim=-1, keepdim=True)).float()
    similarity = torch.matmul(image_normalized, image_normalized.transpose(1, 2))
    image_embeds = image_embeds.view(b, n, -1)
    image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    relevance = torch.matmul(image_embeds, text_embeds.t())
    relevance = (-relevance).mean(dim=-1)
    relevance = (relevance - relevance.min() + 1e-6) / (relevance.max() - relevance.min())
    if theta is not None:
        alpha = theta / (2 * (1 - theta))
        relevance = torch.exp(alpha * relevance)
    kernel = relevance.unsqueeze(2) * similarity * relevance.unsqueeze(1)
    cis = torch.zeros((k, b, n))
    di2s = torch.diagonal(kernel, dim1=1, dim2=2).clone()
    select_idx = torch.empty((k, b), dtype=torch.long)
    rows = torch.arange(b)
    for i in range(k):
        j = torch.argmax(di2s, dim=-1)
        select_idx[i] = j
        eis = (kernel[rows, j] - torch.einsum('tb,tbn->bn', cis[:i, rows, j], cis[:i])) \
            / torch.sqrt(di2s[rows, j]).unsqueeze(-1)
        cis[i, :, :] = eis
        di2s -= torch.square(eis)
        di2s[rows, j] = -float('inf')
    select_idx = torch.sort(select_idx.t()).values  # [b, k]
    return (select_idx + (torch.arange(b) * n).unsqueeze(1)).reshape(-1)


def visionzip(cls_rows, keys, hidden_states, dominant, contextual, key_heads=1):
    """cls_rows [B, H, 1+n]; keys [B, 1+n, key_heads*dk]; hidden_states [B, 1+n, d]. Returns (keep, merged)."""
    b, n1, d = hidden_states.shape
    metric = keys.view(b, n1, key_heads, -1).mean(2)  # raw_key_states.mean(1) in CLIPAttention_forward
    dominant_num = dominant - 1
    cls_attention = cls_rows[:, :, 1:]
    cls_attention_sum = cls_attention.sum(dim=1)
    topk_indices = cls_attention_sum.topk(dominant_num, dim=1).indices + 1
    all_indices = torch.cat([torch.zeros((b, 1), dtype=topk_indices.dtype), topk_indices], dim=1)
    mask = torch.ones_like(hidden_states[:, :, 0], dtype=torch.bool).scatter_(1, all_indices, False)
    dominant_tokens = hidden_states.masked_select(~mask.unsqueeze(-1)).view(b, dominant_num + 1, d)
    metric_filtered = metric[mask].view(b, n1 - dominant_num - 1, metric.shape[2])
    hidden_states_filtered = hidden_states.masked_select(mask.unsqueeze(-1)).view(b, n1 - dominant_num - 1, d)
    metric_normalized = metric_filtered / metric_filtered.norm(dim=-1, keepdim=True)
    m = metric_normalized.shape[1]
    step = max(1, m // contextual)
    target_indices = torch.arange(0, m, step)[:contextual]
    target_tokens = metric_normalized[:, target_indices, :]
    rest = ~torch.isin(torch.arange(m), target_indices)
    tokens_to_merge = metric_normalized[:, rest, :]
    similarity = torch.bmm(tokens_to_merge, target_tokens.transpose(1, 2))
    assign_one_hot = torch.zeros(b, tokens_to_merge.shape[1], contextual, dtype=hidden_states.dtype)
    assign_one_hot.scatter_(2, similarity.argmax(dim=2).unsqueeze(-1), 1)
    counts = assign_one_hot.sum(dim=1).clamp(min=1).unsqueeze(-1)
    hidden_to_merge = hidden_states_filtered[:, rest, :]
    aggregated_hidden = torch.bmm(assign_one_hot.transpose(1, 2), hidden_to_merge) / counts
    target_hidden = hidden_states_filtered[:, target_indices, :]
    contextual_tokens = target_hidden + aggregated_hidden
    output = torch.cat([dominant_tokens, contextual_tokens], dim=1)
    keep = torch.sort(all_indices, dim=1).values
    return keep, contextual_tokens, output


def vispruner(cls_rows, features, keep, important_ratio=0.5, dedup_step=8):
    """cls_rows [B, H, 1+n]; features [B, n, d] (CLS removed). Returns the kept indices (global, per crop sorted)."""
    image_attentions = cls_rows[:, :, 1:].mean(dim=1)
    b, n = image_attentions.shape
    important_token_num = int(keep * important_ratio)
    diverse_token_num = keep - important_token_num
    token_indices = image_attentions.argsort(dim=-1, descending=True)
    important_indices = token_indices[:, :important_token_num]
    residual_indices = token_indices[:, important_token_num:]
    image_normalized = features / features.norm(dim=-1, keepdim=True)
    batch = torch.arange(b).unsqueeze(-1)
    while diverse_token_num > 0:
        r_size = residual_indices.shape[1]
        r = min(dedup_step, r_size - diverse_token_num)
        if r <= 0:
            break
        residual_tokens = image_normalized[batch.expand(-1, r_size), residual_indices]
        a, bb = residual_tokens[..., ::2, :], residual_tokens[..., 1::2, :]
        scores = (a @ bb.transpose(-1, -2)).max(dim=-1).values
        distinct_indices = scores.argsort(dim=-1, descending=True)[:, r:]
        residual_indices = torch.cat([
            residual_indices[..., ::2][batch.expand(-1, r_size // 2 - r), distinct_indices],
            residual_indices[..., 1::2],
        ], dim=-1)
    if diverse_token_num > 0:
        selected_indices = torch.cat([important_indices, residual_indices], dim=-1)
    else:
        selected_indices = important_indices
    index_masks = torch.zeros(b, n, dtype=torch.bool).scatter_(1, selected_indices, True)
    return torch.arange(b * n).view(b, n)[index_masks]


def evs(video_embeds, t, h, w, q):
    video_embeds = video_embeds.reshape(t, h, w, video_embeds.size(-1))
    tokens_per_frame = h * w
    similarity = F.cosine_similarity(video_embeds[1:, ...], video_embeds[:-1, ...], dim=-1)
    dissimilarity = 1 - similarity
    dissimilarity = torch.cat([255 * torch.ones_like(video_embeds[:1, :, :, 0]), dissimilarity], dim=0)
    dissimilarity_flat = dissimilarity.view(-1)
    order = torch.argsort(dissimilarity_flat, dim=-1, descending=True, stable=True)
    retain = max(tokens_per_frame, int(tokens_per_frame * t * (1 - q)))
    topk_indices = order[:retain]
    retention_mask = torch.zeros_like(dissimilarity_flat, dtype=torch.bool)
    retention_mask[topk_indices] = True
    return torch.nonzero(retention_mask).view(-1)


def dart(v, u, k, pivot_image=4, pivot_text=4):
    n = v.shape[0]
    image_l1 = torch.norm(v, p=1, dim=-1)
    pi = min(pivot_image, k)
    image_pivots = torch.topk(image_l1, pi).indices if pi > 0 else torch.empty(0, dtype=torch.long)
    pt = min(pivot_text, u.shape[0])
    text_pivots = torch.topk(torch.norm(u, p=1, dim=-1), pt).indices if pt > 0 else torch.empty(0, dtype=torch.long)
    pivot_tokens = torch.cat([v[image_pivots], u[text_pivots]])
    kept = [image_pivots]
    pool = torch.ones(n, dtype=torch.bool)
    pool[image_pivots] = False
    count = pi
    total = pivot_tokens.shape[0]
    for j in range(total):
        rem = k - count
        remaining = torch.nonzero(pool).view(-1)
        if rem == 0 or remaining.numel() == 0:
            break
        quota = -(-rem // (total - j))
        cos_sim = F.cosine_similarity(pivot_tokens[j].unsqueeze(0), v[remaining], dim=-1)
        picked = remaining[torch.topk(-cos_sim, quota).indices]
        pool[picked] = False
        kept.append(picked)
        count += quota
    return torch.sort(torch.cat(kept)).values


# ---------------------------------------------------------------------------------------------------------
# Inputs of the benchmark cases (same sizes as bench_methods.cpp)
# ---------------------------------------------------------------------------------------------------------

_cache = {}


def cached(key, make):
    if key not in _cache:
        _cache[key] = make()
    return _cache[key]


def feats(crops, dim, salt=0):
    def make():
        rng = np.random.default_rng(1000 + 7 * crops + dim + salt)
        return torch.from_numpy(np.concatenate([image_features(rng, SIDE, SIDE, dim) for _ in range(crops)]))
    return cached(("feats", crops, dim, salt), make)


def video(frames, dim):
    def make():  # a slowly drifting image: frame t = cos(0.12 t) a + sin(0.12 t) b + noise
        rng = np.random.default_rng(77 + dim)
        a, b = image_features(rng, SIDE, SIDE, dim), image_features(rng, SIDE, SIDE, dim)
        out = [np.cos(0.12 * t) * a + np.sin(0.12 * t) * b + 0.3 * rng.standard_normal(a.shape, dtype=np.float32)
               for t in range(frames)]
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(out), dtype=np.float32))
    return cached(("video", frames, dim), make)


def cls_rows(crops):
    def make():
        f = feats(crops, 1024).view(crops, P, 1024)
        g = torch.Generator().manual_seed(5)
        w = torch.randn(crops, 1024, HEADS, generator=g)
        logits = torch.bmm(f, w)  # [B, n, H]
        logits = 3.0 * logits / logits.std(dim=1, keepdim=True)
        logits = torch.cat([torch.full((crops, 1, HEADS), 3.0), logits], dim=1).transpose(1, 2)  # [B, H, 1+n]
        return torch.softmax(logits, dim=-1).contiguous()
    return cached(("cls", crops), make)


def with_cls(crops, dim, salt):
    def make():
        x = feats(crops, dim, salt).view(crops, P, dim)
        cls = 1.5 * torch.randn(crops, 1, dim, generator=torch.Generator().manual_seed(salt))
        return torch.cat([cls, x], dim=1).contiguous()
    return cached(("withcls", crops, dim, salt), make)


def randn(rows, dim, seed):
    return cached(("randn", rows, dim, seed), lambda: torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)))


def cases():
    """name -> zero-argument callable running the method on that case's inputs."""
    c = {}
    for d in (1024, 4096):
        c[f"divprune/l15_d{d}"] = lambda d=d: divprune(feats(1, d), 56)
    c["divprune/next_d4096"] = lambda: divprune(feats(CROPS, 4096), 282)
    c["cls-attention/l15"] = lambda: cls_attention(cls_rows(1), 64)
    c["cls-attention/next"] = lambda: cls_attention(cls_rows(CROPS), 32)
    for d in (1024, 4096):
        c[f"cdpruner/l15_d{d}"] = lambda d=d: cdpruner(feats(1, d), feats(1, 768), randn(1, 768, 31), 64)
    c["cdpruner/next_d4096"] = lambda: cdpruner(feats(CROPS, 4096), feats(CROPS, 768), randn(1, 768, 31), 32, CROPS)
    for d in (1024, 4096):
        c[f"visionzip/l15_d{d}"] = lambda d=d: visionzip(cls_rows(1), with_cls(1, 1024, 77), with_cls(1, d, 78),
                                                         54, 10, HEADS)
    c["visionzip/next_d1024"] = lambda: visionzip(cls_rows(CROPS), with_cls(CROPS, 1024, 77),
                                                  with_cls(CROPS, 1024, 78), 27, 5, HEADS)
    for d in (1024, 4096):
        c[f"vispruner/l15_d{d}"] = lambda d=d: vispruner(cls_rows(1), feats(1, d).view(1, P, d), 64)
    c["vispruner/next_d1024"] = lambda: vispruner(cls_rows(CROPS), feats(CROPS, 1024).view(CROPS, P, 1024), 32)
    for d in (1280, 3584):
        c[f"evs/video16_d{d}"] = lambda d=d: evs(video(16, d), 16, SIDE, SIDE, 0.75)
    for d in (1024, 4096):
        c[f"dart/l15_d{d}"] = lambda d=d: dart(feats(1, d), randn(32, d, 41), 64)
    c["dart/next_d4096"] = lambda: dart(feats(CROPS, 4096), randn(32, 4096, 41), 320)
    c["dart/video16_d1280"] = lambda: dart(video(16, 1280), randn(32, 1280, 41), 921)
    return c


# ---------------------------------------------------------------------------------------------------------
# Checks against the reference cases and the tool
# ---------------------------------------------------------------------------------------------------------

FIXTURES = os.path.join(HERE, "..", "..", "shared", "fixtures", "reference")


def load(case, name):
    return torch.from_numpy(np.load(os.path.join(case, name)).astype(np.float32))


def tool_keep(tool, args):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "keep.npy")
        subprocess.run([tool, "prune", *args, "--out", out], check=True, stdout=subprocess.DEVNULL)
        return np.load(out)


def check_case(tool, case):
    meta = json.load(open(os.path.join(case, "case.json")))
    method, j = meta["method"], lambda f: os.path.join(case, f)
    merged_ok = None
    if method == "divprune":
        got = divprune(load(case, "features.npy"), meta["keep"])
        args = ["--method", "divprune", "--features", j("features.npy"), "--keep", str(meta["keep"])]
    elif method == "cls-attention":
        a = load(case, "attention.npy")
        got = cls_attention(a[:, 0, :].unsqueeze(0), meta["keep"])
        args = ["--method", "cls-attention", "--attention", j("attention.npy"), "--keep", str(meta["keep"])]
    elif method == "cdpruner":
        crops = meta.get("crops", 1) if meta.get("layout") == "crops" else 1
        got = cdpruner(load(case, "features.npy"), load(case, "image_embeds.npy"), load(case, "text_embeds.npy"),
                       meta["keep"], crops, meta.get("theta"))
        args = ["--method", "cdpruner", "--features", j("features.npy"), "--image-embeds", j("image_embeds.npy"),
                "--text-embeds", j("text_embeds.npy"), "--keep", str(meta["keep"])]
        if meta.get("theta") is not None:
            args += ["--theta", str(meta["theta"])]
        if crops > 1:
            args += ["--layout", "crops", "--crops", str(crops)]
    elif method == "visionzip":
        a, keys, x = load(case, "attention.npy"), load(case, "keys.npy"), load(case, "features.npy")
        got, merged, _ = visionzip(a[:, 0, :].unsqueeze(0), keys.unsqueeze(0), x.unsqueeze(0), meta["dominant"],
                                   meta["contextual"])
        got = got.view(-1)
        expected_merged = np.load(j("expected_merged.npy"))
        tol = meta.get("merged_tolerance", {})
        atol = tol.get("atol", 1e-5 * float(np.abs(x.numpy()).max()))
        merged_ok = bool(np.all(np.abs(merged[0].numpy() - expected_merged) <= atol + tol.get("rtol", 1e-5)
                                * np.abs(expected_merged)))
        args = ["--method", "visionzip", "--attention", j("attention.npy"), "--keys", j("keys.npy"), "--features",
                j("features.npy"), "--dominant", str(meta["dominant"]), "--contextual", str(meta["contextual"])]
    elif method == "vispruner":
        a, x = load(case, "attention.npy"), load(case, "features.npy")
        got = vispruner(a[:, 0, :].unsqueeze(0), x.unsqueeze(0), meta["keep"], meta["important_ratio"],
                        meta.get("dedup_step", 8))
        args = ["--method", "vispruner", "--attention", j("attention.npy"), "--features", j("features.npy"),
                "--keep", str(meta["keep"]), "--important-ratio", str(meta["important_ratio"])]
    elif method == "evs":
        t, h, w, q = meta["grid_t"], meta["grid_h"], meta["grid_w"], meta["pruning_rate"]
        got = evs(load(case, "features.npy"), t, h, w, q)
        args = ["--method", "evs", "--features", j("features.npy"), "--frames", str(t), "--grid", f"{h}x{w}",
                "--pruning-rate", str(q)]
    else:
        return None
    expected = np.load(j("expected_keep.npy"))
    ours = tool_keep(tool, args)
    got = np.sort(got.numpy())
    row = {"case": os.path.basename(case), "torch==expected": bool(np.array_equal(got, expected)),
           "torch==tool": bool(np.array_equal(got, np.sort(ours)))}
    if merged_ok is not None:
        row["torch merged within tolerance"] = merged_ok
    return row


def check_dart(tool):
    """DART has no fixtures: compare with the tool on generated inputs (the definition's hand case included)."""
    rows = []
    hand_v = torch.tensor([[3, 0.2, 0], [2.4, 0.6, 0.1], [0.1, 2, 0.3], [0.2, 1.5, 1.1], [-1, 0.1, 0.2],
                           [0.3, -1.2, 0.5], [0.2, 0.1, -1.4], [1, 0.9, 0.8]])
    hand_u = torch.tensor([[0.1, 0, 2.2], [0.5, -0.4, 0.1]])
    got = dart(hand_v, hand_u, 5, 1, 1).tolist()
    rows.append({"case": "dart hand case (k 5, 1 + 1 pivots)", "torch==expected": got == [0, 1, 2, 4, 6]})
    with tempfile.TemporaryDirectory() as tmp:
        for n, d, m, k, seed in [(576, 64, 16, 64, 1), (576, 256, 32, 132, 2), (300, 32, 0, 30, 3)]:
            rng = np.random.default_rng(seed)
            v = image_features(rng, 24, n // 24, d)
            u = rng.standard_normal((max(m, 1), d)).astype(np.float32)[:m]
            np.save(os.path.join(tmp, "v.npy"), v)
            np.save(os.path.join(tmp, "u.npy"), u if m else np.zeros((0, d), np.float32))
            ours = tool_keep(tool, ["--method", "dart", "--features", os.path.join(tmp, "v.npy"), "--text",
                                    os.path.join(tmp, "u.npy"), "--keep", str(k)])
            got = dart(torch.from_numpy(v), torch.from_numpy(u), k).numpy()
            rows.append({"case": f"dart generated n{n}_d{d}_m{m}_k{k}", "torch==tool": bool(np.array_equal(got, ours))})
    return rows


def generated_cases():
    """Larger inputs and other parameters than the reference cases: (name, tool arguments, reference(dtype), files).

    Each reference(dtype) runs the published op sequence on the inputs cast to dtype and returns the kept indices
    (VisionZip: the kept indices and the merged tokens)."""
    def img(crops, side, d, seed):
        rng = np.random.default_rng(seed)
        return np.concatenate([image_features(rng, side, side, d) for _ in range(crops)]).astype(np.float32)

    def maps(heads, n, seed):  # softmax rows of random logits, [CLS] first: [heads, 1 + n, 1 + n]
        logits = 3.0 * torch.randn(heads, 1 + n, 1 + n, generator=torch.Generator().manual_seed(seed))
        return torch.softmax(logits, dim=-1).numpy()

    def with_cls(x, seed):
        return np.concatenate([np.random.default_rng(seed).standard_normal((1, x.shape[1])).astype(np.float32), x])

    t = lambda a, dt: torch.from_numpy(a).to(dt)
    out = []
    for crops, side, d, k, seed in [(1, 24, 4096, 57, 1), (5, 24, 4096, 282, 2), (1, 36, 1024, 400, 3),
                                    (1, 24, 1024, 1, 4), (1, 24, 768, 576, 5), (4, 24, 1024, 230, 6)]:
        x = img(crops, side, d, seed)
        out.append((f"divprune n{x.shape[0]} d{d} k{k}", ["--method", "divprune", "--features", "F", "--keep", str(k)],
                    lambda dt, x=x, k=k: divprune(t(x, dt), k), {"F": x}))
    for heads, n, k, seed in [(16, 576, 64, 1), (16, 1296, 200, 2), (12, 729, 1, 3), (8, 256, 255, 4)]:
        a = maps(heads, n, seed)
        out.append((f"cls-attention {heads} heads n{n} k{k}", ["--method", "cls-attention", "--attention", "A",
                                                              "--keep", str(k)],
                    lambda dt, a=a, k=k: cls_attention(t(a, dt)[:, 0, :].unsqueeze(0), k), {"A": a}))
    for crops, d, e, m, k, theta, seed in [(1, 4096, 768, 8, 64, None, 1), (5, 4096, 768, 12, 32, None, 2),
                                           (1, 1024, 512, 3, 128, 0.5, 3), (1, 1024, 768, 1, 300, None, 4),
                                           (3, 2048, 768, 5, 100, 0.8, 5)]:
        x, ie = img(crops, 24, d, seed), img(crops, 24, e, seed + 100)
        te = np.random.default_rng(seed).standard_normal((m, e)).astype(np.float32)
        args = ["--method", "cdpruner", "--features", "F", "--image-embeds", "E", "--text-embeds", "T", "--keep", str(k)]
        args += ["--theta", str(theta)] if theta is not None else []
        args += ["--layout", "crops", "--crops", str(crops)] if crops > 1 else []
        out.append((f"cdpruner {crops} crops d{d} {m} texts k{k} theta {theta}", args,
                    lambda dt, x=x, ie=ie, te=te, k=k, crops=crops, theta=theta:
                        cdpruner(t(x, dt), t(ie, dt), t(te, dt), k, crops, theta), {"F": x, "E": ie, "T": te}))
    for heads, side, dk, d, dominant, contextual, seed in [(16, 24, 1024, 1024, 54, 10, 1), (16, 24, 1024, 4096, 100, 30, 2),
                                                           (16, 36, 1280, 1280, 180, 60, 3), (12, 24, 768, 768, 10, 1, 4)]:
        a = maps(heads, side * side, seed)
        keys, x = with_cls(img(1, side, dk, seed + 10), seed), with_cls(img(1, side, d, seed + 20), seed + 1)
        out.append((f"visionzip n{side * side} d{d} {dominant} + {contextual}",
                    ["--method", "visionzip", "--attention", "A", "--keys", "K", "--features", "X", "--dominant",
                     str(dominant), "--contextual", str(contextual)],
                    lambda dt, a=a, keys=keys, x=x, dominant=dominant, contextual=contextual:
                        visionzip(t(a, dt)[:, 0, :].unsqueeze(0), t(keys, dt).unsqueeze(0), t(x, dt).unsqueeze(0),
                                  dominant, contextual)[:2], {"A": a, "K": keys, "X": x}))
    for heads, side, d, k, ratio, seed in [(16, 12, 256, 32, 0.5, 1), (16, 16, 512, 64, 0.25, 2), (8, 12, 128, 40, 0.75, 3)]:
        a, x = maps(heads, side * side, seed), img(1, side, d, seed + 5)  # small: VisPruner is fragile at 576
        out.append((f"vispruner n{side * side} d{d} k{k} important {ratio}",
                    ["--method", "vispruner", "--attention", "A", "--features", "F", "--keep", str(k),
                     "--important-ratio", str(ratio)],
                    lambda dt, a=a, x=x, k=k, ratio=ratio: vispruner(t(a, dt)[:, 0, :].unsqueeze(0), t(x, dt).unsqueeze(0), k, ratio),
                    {"A": a, "F": x}))
    for frames, h, w, d, q, seed in [(16, 24, 24, 1280, 0.75, 1), (32, 16, 16, 3584, 0.9, 2), (7, 20, 30, 1024, 0.5, 3),
                                     (2, 24, 24, 256, 0.99, 4)]:
        rng = np.random.default_rng(seed)
        a, b = rng.standard_normal((h * w, d)).astype(np.float32), rng.standard_normal((h * w, d)).astype(np.float32)
        v = np.concatenate([np.cos(0.12 * i) * a + np.sin(0.12 * i) * b + 0.3 * rng.standard_normal(a.shape).astype(np.float32)
                            for i in range(frames)]).astype(np.float32)
        out.append((f"evs {frames} x {h} x {w} d{d} q {q}", ["--method", "evs", "--features", "F", "--frames", str(frames),
                                                           "--grid", f"{h}x{w}", "--pruning-rate", str(q)],
                    lambda dt, v=v, frames=frames, h=h, w=w, q=q: evs(t(v, dt), frames, h, w, q), {"F": v}))
    return out


def check_generated(tool):
    """The tool against the published op sequences on generated_cases(). A case counts only where the reference
    gives the same set in fp32 and in float64 (a decision with a clear gap), as the reference cases were kept."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args, reference, files in generated_cases():
            paths = {}
            for key, array in files.items():
                paths[key] = os.path.join(tmp, key + ".npy")
                np.save(paths[key], np.ascontiguousarray(array))
            kept, merged = {}, None
            for dtype in (torch.float32, torch.float64):
                torch.set_default_dtype(dtype)  # CDPruner's reference allocates its factors in the default dtype
                try:
                    result = reference(dtype)
                finally:
                    torch.set_default_dtype(torch.float32)
                if isinstance(result, tuple):  # VisionZip
                    result, merged = result[0].view(-1), result[1][0].double().numpy()
                kept[dtype] = np.sort(result.numpy())
            if not np.array_equal(kept[torch.float32], kept[torch.float64]):
                print(f"skip {name}: the reference's fp32 and float64 sets differ (a near-tie)")
                continue
            call = [paths.get(a, a) for a in args]
            row = {"case": "generated " + name}
            if merged is not None:  # the float64 reference's merged tokens, within VisionZip's fixture tolerance
                call += ["--merged-out", os.path.join(tmp, "merged.npy")]
            row["torch==tool"] = bool(np.array_equal(kept[torch.float32], np.sort(tool_keep(tool, call))))
            if merged is not None:
                ours = np.load(os.path.join(tmp, "merged.npy")).astype(np.float64)
                atol = 1e-5 * float(np.abs(files["X"]).max())
                row["merged within tolerance"] = bool(ours.shape == merged.shape and
                                                      np.all(np.abs(ours - merged) <= atol + 1e-5 * np.abs(merged)))
            rows.append(row)
    return rows


def run_checks(tool, per_method, generated=False):
    names = sorted(os.listdir(FIXTURES))
    rows = []
    if generated:
        try:
            rows += check_generated(tool)
        except subprocess.CalledProcessError as e:
            rows.append({"case": "generated", "error": f"tool failed: {e}"})
    for prefix in ("divprune_", "cls_attention_", "cdpruner_", "visionzip_", "vispruner_", "evs_"):
        picked = [n for n in names if n.startswith(prefix)]
        # the largest cases first (n576, crops, qwen), then others, up to per_method
        picked.sort(key=lambda n: (not any(s in n for s in ("n576", "crops", "qwen", "h16", "n1152")), n))
        for name in picked[:per_method]:
            try:
                row = check_case(tool, os.path.join(FIXTURES, name))
            except subprocess.CalledProcessError as e:
                row = {"case": name, "error": f"tool failed: {e}"}
            if row:
                rows.append(row)
    try:
        rows += check_dart(tool)
    except subprocess.CalledProcessError as e:
        rows.append({"case": "dart", "error": f"tool failed: {e}"})
    failed = 0
    for row in rows:
        ok = all(v for k, v in row.items() if k != "case" and isinstance(v, bool)) and "error" not in row
        failed += not ok
        print(("ok   " if ok else "FAIL ") + json.dumps(row))
    print(f"{len(rows) - failed}/{len(rows)} agree")
    return failed == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--only", action="append", help="case name(s), e.g. divprune/l15_d4096 (default: all)")
    ap.add_argument("--check", action="store_true", help="compare with reference cases and the tool instead")
    ap.add_argument("--tool", default=os.path.join(HERE, "..", "build", "bench-methods", "tokenprune"))
    ap.add_argument("--per-method", type=int, default=4, help="--check: reference cases per method")
    ap.add_argument("--generated", action="store_true",
                    help="--check: also 26 larger generated inputs with other parameters (under a minute)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.check:
        with torch.inference_mode():
            sys.exit(0 if run_checks(args.tool, args.per_method, args.generated) else 1)
    all_cases = cases()
    names = args.only or list(all_cases)
    with torch.inference_mode():
        for name in names:
            run = all_cases[name]
            run()  # warm-up (and input generation)
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                run()
                times.append((time.perf_counter() - start) * 1e3)
            print(json.dumps({"impl": "torch", "case": name, "threads": args.threads, "ms": statistics.median(times),
                              "ms_min": min(times), "ms_max": max(times), "repeat": args.repeat,
                              "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
