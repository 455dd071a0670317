"""Temperature scaling (Guo et al. 2017): probabilities whose confidence matches their accuracy.

    python -m fer.calibration CKPT OUT.ckpt --data ../shared/data/fer2013/fer2013.csv.gz \
        [--ferplus ../shared/data/ferplus/fer2013new.csv] [--single] [--report DIR] [--overwrite]

Each face's test-time views have their logits divided by one temperature before their
softmax: ``T * H ** a``, ``H`` the normalised entropy of the face's untempered prediction
(:func:`fer.predictor.face_temperature`, after Balanya et al. 2022), so that sure and unsure
faces can be sharpened by different amounts; ``--single`` fits ``T`` alone (``a = 0``).
Both are fitted on the validation split (FER-2013 PublicTest, FER+ Valid) by minimising the
negative log-likelihood of the predictor's probabilities, and written into a copy of the
checkpoint (:func:`fer.checkpoint.write_temperature`), from where every path that loads the
model uses them: the recognizer, the web app and the ONNX graph. The most probable class of each
face stays what it was (for one view exactly; averaged views may swap near-ties). Reports
accuracy, expected calibration error (15 equal-width bins, torchmetrics'
``MulticlassCalibrationError``) and NLL on the validation and test splits before and
after, and draws reliability diagrams.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

from fer.checkpoint import CheckpointError, load_predictor, write_temperature
from fer.data import FER2013DataModule, FERPlusDataModule
from fer.face.crops import preprocess
from fer.predictor import ExpressionPredictor, calibrated, log_mean_softmax

#: Bins of the expected calibration error and of the reliability diagrams (Guo et al. 2017 use 15).
BINS = 15


@torch.no_grad()
def view_logits(predictor: ExpressionPredictor, faces: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Raw logits ``float32 (V, N, classes)`` of each test-time view of ``uint8 (N, C, S, S)`` faces."""
    out = []
    for k in range(0, len(faces), batch):
        views = predictor.views(preprocess(faces[k : k + batch]))
        out.append(torch.stack([predictor(v).float() for v in views]))
    return torch.cat(out, dim=1)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, entropy: bool = True) -> tuple[float, float]:
    """``(T, a)`` minimising the NLL of ``labels`` ``int64 (N,)`` under :func:`calibrated` for
    ``(V, N, classes)`` logits (L-BFGS on ``log T`` and ``a``); ``entropy=False``: ``a`` stays 0."""
    log_t, a = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=entropy)
    optimizer = torch.optim.LBFGS(
        [log_t, a] if entropy else [log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.nll_loss(calibrated(logits, log_t.exp(), a), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp()), float(a.detach())


def scores(log_proba: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy, expected calibration error (:data:`BINS` bins, L1) and NLL of log-probabilities."""
    p = log_proba.exp()
    ece = multiclass_calibration_error(p, labels, p.shape[1], n_bins=BINS, norm="l1")
    return {
        "accuracy": float((p.argmax(1) == labels).float().mean()),
        "ece": float(ece),
        "nll": float(F.nll_loss(log_proba, labels)),
    }


def reliability_figure(curves: dict[str, torch.Tensor], labels: torch.Tensor, title: str) -> Any:
    """A matplotlib figure of accuracy against confidence in :data:`BINS` bins, one line (with its ECE)
    per set of probabilities ``float (N, classes)`` of faces labelled ``int64 (N,)``; bins of under 10
    faces are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect calibration")
    edges = torch.linspace(0, 1, BINS + 1)
    for name, p in curves.items():
        confidence, predicted = p.max(1)
        bins = torch.bucketize(confidence, edges[1:-1], right=True)
        xs, ys = [], []
        for b in range(BINS):
            inside = bins == b
            if inside.sum() >= 10:  # a bin of fewer faces says little
                xs.append(float(confidence[inside].mean()))
                ys.append(float((predicted[inside] == labels[inside]).float().mean()))
        ece = float(multiclass_calibration_error(p, labels, p.shape[1], n_bins=BINS, norm="l1"))
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def splits(data: str, ferplus: str | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Validation and test faces ``uint8 (N, 1, 48, 48)`` and labels of FER-2013 (``data``, its CSV), or of
    FER+ where its ``fer2013new.csv`` is given (Valid and Test, majority labels)."""
    dm = FER2013DataModule(data) if ferplus is None else FERPlusDataModule(labels=ferplus, path=data)
    dm.setup()
    return {name: dm.splits[name].tensors for name in ("val", "test")}


def calibrate(
    source: str | Path, data: str, ferplus: str | None = None, entropy: bool = True
) -> tuple[tuple[float, float], dict[str, Any], dict]:
    """Fit a checkpoint's temperature on its validation split (see :func:`fit_temperature`): ``(T, a)``,
    the scores before and after on both splits, and the probabilities of the test split before and
    after (for the diagrams).

    Raises:
        ValueError: a FER+ model (8 classes with contempt) without ``ferplus`` labels.
    """
    predictor, _ = load_predictor(source, views=None)
    predictor.temperature, predictor.entropy_exponent = 1.0, 0.0  # fitted from the raw logits
    eight_classes = "contempt" in predictor.class_names  # FER+'s
    if eight_classes and ferplus is None:
        raise ValueError("an 8-class FER+ model: give --ferplus fer2013new.csv")
    faces = splits(data, ferplus if eight_classes else None)
    logits = {name: (view_logits(predictor, x), y) for name, (x, y) in faces.items()}
    t, a = fit_temperature(*logits["val"], entropy=entropy)
    report = {
        name: {"before": scores(log_mean_softmax(z, 1.0), y), "after": scores(calibrated(z, t, a), y)}
        for name, (z, y) in logits.items()
    }
    z, y = logits["test"]
    fitted = f"T = {t:.2f}" + (f" H^{a:.2f}" if a else "")
    curves = {"as trained": log_mean_softmax(z, 1.0).exp(), fitted: calibrated(z, t, a).exp()}
    return (t, a), report, {"curves": curves, "labels": y}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a checkpoint written by train.py (full or slim)")
    parser.add_argument("target", type=Path, help="the calibrated copy to write")
    parser.add_argument("--data", required=True, help="FER-2013's official CSV")
    parser.add_argument("--ferplus", help="FER+'s fer2013new.csv, for an 8-class FER+ model")
    parser.add_argument("--single", action="store_true", help="one temperature for every face (no entropy term)")
    parser.add_argument("--report", type=Path, help="folder for calibration.json and reliability.png")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target")
    args = parser.parse_args(argv)
    if args.target.exists() and not args.overwrite:
        print(f"error: {args.target} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        (t, a), report, diagram = calibrate(args.source, args.data, args.ferplus, entropy=not args.single)
        write_temperature(args.source, args.target, t, a, overwrite=True)
    except (FileNotFoundError, CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    fitted = {"temperature": t, "entropy_exponent": a}
    print(json.dumps({k: round(v, 4) for k, v in fitted.items()} | report, indent=1))
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "calibration.json").write_text(json.dumps(fitted | report, indent=1))
        fig = reliability_figure(diagram["curves"], diagram["labels"], f"{args.source.name}, test split")
        fig.savefig(args.report / "reliability.png", dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
