"""Is a dataset fit for a model? Checked before any evaluation, calibration or training starts.

:func:`check_dataset` is what ``val``, ``train`` and ``export --int8 --val`` call on their data:

* an unlabelled source (image folder, video) where labels are needed is an error;
* class ids must be below the model's class count. Names from a names file must match the model's
  count; without a names file the classes are just ids, and a dataset in which only some of the
  model's classes occur (78 of the 80 COCO classes) is valid;
* bad labels (wrong field count, unknown class, negative size, box outside the image, ...) are
  counted and skipped with a warning that says how many labels were dropped and shows the first
  problems; ``strict`` makes them an error.
"""

from __future__ import annotations

from ..errors import DatasetError

# problem kinds that drop one label line (the others concern whole images or files)
LABEL_KINDS = ("field_count", "not_numeric", "unknown_class", "out_of_range", "non_positive_size", "malformed")


def is_labelled(ds) -> bool:
    return bool(getattr(ds, "names", ())) or getattr(ds, "labelled", False)


def dropped_labels(summary) -> int:
    return sum(summary.counts[k] for k in LABEL_KINDS)


def check_classes(ds, model_names, what: str = "dataset", drop: bool = False) -> None:
    """Class ids of ``ds`` against a model with ``model_names``.

    Raises :class:`DatasetError` when the dataset's own class names differ in number from the model's,
    or (``drop=False``) when ids without names go past the model's count. With ``drop=True`` such
    labels are removed and counted as ``unknown_class`` problems (readers that support it)."""
    nc = len(model_names or ())
    names = tuple(getattr(ds, "names", ()))
    if not nc or not names:
        return
    ids_only = tuple(str(i) for i in range(len(names)))  # what a reader without a names file makes up
    if getattr(ds, "names_inferred", names == ids_only):  # no names file: the classes are just ids
        if len(names) <= nc:
            ds.names = tuple(model_names)  # ids below the model's count are valid, present or not
            return
        if drop and hasattr(ds, "restrict_classes"):
            ds.restrict_classes(nc)
            ds.names = tuple(model_names)
            return
        raise DatasetError(f"{what} has labels with class ids up to {len(names) - 1}, but the model has {nc} classes "
                           f"(0..{nc - 1}): use the dataset the model was trained for, or fix the labels "
                           "(yolo-edge data check DATA)")
    if len(names) != nc:
        shown = ", ".join(names[:5]) + ("…" if len(names) > 5 else "")
        raise DatasetError(f"the model has {nc} classes but {what} names {len(names)} ({shown}): use the dataset "
                           "the model was trained for, or fix its names file")


def check_dataset(ds, model_names=(), *, strict: bool = False, what: str = "dataset",
                  need_labels: bool = True, drop_unknown: bool = True, max_shown: int = 3) -> list[str]:
    """Check ``ds`` for a model with ``model_names``; return warning lines (empty when all is well).

    Raises :class:`DatasetError` for an unlabelled dataset (``need_labels``), mismatched classes, or
    (``strict``) any bad label, naming the first one and how to see them all."""
    source = getattr(getattr(ds, "summary", None), "source", "") or what
    if need_labels and not is_labelled(ds):
        raise DatasetError(f"{source} has no labels, so {what} cannot be scored: give a labelled dataset "
                           "(a YOLO dir with labels/, a COCO json, synthetic:val)")
    check_classes(ds, model_names, what=f"{what} {source}", drop=drop_unknown and not strict)
    summary = getattr(ds, "summary", None)
    if summary is None or summary.ok:
        return []
    from .base import PROBLEM_KINDS

    counts = {k: summary.counts[k] for k in PROBLEM_KINDS if summary.counts[k] and k != "image_without_label"}
    if not counts:
        return []
    n_labels = dropped_labels(summary)
    kinds = ", ".join(f"{v} {k}" for k, v in counts.items())
    issues = [i for i in summary.issues if not i.message.startswith("no label file")]
    if strict:
        raise DatasetError(f"{source}: {sum(counts.values())} problem(s) ({kinds}), first: {issues[0]}; see them all "
                           f"with: yolo-edge data check {source} (without --strict they are skipped with a warning)")
    lines = [f"warning: {source}: {n_labels} label(s) dropped, {sum(counts.values())} problem(s) ({kinds}); "
             f"{summary.n_images} images and {summary.n_boxes} boxes kept (--strict to fail instead)"]
    lines += [f"warning:   {i}" for i in issues[:max_shown]]
    if len(issues) > max_shown:
        lines.append(f"warning:   ... and {len(issues) - max_shown} more: yolo-edge data check {source}")
    return lines
