#!/usr/bin/env python3
"""GPU benchmark of the fused CUDA postprocess (needs a CUDA build of edgeseg, a GPU and a CUDA
torch). Runs on device-resident tensors, so no host copies are timed:

- ours: ``_core.cuda_postprocess_ptr`` on torch tensors' device pointers and torch's stream
- torch: ``F.interpolate(bilinear) + softmax + max`` on the same logits
- the device's copy bandwidth (a 256 MiB device-to-device copy) as the memory roofline

Prints medians (CUDA events), achieved GB/s (logits read + class map and confidence written)
and the class-map agreement with torch. ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys

WORKLOADS = [(4, 128, 128, 720, 1280), (19, 256, 512, 1024, 2048)]


def cuda_time_ms(torch, fn, repeat: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("bench_gpu: needs torch with CUDA", file=sys.stderr)
        return 2
    from edgeseg import _core

    ok, reason = _core.cuda_available()
    if not (ok and torch.cuda.is_available() and hasattr(_core, "cuda_postprocess_ptr")):
        print(f"bench_gpu: no usable CUDA here ({reason}; torch.cuda={torch.cuda.is_available()})")
        return 2
    dev = torch.device("cuda")
    big = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    big2 = torch.empty_like(big)
    copy_ms = cuda_time_ms(torch, lambda: big2.copy_(big), 20)
    copy_gbs = 2 * big.numel() / copy_ms / 1e6
    rows = []
    for c, h, w, oh, ow in WORKLOADS:
        for dtype in (torch.float32, torch.float16):
            logits = (torch.randn(c, h, w, device=dev) * 3).to(dtype)
            cm = torch.empty(oh, ow, dtype=torch.uint8, device=dev)
            conf = torch.empty(oh, ow, dtype=torch.float32, device=dev)
            stream = torch.cuda.current_stream().cuda_stream

            def ours(
                logits=logits,
                cm=cm,
                conf=conf,
                c=c,
                h=h,
                w=w,
                oh=oh,
                ow=ow,
                dtype=dtype,
                stream=stream,
            ):
                _core.cuda_postprocess_ptr(
                    logits.data_ptr(),
                    dtype == torch.float16,
                    c,
                    h,
                    w,
                    oh,
                    ow,
                    cm.data_ptr(),
                    conf.data_ptr(),
                    stream,
                )

            def peer(logits=logits, oh=oh, ow=ow):
                up = F.interpolate(
                    logits[None].float(), (oh, ow), mode="bilinear", align_corners=False
                )[0]
                return up.softmax(0).max(0)

            ours_ms = cuda_time_ms(torch, ours, args.repeat)
            torch_ms = cuda_time_ms(torch, peer, args.repeat)
            torch_conf, torch_cm = peer()
            agree = (cm == torch_cm.to(torch.uint8)).float().mean().item()
            conf_err = (conf - torch_conf).abs().max().item()
            moved = logits.numel() * logits.element_size() + oh * ow * (1 + 4)
            rows.append(
                {
                    "workload": f"C={c} {h}x{w} -> {oh}x{ow} {str(dtype).split('.')[-1]}",
                    "ours_ms": ours_ms,
                    "torch_ms": torch_ms,
                    "speedup": torch_ms / ours_ms,
                    "ours_gbs": moved / ours_ms / 1e6,
                    "copy_gbs": copy_gbs,
                    "class_map_agreement": agree,
                    "max_conf_diff": conf_err,
                }
            )
    if args.json:
        print(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=2))
        return 0
    print(f"device: {torch.cuda.get_device_name()}, device copy bandwidth {copy_gbs:.0f} GB/s")
    print("| workload | ours ms | torch ms | ours vs torch | ours GB/s (% of copy) | agree |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['workload']} | {r['ours_ms']:.3f} | {r['torch_ms']:.3f} | "
            f"{r['speedup']:.1f}x | {r['ours_gbs']:.0f} ({100 * r['ours_gbs'] / copy_gbs:.0f}%) "
            f"| {100 * r['class_map_agreement']:.3f}% |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
