"""``yolo-edge deploy triton|deepstream``: write the configs for the engines users already run."""

from __future__ import annotations


def cmd_deploy(args) -> int:
    if args.target == "triton":
        from .triton import TritonOptions, write_triton_repository

        opts = TritonOptions(name=args.name, version=args.version, max_batch=args.max_batch,
                             dynamic_batching=not args.no_dynamic_batching, max_queue_delay_us=args.max_queue_delay_us,
                             preferred_batch=tuple(args.preferred_batch or ()), instances=args.instances,
                             kind=args.kind, ort_trt=args.ort_trt, fp16=args.fp16, trt_version=args.trt_version)
        d = write_triton_repository(args.model, args.out, opts)
        print(f"wrote {d}/config.pbtxt and {d}/{opts.version}/ (parsed with Triton's model_config.proto)")
        print(f"serve: tritonserver --model-repository {args.out}   client: yolo-edge predict IMAGES "
              f"--model grpc://HOST:8001/{d.name}")
        return 0
    from .deepstream import DeepStreamOptions, write_deepstream

    opts = DeepStreamOptions(sources=args.sources, inputs=tuple(args.input or ()), sink=args.sink,
                             output_file=args.output_file, rtsp_port=args.rtsp_port, encoder=args.encoder,
                             calib_cache=args.calib_cache, gpu_id=args.gpu_id)
    app = write_deepstream(args.model, args.out, opts)
    print(f"wrote {app.parent}/ (nvinfer + deepstream-app configs checked against the documented keys)")
    print(f"on the device: make -C {app.parent}/nvdsinfer_yolo_edge && cd {app.parent} && deepstream-app -c {app.name}")
    return 0


def build_deploy(p) -> None:
    sub = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    t = sub.add_parser("triton", help="a Triton model repository (config.pbtxt + model)",
                       description="Write REPO/<name>/config.pbtxt and REPO/<name>/<version>/model.onnx|model.plan.")
    t.add_argument("model", help="exported .onnx (ONNX Runtime backend) or built .engine (TensorRT backend)")
    t.add_argument("--out", "-o", required=True, help="model repository directory")
    t.add_argument("--name", help="model name (default: the file stem)")
    t.add_argument("--version", type=int, default=1, help="model version directory (default 1)")
    t.add_argument("--max-batch", type=int, default=8,
                   help="max_batch_size for a dynamic-batch ONNX (default 8; an engine uses its profile maximum)")
    t.add_argument("--max-queue-delay-us", type=int, default=100,
                   help="dynamic batching: how long a request may wait for others (default 100 us)")
    t.add_argument("--preferred-batch", type=int, nargs="+", help="dynamic batching preferred batch sizes")
    t.add_argument("--no-dynamic-batching", action="store_true", help="leave dynamic_batching out")
    t.add_argument("--instances", type=int, default=1, help="model instances (instance_group count)")
    t.add_argument("--kind", choices=["gpu", "cpu", "auto"], default="gpu", help="instance kind (default gpu)")
    t.add_argument("--ort-trt", action="store_true", help="ONNX Runtime's TensorRT execution accelerator")
    t.add_argument("--fp16", action="store_true", help="with --ort-trt: FP16 precision mode")
    t.add_argument("--trt-version", help="the Triton server's TensorRT version, checked against an engine's manifest")
    d = sub.add_parser("deepstream", help="nvinfer + deepstream-app configs and the bbox parser",
                       description="Write a DeepStream bundle: nvinfer config, deepstream-app config with N sources, "
                                   "labels, the model, and the bbox parser source (built on the device).")
    d.add_argument("model", help="exported .onnx with NMS embedded, or a built .engine (with its manifest)")
    d.add_argument("--out", "-o", required=True, help="output directory")
    d.add_argument("--sources", type=int, default=1, help="number of sources = nvstreammux batch (default 1)")
    d.add_argument("--input", action="append", metavar="SRC",
                   help="a source: video file, rtsp://..., csi://SENSOR_ID or v4l2:///dev/videoN; repeat for "
                        "several (cycled over --sources; default: DeepStream's sample video)")
    d.add_argument("--sink", choices=["file", "rtsp", "fake"], default="file", help="output (default file)")
    d.add_argument("--output-file", default="yolo_edge_out.mp4", help="file sink output (default yolo_edge_out.mp4)")
    d.add_argument("--rtsp-port", type=int, default=8554, help="RTSP sink port (default 8554)")
    d.add_argument("--encoder", choices=["hw", "sw"], default="hw",
                   help="video encoder for file/RTSP sinks (sw on Jetson Orin Nano, which has no NVENC)")
    d.add_argument("--calib-cache", help="legacy implicit-INT8 calibration cache for a build from the FP32 ONNX")
    d.add_argument("--gpu-id", type=int, default=0)


COMMANDS = [("deploy", cmd_deploy, "write Triton model repositories and DeepStream configs for a model", build_deploy)]
