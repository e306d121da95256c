#!/usr/bin/env python3
"""An mmproj GGUF with its 2-D F16/F32 matrices rounded to Q8_0 (rows a multiple of 32; not the
position and patch embeddings, which llama.cpp's glm4v graph needs as floats), every other tensor and
key as it was: the int8 tower for llama.cpp, to compare like with like against
`autoglm-deploy --quantization q8_0`.

Usage: quantize_mmproj.py IN.gguf OUT.gguf        (needs: pip install numpy gguf)
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import quantize


def main():
    src, dst = sys.argv[1], sys.argv[2]
    r = GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(dst, arch)
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub)
    for t in r.tensors:
        ne = [int(x) for x in t.shape]  # ggml order: ne[0] is the row length
        data = np.asarray(t.data)
        floats = t.tensor_type in (GGMLQuantizationType.F16, GGMLQuantizationType.F32)
        embedding = "position_embd" in t.name or "patch_embd" in t.name
        if floats and not embedding and len(ne) == 2 and ne[0] % 32 == 0:
            q = quantize(data.astype(np.float32).reshape(ne[1], ne[0]), GGMLQuantizationType.Q8_0)
            w.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
