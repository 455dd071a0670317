"""Inference: the recognizer (detect, crop, classify in one batch, track) and the realtime loop around it."""
