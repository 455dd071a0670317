"""Emotion label codes and names across data sets.

CK+ (Lucey et al. 2010) and BAUM-2 (Erdem et al. 2015) code emotions 0-7 in one
order, FER-2013 0-6 in another. Data sets combine through *names*, spelled as
FER-2013 spells them (CK+'s "anger" is "angry", "sadness" is "sad"), never through codes.
"""

from __future__ import annotations

from pathlib import Path

#: CK+ emotion codes 0-7 as CK+ names them (BAUM-2's ``emotion.txt`` uses the same codes).
CKPLUS_CODES = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
#: CK+ names -> the shared vocabulary (FER-2013's spelling, plus contempt).
TO_COMMON_NAME = {"anger": "angry", "sadness": "sad"}


def common_name(ckplus_name: str) -> str:
    """``"anger"`` -> ``"angry"``, ``"sadness"`` -> ``"sad"``; other names unchanged."""
    return TO_COMMON_NAME.get(ckplus_name, ckplus_name)


def read_emotion_code(path: Path) -> int:
    """The CK+ code 0-7 in an emotion file (CK+'s ``..._emotion.txt`` holds e.g. ``   3.0000000e+00``).

    Raises:
        ValueError: the file does not hold one whole number 0-7; the message names the file.
    """
    text = path.read_text().strip()
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}: expected one emotion code 0-7, found {text!r}") from None
    if not value.is_integer() or not 0 <= value < len(CKPLUS_CODES):
        raise ValueError(f"{path}: emotion code {text!r} is not one of 0-7")
    return int(value)
