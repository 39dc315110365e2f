"""Training loop and validation.

    from yolo_edge.train import TrainConfig, train, val
    best = train(TrainConfig(epochs=30, train_crop=320, max_train_minutes=60))
    print(val(best, "synthetic:val").summary_line())

One epoch: a progress bar over the training batches (losses, learning rate, images/s), then a
validation pass of the EMA weights at the full ``imgsz`` letterbox, exactly as inference runs
(:func:`val`), a row in ``results.csv``, ``last.pt`` (everything needed to resume) and
``best.pt`` when mAP50-95 improved.

Training samples (:class:`TrainSamples`) start from the same :func:`~yolo_edge.letterbox.letterbox`
as inference and are then augmented in input space (:mod:`yolo_edge.train.augment`). With
``train_crop`` the augmented ``imgsz`` image is rendered only inside a random ``train_crop``
window: objects keep their inference pixel scale and the fully convolutional network does
(imgsz / train_crop)² times less work per image.

``full_res_fraction`` trains the final part of the run on the whole ``imgsz`` image (decided at
epoch starts), so the last updates see the exact inference framing and untruncated large objects.

CPU: ``threads`` torch threads (2 by default). When the CPU is shared with other busy processes,
set ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported (``yolo-edge train`` does) or use
``threads=1``: spinning OpenMP threads made each step about 3x slower on 2 shared cores.

Learning rate: linear warmup, then cosine from ``lr0`` to ``lr0 * lrf``. The cosine runs on
training progress ``p = max(iterations done / planned, time used / max_train_minutes)``, so a
time-budgeted run anneals fully by its deadline whatever the epoch count says; the run stops
(after a final validation) when the budget is spent.

Checkpoints (all loadable with ``torch.load(weights_only=True)``):

* ``best.pt``: :func:`~yolo_edge.model.save_checkpoint` of the EMA weights with the best
  validation mAP50-95 (meta: epoch, metrics, imgsz, data).
* ``last.pt``: the same layout with the latest EMA weights plus a ``"train_state"`` dict
  (raw weights, optimizer, EMA counter, epoch, best fitness, elapsed time, the TrainConfig),
  so :func:`~yolo_edge.model.load_checkpoint` reads it too and ``resume`` continues from it.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn

from yolo_edge.deps import progress
from yolo_edge.errors import CheckpointError, YoloEdgeError
from yolo_edge.letterbox import letterbox, letterbox_batch, scale_boxes_to_input
from yolo_edge.model import YOLO, ModelConfig, load_checkpoint, load_state_dict_checked, save_checkpoint
from yolo_edge.model.checkpoint import FORMAT, read_checkpoint
from yolo_edge.detections import Detections
from yolo_edge.postprocess import dfl_expectation, flatten_feats, make_anchors, postprocess, postprocess_raw, sigmoid
from yolo_edge.spec import NmsSpec
from yolo_edge.train.augment import AugmentConfig, Augmenter
from yolo_edge.train.loss import DetectionLoss

# Validation NMS: low threshold so mAP sees the whole precision-recall curve.
VAL_NMS = NmsSpec(flavour="none", score_threshold=0.001, iou_threshold=0.6, max_det=300)  # as yolo-edge val


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in ``last.pt``; ``resume`` restores it)."""

    scale: str = "n"  # model scale n | s | m
    epochs: int = 30
    batch: int = 16
    imgsz: int = 640  # letterbox size (training base geometry and validation)
    train_crop: int | None = None  # train on random crops of this size of the augmented imgsz image
    full_res_fraction: float = 0.0  # with train_crop: the last this fraction of training uses full imgsz
    optimizer: str = "adamw"  # adamw | sgd
    lr0: float | None = None  # default 0.002 for AdamW, 0.01 for SGD
    lrf: float = 0.01  # final learning rate, as a fraction of lr0
    momentum: float = 0.937  # SGD momentum / AdamW beta1
    weight_decay: float = 5e-4  # on conv/linear weights only
    warmup_epochs: float = 1.0
    warmup_min_iters: int = 100
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0  # EMA decay ramps up as decay * (1 - exp(-updates / tau))
    grad_clip: float = 10.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    close_mosaic: int = 2  # no mosaic in the last this many epochs
    train_data: Any = "synthetic:train:5000"  # data spec string, or a dataset object
    val_data: Any = "synthetic:val"
    val_batch: int = 8
    val_every: int = 1  # validate every this many epochs (and always after the last)
    seed: int = 0
    out: str = "runs/train"
    workers: int = 0  # DataLoader worker processes (0: load in the training process)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = 2  # torch CPU threads (None: leave torch's default)
    max_train_minutes: float | None = None  # wall-clock budget, training and validation together
    resume: bool | str = False  # True: <out>/last.pt, or a path to a last.pt
    verbose: bool = True

    def __post_init__(self):
        for k in ("train_data", "val_data"):
            if isinstance(getattr(self, k), os.PathLike):
                setattr(self, k, os.fspath(getattr(self, k)))
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if self.imgsz % 32 or self.imgsz < 32:
            raise YoloEdgeError(f"imgsz must be a positive multiple of 32, got {self.imgsz}")
        for k in ("epochs", "batch", "val_batch", "val_every"):
            if int(getattr(self, k)) < 1:
                raise YoloEdgeError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.lr0 is not None and not self.lr0 > 0:
            raise YoloEdgeError(f"lr0 must be > 0, got {self.lr0}")
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise YoloEdgeError(f"max_train_minutes must be > 0, got {self.max_train_minutes}")
        if not 0.0 <= self.full_res_fraction <= 1.0:
            raise YoloEdgeError(f"full_res_fraction must be in [0, 1], got {self.full_res_fraction}")
        if self.train_crop is not None:
            if self.train_crop % 32 or not 32 <= self.train_crop <= self.imgsz:
                raise YoloEdgeError(f"train_crop must be a multiple of 32 in [32, imgsz], got {self.train_crop}")
            if self.train_crop == self.imgsz:
                self.train_crop = None
        if self.optimizer not in ("adamw", "sgd"):
            raise YoloEdgeError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.lr0 is None:
            self.lr0 = 0.002 if self.optimizer == "adamw" else 0.01
        if self.workers not in (0, 1, 2, 3, 4, 5, 6, 7, 8):
            raise YoloEdgeError(f"workers must be in 0..8, got {self.workers}")

    def to_dict(self) -> dict:
        """JSON/weights_only-safe form (dataset objects become their repr)."""
        d = dataclasses.asdict(self)
        for k in ("train_data", "val_data"):
            if not isinstance(d[k], str):
                d[k] = repr(getattr(self, k))
        return d


# ----------------------------------------------------------------------------- data


def open_dataset(spec):
    """A data spec string (``synthetic:train:N``, a folder, a COCO json, ...) or a dataset object."""
    if not isinstance(spec, str):
        return spec
    from yolo_edge.data import load_dataset

    return load_dataset(spec)


def _to_bgr_uint8(chw_rgb: np.ndarray) -> np.ndarray:
    """Letterbox output (3, H, W) float32 RGB [0, 1] -> (H, W, 3) uint8 BGR, exact (rounds)."""
    return cv2.convertScaleAbs(cv2.merge([chw_rgb[2], chw_rgb[1], chw_rgb[0]]), alpha=255.0)


class TrainSamples(torch.utils.data.Dataset):
    """Augmented training samples: ``ds[i] -> (image uint8 (3, h, w) RGB, targets float32 (n, 5))``
    with targets ``(class, x1, y1, x2, y2)`` in pixels of the returned image.

    Randomness comes from ``np.random.default_rng([seed, epoch, i])`` only, so a sample is the
    same in any worker and after a resume. Set ``epoch``, ``mosaic`` and ``crop`` before
    creating each epoch's iterator (workers get a copy).
    """

    def __init__(self, dataset, imgsz: int, crop: int | None, augment: AugmentConfig, seed: int = 0):
        self.dataset = dataset
        self.imgsz = int(imgsz)
        self.crop = crop
        self.augmenter = Augmenter(augment)
        self.seed = int(seed)
        self.epoch = 0
        self.mosaic = augment.mosaic > 0

    def __len__(self) -> int:
        return len(self.dataset)

    def base(self, i: int):
        """The letterboxed sample: (uint8 BGR (S, S, 3), boxes (N, 4) input px, classes (N,), content box)."""
        s = self.dataset[int(i)]
        chw, meta = letterbox(s.image, self.imgsz)
        return _to_bgr_uint8(chw), scale_boxes_to_input(s.xyxy, meta), s.class_ids, meta.content_box()

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        image, boxes, classes, content = self.base(i)
        extra = None
        if self.mosaic and self.augmenter.wants_mosaic(rng):
            extra = [self.base(j) for j in rng.integers(0, len(self), 3)]
        out_size = (self.crop, self.crop) if self.crop else None
        image, boxes, classes = self.augmenter(image, boxes, classes, rng, out_size=out_size, extra=extra,
                                               content=content)
        chw = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1))  # BGR HWC -> RGB CHW
        targets = np.concatenate([np.asarray(classes, np.float32)[:, None], boxes.astype(np.float32)], axis=1)
        return torch.from_numpy(chw), torch.from_numpy(targets.reshape(-1, 5))


def collate(batch):
    """-> images uint8 (B, 3, h, w), targets float32 (M, 6) rows (batch_idx, class, x1, y1, x2, y2)."""
    images = torch.stack([b[0] for b in batch])
    targets = [torch.cat([torch.full((len(t), 1), float(i)), t], dim=1) for i, (_, t) in enumerate(batch)]
    return images, torch.cat(targets) if targets else torch.zeros(0, 6)


# ----------------------------------------------------------------------------- model helpers


def select_device(device: str = "auto") -> torch.device:
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise YoloEdgeError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise YoloEdgeError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return dev


class ModelEMA:
    """Exponential moving average of a model's weights and buffers (kept in eval mode).

    decay_t = decay * (1 - exp(-t / tau)) so early updates follow the model closely.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        ema_f, model_f = [], []
        for e, m in zip(self.ema.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                ema_f.append(e)
                model_f.append(m.detach())
            else:
                e.copy_(m)
        torch._foreach_lerp_(ema_f, model_f, 1.0 - d)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Three groups: biases (no decay), norm weights (no decay), other weights (decay)."""
    bias, norm, decay = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias":
                bias.append(p)
            elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
                norm.append(p)
            else:
                decay.append(p)
    return [
        {"params": bias, "weight_decay": 0.0, "name": "bias"},
        {"params": norm, "weight_decay": 0.0, "name": "norm"},
        {"params": decay, "weight_decay": weight_decay, "name": "weights"},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr0, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr0, betas=(cfg.momentum, 0.999))


def cosine_factor(p: float, lrf: float) -> float:
    """Learning-rate factor at progress p in [0, 1]: 1 -> lrf along a half cosine."""
    p = min(max(p, 0.0), 1.0)
    return lrf + (1 - lrf) * 0.5 * (1 + math.cos(math.pi * p))


# ----------------------------------------------------------------------------- validation


def postprocess_capped(feats, strides, reg_max: int, nms: NmsSpec, max_candidates: int | None = 1000):
    """:func:`~yolo_edge.postprocess.postprocess_raw` with at most ``max_candidates`` (anchor, class)
    pairs per image going into NMS (the highest scores; ties by anchor). Same semantics otherwise.

    An undertrained model puts thousands of pairs above a 0.001 threshold, and the numpy NMS is
    quadratic in them (validation took 100 s instead of 20 s for 200 images); the pairs cut are
    the lowest-scoring ones, which barely move mAP with ``max_det`` 300.
    """
    if max_candidates is None:
        return postprocess_raw(feats, strides, reg_max, nms)
    flat = flatten_feats(feats)  # (B, A, 4*reg_max + C)
    centres, s = make_anchors([f.shape[2:] for f in feats], strides)
    thr = nms.score_threshold
    logit_thr = np.float32(np.log(thr / (1 - thr))) if 0 < thr < 1 else (-np.inf if thr <= 0 else np.inf)
    out = []
    for b in range(flat.shape[0]):
        cls = flat[b, :, 4 * reg_max :]  # (A, C) logits
        a_idx, c_idx = np.nonzero(cls >= logit_thr)
        if a_idx.size > max_candidates:
            top = np.argsort(-cls[a_idx, c_idx], kind="stable")[:max_candidates]
            a_idx, c_idx = a_idx[top], c_idx[top]
        rows, inverse = np.unique(a_idx, return_inverse=True)
        if rows.size == 0:
            out.append(Detections.empty())
            continue
        scores = np.zeros((rows.size, cls.shape[1]), np.float32)  # non-candidates score 0
        scores[inverse, c_idx] = sigmoid(cls[a_idx, c_idx])
        ltrb = dfl_expectation(flat[b, rows, : 4 * reg_max], reg_max) * s[rows, None]
        c = centres[rows]
        boxes = np.concatenate([c - ltrb[:, :2], c + ltrb[:, 2:]], axis=1)
        out.append(postprocess(boxes, scores, nms, anchor_ids=rows))
    return out


@torch.no_grad()
def val(model_or_path, data="synthetic:val", imgsz: int = 640, batch: int = 8, device: str = "auto",
        nms: NmsSpec = VAL_NMS, max_images: int | None = None, verbose: bool = True,
        max_candidates: int | None = 1000):
    """Validate a model (a :class:`YOLO` or a checkpoint path) on a dataset, exactly as inference:
    :func:`~yolo_edge.letterbox.letterbox_batch` at ``imgsz``, the raw forward, the numpy decode and
    NMS of :mod:`yolo_edge.postprocess` (at most ``max_candidates`` pairs per image into NMS, see
    :func:`postprocess_capped`; ``None`` for no cap), ``unletterbox`` back to source pixels, then
    COCO mAP with :class:`~yolo_edge.evaluate.DetectionEvaluator`. Returns its ``EvalResult``."""
    from yolo_edge.evaluate import DetectionEvaluator

    model = load_checkpoint(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    dataset = open_dataset(data)
    dev = select_device(device) if device != "auto" else next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(dataset) if max_images is None else min(len(dataset), int(max_images))
    ev = DetectionEvaluator(model.cfg.names)
    try:
        for start in progress(range(0, n, batch), desc="val", unit="batch", disable=not verbose):
            samples = [dataset[i] for i in range(start, min(start + batch, n))]
            x, metas = letterbox_batch([s.image for s in samples], imgsz)
            feats = model(torch.from_numpy(x).to(dev))
            feats = [f.float().cpu().numpy() for f in feats]
            dets = postprocess_capped(feats, model.cfg.strides, model.cfg.reg_max, nms, max_candidates)
            for s, d, meta in zip(samples, dets, metas):
                ev.update(d.unletterbox(meta), s.xyxy, s.class_ids, image_size=s.shape)
    finally:
        model.train(was_training)
    return ev.compute()


# ----------------------------------------------------------------------------- checkpoints


def _atomic_torch_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu")
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def save_last(path: Path, model: YOLO, ema: ModelEMA, optimizer, cfg: TrainConfig, epoch: int,
              best_fitness: float, elapsed: float, meta: dict) -> None:
    """``last.pt``: a regular checkpoint of the EMA weights plus the training state."""
    ckpt = {
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "state_dict": _cpu_state(ema.ema),
        "meta": dict(meta),
        "train_state": {
            "model": _cpu_state(model),
            "optimizer": _to_cpu(optimizer.state_dict()),
            "ema_updates": int(ema.updates),
            "epoch": int(epoch),  # epochs completed
            "best_fitness": float(best_fitness),
            "elapsed": float(elapsed),
            "train_config": cfg.to_dict(),
        },
    }
    _atomic_torch_save(ckpt, path)


def _fitness(result) -> float:
    v = float(result.map50_95)
    return v if math.isfinite(v) else 0.0


# ----------------------------------------------------------------------------- training


def _log(cfg: TrainConfig, msg: str) -> None:
    if cfg.verbose:
        print(msg, flush=True)


def _restore_config(cfg: TrainConfig) -> tuple[TrainConfig, dict, Path]:
    """Resume: the TrainConfig saved in last.pt, with this call's runtime settings and, when
    changed from the defaults, ``epochs`` and ``max_train_minutes``."""
    path = Path(cfg.out) / "last.pt" if cfg.resume is True else Path(cfg.resume)
    ckpt = read_checkpoint(path)
    state = ckpt.get("train_state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} has no training state to resume from (is it a best.pt?)")
    saved = dict(state["train_config"])
    defaults = TrainConfig()
    for k in ("epochs", "max_train_minutes"):
        if getattr(cfg, k) != getattr(defaults, k):
            saved[k] = getattr(cfg, k)
    for k in ("workers", "device", "threads", "verbose"):
        saved[k] = getattr(cfg, k)
    for k in ("train_data", "val_data"):  # dataset objects cannot be saved: take them from cfg
        if not isinstance(getattr(cfg, k), str):
            saved[k] = getattr(cfg, k)
    saved["out"] = str(path.parent)
    saved["resume"] = False
    return TrainConfig(**saved), ckpt, path


def train(cfg: TrainConfig) -> Path:
    """Train a model from ``cfg``; returns the path of ``best.pt``."""
    ckpt = None
    if cfg.resume:
        cfg, ckpt, resumed_from = _restore_config(cfg)
        _log(cfg, f"resuming from {resumed_from} (epoch {ckpt['train_state']['epoch']} done)")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = select_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    train_ds = open_dataset(cfg.train_data)
    val_ds = open_dataset(cfg.val_data)
    names = list(getattr(train_ds, "names", ()))
    if not names:
        raise YoloEdgeError("the training dataset has no class names")
    if len(train_ds) == 0:
        raise YoloEdgeError("the training dataset is empty")

    model = YOLO(ModelConfig(scale=cfg.scale, nc=len(names), names=names))
    if ckpt is not None:
        if ckpt["config"]["names"] != names:
            raise CheckpointError(f"resume: checkpoint classes {ckpt['config']['names']} differ from the data's {names}")
        load_state_dict_checked(model, ckpt["train_state"]["model"])
    model.to(device).train()
    model.to(memory_format=torch.channels_last)  # ~10-15 % faster convolutions on CPU (oneDNN)
    ema = ModelEMA(model, cfg.ema_decay, cfg.ema_tau)
    optimizer = build_optimizer(model, cfg)
    start_epoch, best_fitness, elapsed_before = 0, -1.0, 0.0
    if ckpt is not None:
        st = ckpt["train_state"]
        load_state_dict_checked(ema.ema, ckpt["state_dict"])
        ema.updates = int(st["ema_updates"])
        optimizer.load_state_dict(st["optimizer"])
        start_epoch, best_fitness, elapsed_before = int(st["epoch"]), float(st["best_fitness"]), float(st["elapsed"])
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", cfg.lr0)

    samples = TrainSamples(train_ds, cfg.imgsz, cfg.train_crop, cfg.augment, cfg.seed)
    nb = max(1, len(samples) // cfg.batch)  # batches per epoch (drop_last)
    total_iters = cfg.epochs * nb
    warmup_iters = max(round(cfg.warmup_epochs * nb), cfg.warmup_min_iters) if cfg.warmup_epochs > 0 else 0
    budget = cfg.max_train_minutes * 60.0 if cfg.max_train_minutes else None
    loss_fn = DetectionLoss(model.cfg)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    results_csv = out / "results.csv"
    if ckpt is None and results_csv.exists():
        results_csv.unlink()

    crop_txt = f", crops {cfg.train_crop}" if cfg.train_crop else ""
    _log(cfg, f"training YOLO-{cfg.scale} ({len(names)} classes) on {device}: {len(train_ds)} images, "
              f"{nb} batches of {cfg.batch} per epoch at imgsz {cfg.imgsz}{crop_txt}; "
              f"validation on {len(val_ds)} images" + (f"; budget {cfg.max_train_minutes:g} min" if budget else ""))

    t0 = time.time() - elapsed_before
    epoch_times: list[float] = []
    val_time = 0.0
    last_result = None
    it = start_epoch * nb
    stop = False
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        t_epoch = time.time()
        # epochs still to run, time budget included: decides when mosaic switches off
        left = cfg.epochs - epoch
        if budget and epoch_times:
            left = min(left, max(1, int((budget - (time.time() - t0)) / np.mean(epoch_times[-3:]))))
        samples.epoch = epoch
        samples.mosaic = cfg.augment.mosaic > 0 and left > cfg.close_mosaic
        p_now = it / max(total_iters, 1)
        if budget:
            p_now = max(p_now, (time.time() - t0) / budget)
        full_res = cfg.train_crop is not None and cfg.full_res_fraction > 0 and p_now >= 1 - cfg.full_res_fraction
        samples.crop = None if full_res else cfg.train_crop
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        loader = torch.utils.data.DataLoader(
            samples, batch_size=cfg.batch, shuffle=True, drop_last=len(samples) >= cfg.batch,
            num_workers=cfg.workers, collate_fn=collate, generator=gen, pin_memory=device.type == "cuda",
            persistent_workers=False, prefetch_factor=4 if cfg.workers else None,
        )
        model.train()
        mean = {"box": 0.0, "cls": 0.0, "dfl": 0.0}
        n_seen, n_img, t_first = 0, 0, time.time()
        bar = progress(loader, total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       leave=True, disable=not cfg.verbose)
        lr = cfg.lr0
        for images, targets in bar:
            # progress and learning rate
            p = it / max(total_iters, 1)
            if budget:
                p = max(p, (time.time() - t0) / budget)
            factor = cosine_factor(p, cfg.lrf)
            for g in optimizer.param_groups:
                lr_target = g["initial_lr"] * factor
                if it < warmup_iters:
                    w = it / warmup_iters
                    start = 0.1 if (cfg.optimizer == "sgd" and g["name"] == "bias") else 0.0
                    g["lr"] = start + (lr_target - start) * w
                    if cfg.optimizer == "sgd":
                        g["momentum"] = 0.8 + (cfg.momentum - 0.8) * w
                else:
                    g["lr"] = lr_target
            lr = optimizer.param_groups[-1]["lr"]

            x = images.to(device, non_blocking=True).float().div_(255.0)
            x = x.contiguous(memory_format=torch.channels_last)
            targets = targets.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                feats = model(x)
            loss, parts = loss_fn(feats, targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            ema.update(model)
            it += 1

            if not all(math.isfinite(v) for v in parts.values()):
                raise RuntimeError(f"loss is not finite at epoch {epoch + 1}, iteration {it}: {parts}")
            n_seen += 1
            n_img += len(images)
            for k in mean:
                mean[k] += (parts[k] - mean[k]) / n_seen
            if cfg.verbose and hasattr(bar, "set_postfix"):
                rate = n_img / max(time.time() - t_first, 1e-6)
                bar.set_postfix(box=f"{mean['box']:.3f}", cls=f"{mean['cls']:.3f}", dfl=f"{mean['dfl']:.3f}",
                                lr=f"{lr:.2e}", img_s=f"{rate:.1f}", refresh=False)
            if budget and time.time() - t0 + val_time * 1.1 + 5 >= budget:
                stop = True  # budget spent: validate this epoch's weights and finish
                break
        if hasattr(bar, "close"):
            bar.close()
        train_time = time.time() - t_epoch

        # validation of the EMA weights, as inference does it
        last_epoch = stop or epoch + 1 == cfg.epochs
        result = None
        if last_epoch or (epoch + 1) % max(cfg.val_every, 1) == 0:
            t_val = time.time()
            result = val(ema.ema, val_ds, cfg.imgsz, cfg.val_batch, verbose=False)
            val_time = time.time() - t_val
            last_result = result
        fitness = _fitness(result) if result is not None else -1.0
        improved = result is not None and fitness > best_fitness
        if improved:
            best_fitness = fitness
        elapsed = time.time() - t0
        meta = {"epoch": epoch + 1, "imgsz": cfg.imgsz, "train_data": cfg.to_dict()["train_data"],
                "train_crop": cfg.train_crop, "scale": cfg.scale}
        if result is not None:
            meta.update(map50_95=_json_num(result.map50_95), map50=_json_num(result.map50))
        save_last(out / "last.pt", model, ema, optimizer, cfg, epoch + 1, best_fitness, elapsed, meta)
        if improved or not (out / "best.pt").exists():
            save_checkpoint(out / "best.pt", ema.ema, **meta)
        epoch_times.append(time.time() - t_epoch)
        _append_csv(results_csv, {
            "epoch": epoch + 1, "minutes": round(elapsed / 60, 3), "train_s": round(train_time, 1),
            "val_s": round(val_time if result is not None else 0.0, 1), "images": n_img,
            "lr": f"{lr:.3e}", "box": round(mean["box"], 5), "cls": round(mean["cls"], 5),
            "dfl": round(mean["dfl"], 5), "mosaic": int(samples.mosaic), "crop": samples.crop or cfg.imgsz,
            "map50": _fmt(result.map50) if result is not None else "",
            "map50_95": _fmt(result.map50_95) if result is not None else "",
        })
        if result is not None:
            _log(cfg, f"epoch {epoch + 1}/{cfg.epochs}  box {mean['box']:.3f} cls {mean['cls']:.3f} "
                      f"dfl {mean['dfl']:.3f}  {result.summary_line()}  "
                      f"[{train_time:.0f}s train, {val_time:.0f}s val, {elapsed / 60:.1f} min]")
        if stop:
            _log(cfg, f"time budget of {cfg.max_train_minutes:g} min reached after epoch {epoch + 1}")
            break
    best = out / "best.pt"
    _log(cfg, f"done: best mAP50-95 {best_fitness:.4f} -> {best}" +
         (f"  (last: {last_result.summary_line()})" if last_result is not None else ""))
    return best


def _json_num(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _fmt(v) -> str:
    v = float(v)
    return f"{v:.5f}" if math.isfinite(v) else "nan"


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
