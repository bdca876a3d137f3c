"""The PyTorch peer of `gpu_throughput e5`: transformers' MistralModel at E5-Mistral-7B's shape,
random bf16 weights, the same batch shapes, last-token pooling and L2 normalization, timed the
same way (median of 3 after a warm-up, synchronized). Attention is PyTorch's SDPA, transformers'
default (a flash kernel where the mask allows).

Usage: python3 bench/gpu_e5_peer.py [BATCHxLEN ...]   (default 16x512 8x2048 2x4096)
Needs torch with CUDA and transformers; the GPU machine's image has both.
"""

import sys
import time

import torch
import torch.nn.functional as F
from transformers import MistralConfig, MistralModel

H100_DENSE_BF16_TFLOPS = 989.0


def timed(fn, runs=3):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def main():
    shapes = [tuple(int(x) for x in a.split("x")) for a in sys.argv[1:]] or [
        (16, 512),
        (8, 2048),
        (2, 4096),
    ]
    config = MistralConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=32768,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        sliding_window=4096,
    )
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = MistralModel(config).eval()
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    gemm = 2 * 8192**3 / timed(lambda: a @ b, runs=10) / 1e12
    print(f"bf16 GEMM 8192³ through torch: {gemm:.0f} TFLOP/s\n")
    print("| batch × tokens | seconds/batch | tokens/s | TFLOP/s | MFU vs measured GEMM | MFU vs 989 |")
    print("|---|---|---|---|---|---|")
    for batch, length in shapes:
        ids = (
            torch.arange(batch * length, device="cuda").reshape(batch, length) * 104729
        ) % 31999 + 1
        mask = torch.ones_like(ids)

        @torch.inference_mode()
        def run():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            return F.normalize(hidden[:, -1].float(), dim=-1).cpu()

        seconds = timed(run)
        tokens = batch * length
        flops_per_token = 2 * 6.98e9 + 4 * length * 4096 * 32
        tflops = tokens * flops_per_token / seconds / 1e12
        print(
            f"| {batch} × {length} | {seconds:.3f} | {tokens / seconds:.0f} | {tflops:.0f} | "
            f"{tflops / gemm:.2f} | {tflops / H100_DENSE_BF16_TFLOPS:.2f} |"
        )


if __name__ == "__main__":
    main()
