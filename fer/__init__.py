"""fer: facial expression recognition with PyTorch Lightning and Hydra."""

import os

# onnxruntime (BlazeFace, backend=onnxruntime) keeps a telemetry store and device id in the user's
# cache unless told not to before it starts; an offline recognizer sends and stores nothing.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
