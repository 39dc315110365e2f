"""Batch-8 throughput through Triton's gRPC protocol vs ONNX Runtime in process (goal: >= 0.8x).

    python benchmarks/triton_throughput.py [--model M.onnx] [--imgsz 640] [--batch 8] [--rounds 10]

Three contenders: ONNX Runtime in process, the Triton runner over the socket (tensor bytes in the
gRPC message), and the Triton runner with Triton's system shared memory (``?shm=1``: a same-host
client writes the batch into a registered POSIX shared memory region). The server is yolo-edge's
loopback Triton gRPC server (``python -m yolo_edge.deploy.triton_server``,
ONNX Runtime behind Triton's GRPCInferenceService) in its own process on 127.0.0.1; the client is
:class:`TritonRunner` over ``tritonclient.grpc``. The local contender is :class:`OrtRunner` on the
same ONNX with the same thread settings. Both run ``runner.infer`` on the same letterboxed batches
(synthetic:val images), interleaved round by round with the order rotated
(:func:`yolo_edge.bench.headtohead.interleaved`), so machine-speed drift costs both alike. Client
and server share the machine's cores (as a Triton server on the same host would); on a shared VM
the absolute numbers are noisy, the ratio much less so. The default model is the bundled
checkpoint exported at --imgsz with NMS embedded and a dynamic batch.

Writes benchmarks/results/triton_throughput.json (and prints a table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def start_server(repo: Path, threads: int | None, max_seconds: float):
    cmd = [sys.executable, "-m", "yolo_edge.deploy.triton_server", "--repo", str(repo), "--port", "0",
           "--max-seconds", str(max_seconds)] + (["--threads", str(threads)] if threads else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"loopback server did not start: {line!r}")
    return proc, int(line.split()[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="an exported .onnx (default: the bundled checkpoint exported with NMS)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=2, help="distinct batches per round")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (both sides)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "triton_throughput.json"))
    args = ap.parse_args(argv)

    from yolo_edge.bench.headtohead import interleaved
    from yolo_edge.data import load_dataset
    from yolo_edge.deploy.triton import TritonOptions, write_triton_repository
    from yolo_edge.letterbox import letterbox_batch
    from yolo_edge.runtime.ort_runner import OrtRunner
    from yolo_edge.runtime.triton_runner import TritonRunner
    from yolo_edge.spec import NmsSpec
    from yolo_edge.util import atomic_write

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else None
        if model is None:
            from yolo_edge.export import export_onnx

            model = export_onnx(None, Path(tmp) / "bundled.onnx", imgsz=args.imgsz, nms=NmsSpec("onnx"), verbose=False)
        repo = Path(tmp) / "repo"
        write_triton_repository(model, repo, TritonOptions(name="yolo", max_batch=args.batch, kind="cpu"))
        local = OrtRunner(model, threads=args.threads)
        size = local.spec.letterbox
        ds = load_dataset(f"synthetic:val:{args.batch * args.batches}")
        batches = [letterbox_batch([ds[i].image for i in range(b * args.batch, (b + 1) * args.batch)], size)[0]
                   for b in range(args.batches)]
        proc, port = start_server(repo, args.threads, max_seconds=3600)
        try:
            remote = TritonRunner(f"grpc://127.0.0.1:{port}/yolo", timeout=600)
            shm = TritonRunner(f"grpc://127.0.0.1:{port}/yolo?shm=1", timeout=600)
            name = local.inputs[0].name
            with local, remote, shm:
                res = interleaved({"onnxruntime (in process)": lambda x: local.infer({name: x}),
                                   "triton gRPC (loopback)": lambda x: remote.infer({name: x}),
                                   "triton gRPC + shared memory": lambda x: shm.infer({name: x})},
                                  batches, rounds=args.rounds, warmup=2, progress=True)
            shm.close()
        finally:
            proc.terminate()
            proc.wait(10)
    rows = {k: {**v, "images_per_s": round(args.batch * 1000.0 / v["p50_ms"], 2)} for k, v in res.items()}
    (lk, lv), (rk, rv), (sk, sv) = rows.items()
    ratio = round(rv["images_per_s"] / lv["images_per_s"], 3)
    ratio_shm = round(sv["images_per_s"] / lv["images_per_s"], 3)
    doc = {"command": "python benchmarks/triton_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": f"{cpu_model()}, {os.cpu_count()} CPUs (client and server share them)",
           "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "model": str(args.model or f"bundled yolo11n-synth, {args.imgsz}x{args.imgsz}, NMS embedded"),
           "batch": args.batch, "rounds": args.rounds, "rows": rows,
           "throughput_ratio_triton_vs_local": ratio, "throughput_ratio_triton_shm_vs_local": ratio_shm,
           "goal": ">= 0.8 (socket path)", "met": ratio >= 0.8,
           "note": "client, server and other tenants share the CPU cores; load average recorded below",
           "load_average": os.getloadavg()}
    with atomic_write(Path(args.out), "w") as f:
        json.dump(doc, f, indent=1)
    print(f"| runner | p50 ms / batch {args.batch} | images/s |\n|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v['p50_ms']:.1f} | {v['images_per_s']:.1f} |")
    print(f"throughput ratio triton/local = {ratio} (goal >= 0.8), with shared memory {ratio_shm} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
