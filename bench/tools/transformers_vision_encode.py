#!/usr/bin/env python3
"""Times transformers' GLM-4.1V vision tower (Glm4vVisionModel + merger, random weights at the
AutoGLM-Phone-9B / GLM-4.1V-9B size) on a screenshot, for bench/README.md's comparison. Benchmark
tooling only: needs torch, transformers and Pillow in a throwaway virtualenv (never in CI).

Usage: transformers_vision_encode.py IMAGE [--dtype bf16|f32] [--threads 2] [--repetitions 3]
Prints one line per repetition: "transformers DTYPE encode_ms N (patches P, tokens T)".
"""
import argparse
import time

import torch
from PIL import Image
from transformers import Glm4vImageProcessor
from transformers.models.glm4v.configuration_glm4v import Glm4vVisionConfig
from transformers.models.glm4v.modeling_glm4v import Glm4vVisionModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repetitions", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # GLM-4.1V-9B-Thinking's vision_config (the AutoGLM-Phone-9B tower)
    config = Glm4vVisionConfig(depth=24, hidden_size=1536, num_heads=12, intermediate_size=13696, out_hidden_size=4096,
                               patch_size=14, temporal_patch_size=2, spatial_merge_size=2, image_size=336,
                               in_channels=3, hidden_act="silu", rms_norm_eps=1e-5, attention_bias=False)
    config._attn_implementation = "sdpa"
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    torch.manual_seed(0)
    model = Glm4vVisionModel(config).to(dtype).eval()
    processor = Glm4vImageProcessor(size={"shortest_edge": 12544, "longest_edge": 9633792}, patch_size=14,
                                    temporal_patch_size=2, merge_size=2)
    inputs = processor(images=[Image.open(args.image)], return_tensors="pt")
    pixels = inputs["pixel_values"].to(dtype)
    grid = inputs["image_grid_thw"]
    n = int(pixels.shape[0])
    with torch.inference_mode():
        model(pixels, grid_thw=grid)  # warm-up
        for _ in range(args.repetitions):
            start = time.perf_counter()
            model(pixels, grid_thw=grid)
            ms = (time.perf_counter() - start) * 1000
            print(f"transformers {args.dtype} encode_ms {ms:.0f} (patches {n}, tokens {n // 4})", flush=True)


if __name__ == "__main__":
    main()
