"""Live quality: what a version answered, joined with the outcomes users reported for those requests.

Feedback names a request by its ``X-Request-Id``; the prediction log holds what the version answered.
A request is judged on its first row (feedback is one outcome per request). Labels are compared as
numbers when both sides are numbers (``1`` and ``"1.0"`` agree), else as text; a classifier that answers
class indices (``metadata.classes``) is read through its classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

PREDICTION_OUTPUTS = ("predict", "label", "labels", "prediction", "output_label")


def prediction_output(outputs: Mapping[str, Any]) -> str | None:
    """The output that holds a row's prediction: a conventional name, else the first output."""
    for name in PREDICTION_OUTPUTS:
        if name in outputs:
            return name
    return next(iter(outputs), None)


def first_value(value: Any) -> Any:
    """The first row's scalar of a (nested) list, or the value itself."""
    while isinstance(value, list):
        if not value:
            return None
        value = value[0]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _as_label(predicted: Any, classes: Sequence[Any] | None) -> str:
    if classes and isinstance(predicted, int | float) and float(predicted).is_integer():
        index = int(predicted)
        if 0 <= index < len(classes):
            return str(classes[index])
    number = _number(predicted)
    return str(int(number)) if number is not None and number.is_integer() else str(predicted)


def _normal(label: str) -> str:
    number = _number(label)
    return str(int(number)) if number is not None and number.is_integer() else label


def classification(pairs: Sequence[tuple[Any, str]], classes: Sequence[Any] | None = None) -> dict[str, Any]:
    """Accuracy and macro F1 of ``(predicted, label)`` pairs."""
    predicted = [_as_label(p, classes) for p, _ in pairs]
    actual = [_normal(label) for _, label in pairs]
    correct = sum(p == a for p, a in zip(predicted, actual, strict=True))
    f1s = []
    for label in sorted(set(predicted) | set(actual)):
        tp = sum(p == label and a == label for p, a in zip(predicted, actual, strict=True))
        fp = sum(p == label and a != label for p, a in zip(predicted, actual, strict=True))
        fn = sum(p != label and a == label for p, a in zip(predicted, actual, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {
        "task": "classification",
        "feedback": len(pairs),
        "accuracy": correct / len(pairs) if pairs else None,
        "f1": sum(f1s) / len(f1s) if f1s else None,
    }


def regression(pairs: Sequence[tuple[Any, float]]) -> dict[str, Any]:
    """MAE and RMSE of ``(predicted, value)`` pairs (predictions that are not numbers are left out)."""
    errors = [p - v for p, v in ((_number(p), v) for p, v in pairs) if p is not None and math.isfinite(p)]
    return {
        "task": "regression",
        "feedback": len(errors),
        "mae": sum(abs(e) for e in errors) / len(errors) if errors else None,
        "rmse": math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else None,
    }
