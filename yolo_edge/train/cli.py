"""``yolo-edge train``: train a detector (``yolo-edge val`` lives in ``yolo_edge.evaluate.cli``)."""

from __future__ import annotations


def cmd_train(args) -> int:
    import os
    import sys

    if "torch" not in sys.modules:
        # OpenMP threads that spin while waiting collapse throughput when the CPU is shared with
        # other processes (3x slower measured on 2 shared cores); passive waiting costs little alone.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .augment import AugmentConfig
    from .trainer import TrainConfig, train

    aug = AugmentConfig(mosaic=args.mosaic, fliplr=args.fliplr, scale=args.aug_scale)
    cfg = TrainConfig(
        scale=args.scale, epochs=args.epochs, batch=args.batch, imgsz=args.imgsz, train_crop=args.crop,
        full_res_fraction=args.full_res_fraction, optimizer=args.optimizer, lr0=args.lr0, augment=aug, close_mosaic=args.close_mosaic,
        train_data=args.data, val_data=args.val_data, val_every=args.val_every, seed=args.seed,
        out=args.out, workers=args.workers, device=args.device, max_train_minutes=args.minutes,
        resume=args.resume if args.resume is not None else False, threads=args.threads or None,
    )
    from ..data import load_dataset
    from ..data.check import check_dataset
    from ..preflight import check_output_dir

    check_output_dir(args.out)
    train_ds = load_dataset(args.data)  # checked before the model is built (cheap: readers are lazy)
    for line in check_dataset(train_ds, (), strict=args.strict, what="--data"):
        print(line, file=sys.stderr)
    val_ds = load_dataset(args.val_data)
    for line in check_dataset(val_ds, train_ds.names, strict=args.strict, what="--val-data", drop_unknown=False):
        print(line, file=sys.stderr)
    best = train(cfg)
    print(f"best checkpoint: {best}")
    return 0


def build_train(p) -> None:
    from ..cli_types import fraction, image_size, non_negative_int, positive_float, positive_int, probability

    p.add_argument("--data", default="synthetic:train:5000",
                   help="training data: synthetic:train[:N] (default: 5000 images), a YOLO dir, a COCO json")
    p.add_argument("--val-data", default="synthetic:val", help="validation data (default: synthetic:val)")
    p.add_argument("--strict", action="store_true", help="fail on bad labels (default: warn, count, skip them)")
    p.add_argument("--scale", default="n", choices=["n", "s", "m"], help="model scale")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--imgsz", type=image_size, default=640, help="letterbox size for training geometry and validation")
    p.add_argument("--crop", type=image_size, default=None,
                   help="train on random CROPxCROP windows of the augmented imgsz image (e.g. 320: ~4x faster)")
    p.add_argument("--full-res-fraction", type=probability, default=0.0,
                   help="with --crop: train the last this fraction of the run at full imgsz (e.g. 0.2)")
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--lr0", type=positive_float, default=None, help="initial learning rate (default 0.002 AdamW, 0.01 SGD)")
    p.add_argument("--mosaic", type=probability, default=0.0, help="probability of a 4-image mosaic (default 0)")
    p.add_argument("--close-mosaic", type=non_negative_int, default=2, help="no mosaic in the last N epochs")
    p.add_argument("--fliplr", type=probability, default=0.5, help="horizontal flip probability")
    p.add_argument("--aug-scale", type=fraction, default=0.5, help="random zoom in [1 - s, 1 + s]")
    p.add_argument("--val-every", type=positive_int, default=1, help="validate every N epochs (and after the last)")
    p.add_argument("--minutes", type=positive_float, default=None,
                   help="time budget: the cosine schedule ends and training stops when it is spent")
    p.add_argument("--workers", type=non_negative_int, default=0, help="DataLoader worker processes")
    p.add_argument("--threads", type=non_negative_int, default=2, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/train", help="output directory (best.pt, last.pt, results.csv)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="LAST_PT",
                   help="continue from OUT/last.pt (or the given last.pt)")


COMMANDS = [("train", cmd_train, "train a YOLO detector (CPU or CUDA); writes best.pt, last.pt, results.csv",
             build_train)]
