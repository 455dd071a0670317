"""BlazeFace (Bazarevsky et al. 2019) around its shipped ONNX graph, with preparation and decoding in NumPy/OpenCV.

The network sees a fixed square (128 px front-camera model, 256 px full-range model);
everything around it (shrinking the frame, anchor decoding, the weighted non-maximum
suppression of the paper) is a few array operations here, so a detection costs the
network and little more. The boxes are face-alignment's (same preparation, same decoding,
same blending; tested to 0.5 px), with the frame padded to a square below and right so that
faces anywhere in a wide frame are found.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

#: Non-maximum suppression: detections overlapping the best one by more than this IoU are blended into it.
SUPPRESSION_IOU = 0.3
#: Raw scores are clipped to +-this before the sigmoid (MediaPipe's ``score_clipping_thresh``).
SCORE_CLIP = 100.0


class BlazeFaceOnnx:
    """One BlazeFace model run by onnxruntime on BGR frames.

    Args:
        graph: the ONNX file (input ``image`` float ``(B, 3, S, S)`` in [-1, 1]; outputs raw
            ``boxes (B, 896, 16)`` and ``scores (B, 896, 1)``).
        anchors: the model's ``(896, 4)`` anchors ``(x_centre, y_centre, w, h)``, a fraction of S.
        min_score: detections whose sigmoid score is below this are dropped.
        threads: onnxruntime's intra-op threads.

    Raises:
        ValueError: the graph's input is not a square.
    """

    def __init__(self, graph: str | Path, anchors: np.ndarray, min_score: float = 0.5, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        if shape[2] != shape[3] or not isinstance(shape[2], int):
            raise ValueError(f"{graph}: BlazeFace's input must be a fixed square, not {shape}")
        self.side, self.anchors, self.min_score = shape[2], anchors.astype(np.float32), min_score

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        """Faces of a BGR ``uint8 (H, W, 3)`` frame: ``float32 (n, 5)`` rows ``x1, y1, x2, y2`` (pixels,
        clipped to the frame) and score, highest score first."""
        h, w = image_bgr.shape[:2]
        side = max(h, w)
        scale = self.side / side
        # the frame padded below and right only as far as its last shrunk row and column reach, so the
        # shrunk pixels are those of the whole padded square (face-alignment's input) at less cost
        rows, cols = (min(side, int(np.ceil(np.ceil(n * scale) / scale))) for n in (h, w))
        padded = cv2.copyMakeBorder(image_bgr, 0, rows - h, 0, cols - w, cv2.BORDER_CONSTANT, value=0)
        small = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        square = np.zeros((self.side, self.side, 3), np.float32)
        square[: small.shape[0], : small.shape[1]] = small[: self.side, : self.side, ::-1]
        x = (square / 127.5 - 1.0).transpose(2, 0, 1)[None]
        raw_boxes, raw_scores = self.session.run(None, {"image": x})
        faces = self.decode(raw_boxes[0], raw_scores[0, :, 0])
        faces[:, :4] = np.clip(faces[:, :4] * side, 0, [w, h, w, h])
        return faces

    def decode(self, raw_boxes: np.ndarray, raw_scores: np.ndarray) -> np.ndarray:
        """Boxes of one image's raw outputs ``(896, 16)`` and ``(896,)``: ``float32 (n, 5)`` rows
        ``x1, y1, x2, y2`` (a fraction of S) and score, after blending overlapping detections."""
        scores = 1 / (1 + np.exp(-np.clip(raw_scores.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
        keep = scores >= self.min_score
        raw, anchors = raw_boxes[keep, :4] / self.side, self.anchors[keep]
        centre = raw[:, :2] * anchors[:, 2:] + anchors[:, :2]
        half = raw[:, 2:] * anchors[:, 2:] / 2
        return blend_overlapping(np.concatenate([centre - half, centre + half], axis=1), scores[keep])


def blend_overlapping(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """BlazeFace's weighted non-maximum suppression: from the best remaining detection, every
    detection overlapping it by IoU > :data:`SUPPRESSION_IOU` is merged into one box, their mean
    weighted by score, with their mean score (face-alignment's variant of MediaPipe's).

    Args:
        boxes: ``(n, 4)`` ``x1, y1, x2, y2``. scores: ``(n,)``.

    Returns:
        ``float32 (m, 5)`` boxes and scores, in the order they were taken (highest first).
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    remaining, faces = np.arange(len(boxes)), []
    while len(remaining):
        first = boxes[remaining[0]]
        others = boxes[remaining]
        sides = np.minimum(first[2:], others[:, 2:]) - np.maximum(first[:2], others[:, :2])
        inter = np.prod(np.clip(sides, 0, None), axis=1)
        iou = inter / (areas[remaining[0]] + areas[remaining] - inter)
        overlapping, remaining = remaining[iou > SUPPRESSION_IOU], remaining[iou <= SUPPRESSION_IOU]
        if len(overlapping) > 1:
            weights = scores[overlapping]
            box = (boxes[overlapping] * weights[:, None]).sum(0) / weights.sum()
            faces.append([*box, weights.mean()])
        else:
            faces.append([*first, scores[overlapping[0]]])
    return np.asarray(faces, np.float32).reshape(-1, 5)
