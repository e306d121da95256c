#!/usr/bin/env python3
"""Random-weight GGUF pair at the real GLM-4.1V-9B / AutoGLM-Phone-9B size, for benchmarking.

Starts from the tiny llama.cpp fixture pair (same keys, same tensor names, same dtypes) and scales
every dim to the real model:

  mmproj (clip, projector glm4v):
    vision hidden 1536, 24 blocks, 12 heads (head_dim 128), patch 14, image_size 336
    (-> 24x24 = 576 learned positions), spatial merge 2, out_hidden / projection_dim 4096,
    block MLP width = out_hidden_size = 4096  (transformers Glm4VisionMlp uses config.out_hidden_size),
    merger (mm.gate/up/down) width = vision_config.intermediate_size = 13696,
    clip.vision.feed_forward_length = 13696 (what convert_hf_to_gguf writes from the real config).
  text (glm4, only so llama-mtmd-cli has a decoder to pair with): 1 block, 4096 wide, 32 heads,
    2 KV heads, head_dim 128, rope dims 64, M-RoPE sections [8, 12, 12, 0], tokenizer of the fixture.

Values: seeded normal. Matrices: std = std_tiny * sqrt(fan_in_tiny / fan_in_new) (the tiny file uses
~1/sqrt(fan_in)); embeddings (token / position) keep the tiny std; 1-D tensors keep the tiny mean
(rounded to 1 or 0) and std (norms ~1 +- 0.1, biases ~0 +- 0.05). Dtypes exactly as in the tiny file.

Usage: make_mmproj.py [--outdir DIR] [--seed N] [--block-ffn 4096] [--text-ffn 512]
"""
import argparse
import math
import os
import re

import numpy as np
import gguf
from gguf import GGUFReader, GGUFWriter, GGUFValueType, GGMLQuantizationType

FIX = "/work/shared/fixtures/glm4v"
TINY_MMPROJ = f"{FIX}/mmproj-tiny-glm4v-F16.gguf"
TINY_TEXT = f"{FIX}/tiny-glm4v-F16.gguf"


def read_fields(r: GGUFReader):
    out = []
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        vtype = f.types[0]
        sub = f.types[1] if vtype == GGUFValueType.ARRAY and len(f.types) > 1 else None
        out.append((k, f.contents(), vtype, sub))
    return out


def tensor_stats(r: GGUFReader):
    st = {}
    for t in r.tensors:
        a = np.asarray(t.data, dtype=np.float32)
        st[t.name] = (float(a.mean()), float(a.std()), [int(x) for x in t.shape], t.tensor_type)
    return st


def generic_name(name):
    return re.sub(r"^(v\.)?blk\.\d+\.", lambda m: (m.group(1) or "") + "blk.N.", name)


def write_gguf(path, arch, fields, overrides, tensors, stats_tiny, seed):
    """tensors: list of (name, ne_shape(list, ggml order), tiny_name)"""
    rng = np.random.default_rng(seed)
    w = GGUFWriter(path, arch)
    for k, v, vtype, sub in fields:
        if k == "general.architecture":
            continue
        if k in overrides:
            v = overrides[k]
        w.add_key_value(k, v, vtype, sub)
    for k, v in overrides.items():
        if k not in {f[0] for f in fields}:
            raise KeyError(f"override of key not in tiny file: {k}")

    plan = []
    for name, ne, tiny_name in tensors:
        mean_t, std_t, ne_t, ttype = stats_tiny[tiny_name]
        assert len(ne) == len(ne_t), (name, ne, ne_t)
        if ttype == GGMLQuantizationType.F16:
            np_dt = np.float16
        elif ttype == GGMLQuantizationType.F32:
            np_dt = np.float32
        else:
            raise ValueError(f"unexpected type {ttype} for {tiny_name}")
        if len(ne) == 1:
            mean = 1.0 if abs(mean_t - 1.0) < 0.3 else 0.0
            std = std_t
        elif "token_embd" in name or "position_embd" in name:
            mean, std = 0.0, std_t
        else:
            fan_t = math.prod(ne_t[:-1])
            fan = math.prod(ne[:-1])
            mean, std = 0.0, std_t * math.sqrt(fan_t / fan)
        np_shape = tuple(reversed(ne))
        nbytes = math.prod(ne) * np.dtype(np_dt).itemsize
        w.add_tensor_info(name, np_shape, np.dtype(np_dt), nbytes)
        plan.append((name, np_shape, np_dt, mean, std))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, np_shape, np_dt, mean, std in plan:
        a = rng.standard_normal(np_shape, dtype=np.float32)
        a *= std
        a += mean
        w.write_tensor_data(a.astype(np_dt))
        del a
    w.close()
    return plan


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--outdir", default="/tmp/llamabench")
    ap.add_argument("--seed", type=int, default=4109)
    ap.add_argument("--block-ffn", type=int, default=4096,
                    help="vision block MLP width (real GLM-4.1V: out_hidden_size = 4096)")
    ap.add_argument("--text-ffn", type=int, default=512, help="text model FFN width (not benchmarked)")
    ap.add_argument("--skip-text", action="store_true")
    ap.add_argument("--skip-mmproj", action="store_true")
    args = ap.parse_args()

    # ---------------- mmproj ----------------
    H, DEPTH, HEADS, FFN_BLK = 1536, 24, 12, args.block_ffn
    OUT, MERGER_FF, PATCH, IMG, MERGE = 4096, 13696, 14, 336, 2
    NPOS = (IMG // PATCH) ** 2  # 576

    r = GGUFReader(TINY_MMPROJ)
    fields = read_fields(r)
    st = tensor_stats(r)
    shapes = {
        "v.blk.N.attn_out.weight": [H, H],
        "v.blk.N.attn_qkv.weight": [H, 3 * H],
        "v.blk.N.ffn_down.weight": [FFN_BLK, H],
        "v.blk.N.ffn_gate.weight": [H, FFN_BLK],
        "v.blk.N.ffn_up.weight": [H, FFN_BLK],
        "v.blk.N.ln1.weight": [H],
        "v.blk.N.ln2.weight": [H],
        "mm.patch_merger.bias": [OUT],
        "mm.patch_merger.weight": [MERGE, MERGE, H, OUT],
        "v.position_embd.weight": [H, NPOS],
        "mm.down.weight": [MERGER_FF, OUT],
        "mm.gate.weight": [OUT, MERGER_FF],
        "mm.up.weight": [OUT, MERGER_FF],
        "mm.post_norm.bias": [OUT],
        "mm.post_norm.weight": [OUT],
        "mm.model.fc.weight": [OUT, OUT],
        "v.patch_embd.bias": [H],
        "v.patch_embd.weight": [PATCH, PATCH, 3, H],
        "v.patch_embd.weight.1": [PATCH, PATCH, 3, H],
        "v.norm_embd.weight": [H],
        "v.post_ln.weight": [H],
    }
    tensors = []
    blk_names = [t.name for t in r.tensors if t.name.startswith("v.blk.0.")]
    done_blocks = False
    for t in r.tensors:
        g = generic_name(t.name)
        if g not in shapes:
            raise KeyError(f"no shape rule for {t.name}")
        if t.name.startswith("v.blk."):
            if not done_blocks:
                for b in range(DEPTH):
                    for n0 in blk_names:
                        tensors.append((n0.replace("v.blk.0.", f"v.blk.{b}."), shapes[generic_name(n0)], n0))
                done_blocks = True
            continue
        tensors.append((t.name, shapes[g], t.name))
    over = {
        "general.name": "GLM-4.1V-9B vision (random weights)",
        "general.size_label": "",
        "clip.vision.projection_dim": OUT,
        "clip.vision.image_size": IMG,
        "clip.vision.patch_size": PATCH,
        "clip.vision.embedding_length": H,
        "clip.vision.feed_forward_length": MERGER_FF,
        "clip.vision.block_count": DEPTH,
        "clip.vision.attention.head_count": HEADS,
    }
    nparam = sum(math.prod(ne) for _, ne, _ in tensors)
    over["general.size_label"] = f"{nparam / 1e9:.2f}B" if nparam >= 1e9 else f"{nparam / 1e6:.0f}M"
    if not args.skip_mmproj:
        out = os.path.join(args.outdir, "mmproj-glm4v-9b-random-F16.gguf")
        write_gguf(out, "clip", fields, over, tensors, st, args.seed)
        print(f"wrote {out}: {len(tensors)} tensors, {nparam / 1e6:.1f}M params")

    # ---------------- text ----------------
    E, NL, NH, NKV, HD, TFF = 4096, 1, 32, 2, 128, args.text_ffn
    r = GGUFReader(TINY_TEXT)
    fields = read_fields(r)
    st = tensor_stats(r)
    vocab = len(r.fields["tokenizer.ggml.tokens"].contents())
    tshapes = {
        "output.weight": [E, vocab],
        "token_embd.weight": [E, vocab],
        "output_norm.weight": [E],
        "blk.N.attn_norm.weight": [E],
        "blk.N.ffn_down.weight": [TFF, E],
        "blk.N.ffn_up.weight": [E, 2 * TFF],  # fused gate+up, as the converter writes glm4
        "blk.N.ffn_norm.weight": [E],
        "blk.N.post_ffw_norm.weight": [E],
        "blk.N.post_attention_norm.weight": [E],
        "blk.N.attn_k.bias": [NKV * HD],
        "blk.N.attn_k.weight": [E, NKV * HD],
        "blk.N.attn_output.weight": [NH * HD, E],
        "blk.N.attn_q.bias": [NH * HD],
        "blk.N.attn_q.weight": [E, NH * HD],
        "blk.N.attn_v.bias": [NKV * HD],
        "blk.N.attn_v.weight": [E, NKV * HD],
    }
    tensors = []
    blk_names = [t.name for t in r.tensors if t.name.startswith("blk.0.")]
    done_blocks = False
    for t in r.tensors:
        g = generic_name(t.name)
        if g not in tshapes:
            raise KeyError(f"no shape rule for {t.name}")
        if t.name.startswith("blk."):
            if not done_blocks:
                for b in range(NL):
                    for n0 in blk_names:
                        tensors.append((n0.replace("blk.0.", f"blk.{b}."), tshapes[generic_name(n0)], n0))
                done_blocks = True
            continue
        tensors.append((t.name, tshapes[g], t.name))
    nparam = sum(math.prod(ne) for _, ne, _ in tensors)
    over = {
        "general.name": "GLM-4.1V-9B text 1-layer (random weights)",
        "general.size_label": f"{nparam / 1e6:.0f}M",
        "glm4.block_count": NL,
        "glm4.context_length": 65536,
        "glm4.embedding_length": E,
        "glm4.feed_forward_length": TFF,
        "glm4.attention.head_count": NH,
        "glm4.attention.head_count_kv": NKV,
        "glm4.attention.key_length": HD,
        "glm4.attention.value_length": HD,
        "glm4.rope.dimension_count": HD // 2,  # partial_rotary_factor 0.5
        "glm4.rope.dimension_sections": [8, 12, 12, 0],
    }
    if not args.skip_text:
        out = os.path.join(args.outdir, "text-glm4v-1layer-random-F16.gguf")
        write_gguf(out, "glm4", fields, over, tensors, st, args.seed + 1)
        print(f"wrote {out}: {len(tensors)} tensors, {nparam / 1e6:.1f}M params")


if __name__ == "__main__":
    main()
