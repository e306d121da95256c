#!/usr/bin/env bash
# Image encode and agent-step TTFT, llama.cpp's mtmd against `autoglm-deploy bench --image`, in
# alternating runs on the same GGUF pair and screenshots (see bench/README.md, "Vision").
#
#   bench/compare_mtmd.sh LLAMA_MTMD_CLI TEXT.gguf MMPROJ.gguf PAIRS IMAGE.png...
#
# Env: THREADS (2), QUANT (q8_0: our tower quantized at load; "auto" keeps it as stored),
# TEXT_TOKENS (2000: text before the image in our agent prompt; llama.cpp gets about as many tokens
# of text in its prompt), AUTOGLM (build/autoglm-deploy). Prints one Markdown row per run pair.
set -euo pipefail
if [ $# -lt 5 ]; then
  echo "usage: $0 LLAMA_MTMD_CLI TEXT.gguf MMPROJ.gguf PAIRS IMAGE..." >&2
  exit 2
fi
mtmd=$1 text=$2 mmproj=$3 pairs=$4
shift 4
threads=${THREADS:-2} quant=${QUANT:-q8_0} text_tokens=${TEXT_TOKENS:-2000}
autoglm=${AUTOGLM:-$(dirname "$0")/../build/autoglm-deploy}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# About text_tokens tokens of plain words for llama.cpp's prompt (its log gives the exact count).
python3 -c "import random; random.seed(1); w='the a screen button open tap settings message app back home'.split(); print(' '.join(random.choice(w) for _ in range($text_tokens)))" > "$tmp/prompt.txt"

echo "| image | run | llama.cpp encode (ms) | llama.cpp prompt eval (ms, tokens) | ours encode (ms) | ours TTFT (ms, tokens) | encode ratio |"
echo "|---|---|---|---|---|---|---|"
for image in "$@"; do
  for run in $(seq 1 "$pairs"); do
    "$mtmd" -m "$text" --mmproj "$mmproj" --image "$image" -f "$tmp/prompt.txt" -n 1 -t "$threads" -v > "$tmp/mtmd.log" 2>&1
    l_enc=$(grep -o 'batch encoding done in [0-9]* ms' "$tmp/mtmd.log" | grep -o '[0-9]*' | head -1 || true)
    l_eval=$(grep -o 'prompt eval time = *[0-9.]* ms / *[0-9]* tokens' "$tmp/mtmd.log" | sed 's/prompt eval time = *//; s/ ms \/ */ ms, /' | head -1 || true)
    "$autoglm" bench --model "$text" --mmproj "$mmproj" --image "$image" -r 1 --threads "$threads" \
      --quantization "$quant" --image-text-tokens "$text_tokens" --json > "$tmp/ours.json" 2> "$tmp/ours.log"
    read -r o_enc o_ttft o_tokens < <(python3 -c "import json; j=json.load(open('$tmp/ours.json')); print(round(j['encode_ms'][0]), round(j['ttft_ms'][0]), j['prompt_tokens'])")
    if [ -z "$l_enc" ]; then echo "llama.cpp printed no encode time; its log:" >&2; tail -20 "$tmp/mtmd.log" >&2; exit 1; fi
    ratio=$(python3 -c "print(f'{$l_enc / $o_enc:.2f}x')")
    echo "| $(basename "$image") | $run | $l_enc | $l_eval | $o_enc | $o_ttft ms, $o_tokens | $ratio |"
  done
done
