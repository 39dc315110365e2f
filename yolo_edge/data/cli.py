"""``yolo-edge data``: write synthetic datasets to disk and check labelled datasets."""

from __future__ import annotations


def cmd_data(args) -> int:
    from . import load_dataset, synthetic_split, write_yolo_dataset

    if args.action == "synth":
        ds = synthetic_split(args.split, n=args.n)
        out = write_yolo_dataset(ds, args.out, image_format=args.format, overwrite=args.overwrite)
        print(f"wrote {len(ds)} images of synthetic:{args.split} (seed {ds.seed}) to {out}")
        return 0
    ds = load_dataset(args.dataset, strict=args.strict)
    n_boxes = 0
    for i in range(len(ds)):
        n_boxes += len(ds[i].class_ids)
    print(f"{args.dataset}: {len(ds)} images, {n_boxes} boxes, {len(ds.names)} classes")
    print(ds.summary)
    return 0 if ds.summary.ok or not args.fail_on_problems else 1


def build_data(p) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub.add_parser("synth", help="write a synthetic split in the YOLO txt layout")
    s.add_argument("--split", default="val", choices=["train", "val", "calib"])
    s.add_argument("--n", type=int, default=None, help="number of images (default: the split's size)")
    s.add_argument("--out", required=True)
    s.add_argument("--format", default="png", choices=["png", "jpg"])
    s.add_argument("--overwrite", action="store_true")
    c = sub.add_parser("check", help="read a dataset and report every bad label with file and line")
    c.add_argument("dataset", help="a YOLO dir, a COCO json, an image folder, synthetic:val, ...")
    c.add_argument("--strict", action="store_true", help="stop at the first problem")
    c.add_argument("--fail-on-problems", action="store_true", help="exit 1 when any problem was found")


COMMANDS = [("data", cmd_data, "write synthetic datasets; check a dataset's labels", build_data)]
