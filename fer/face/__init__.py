"""Face geometry shared by data and inference: detectors, 68 iBUG landmarks, crops and alignment."""
