"""The promotion gate: a servable artifact, absolute thresholds, and no regression against the champion.

``decide`` and ``check_canary`` are pure. The comparison uses the champion's metrics on the candidate's own
evaluation set whenever the champion can be re-scored on it (same feature extractor), so
both models are judged on identical images: those of the set the champion was not trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# settings that change the evaluation features: a champion is re-scored only if all are equal
FEATURE_SETTINGS = ("backbone", "image_size", "feature_layers", "crop_to_ink", "weights", "test_views")


@dataclass(frozen=True)
class GateThresholds:
    min_accuracy: float
    min_f1: float
    max_regression: float

    @classmethod
    def from_settings(cls, settings) -> "GateThresholds":
        return cls(settings.min_accuracy, settings.min_f1, settings.max_regression)


@dataclass
class GateDecision:
    promoted: bool
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CanaryCheck:
    """How the saved pipeline, in its own process, scored the canary against evaluate's own predictions."""

    images: int
    problems: tuple[str, ...]
    tolerance: float

    def reason(self) -> str:
        if not self.problems:
            return (f"the saved pipeline, loaded in its own process, gave evaluate's digit for all {self.images} "
                    f"canary images, every probability within {self.tolerance:g}")
        shown = "; ".join(self.problems[:10]) + (f"; and {len(self.problems) - 10} more" if len(self.problems) > 10 else "")
        return f"the saved pipeline is not servable: {shown}"


def check_canary(canary: dict, evaluated: dict[str, tuple[int, list[float]]], tolerance: float) -> CanaryCheck:
    """Compare ``canary.json`` (the saved pipeline's scores, or its error) with evaluate's digit and
    probabilities of the same images."""
    if canary.get("error"):
        return CanaryCheck(0, (f"it could not be loaded or run ({canary['error']})",), tolerance)
    scores = canary.get("scores") or {}
    if not scores:
        return CanaryCheck(0, ("it scored no canary image",), tolerance)
    problems = []
    for image_id, served in sorted(scores.items()):
        if image_id not in evaluated:
            problems.append(f"{image_id} is not among evaluate's images")
            continue
        digit, probability = evaluated[image_id]
        difference = max(abs(a - b) for a, b in zip(served["probability"], probability))
        if served["digit"] != digit:
            problems.append(f"{image_id} got digit {served['digit']}, evaluate's {digit}")
        elif len(served["probability"]) != len(probability) or difference > tolerance:
            problems.append(f"{image_id}: probabilities differ by {difference:.2g} (tolerance {tolerance:g})")
    return CanaryCheck(len(scores), tuple(problems), tolerance)


def decide(candidate: dict, champion: dict | None, thresholds: GateThresholds, canary: CanaryCheck,
           compared: dict | None = None) -> GateDecision:
    """Promote only if every check passes; the reasons list each check's outcome either way.

    ``candidate`` holds the metrics (``accuracy``, ``f1``) the minimums apply to; ``champion`` the
    champion's on the same images, or on ``compared``'s: the candidate's metrics on the part of its
    evaluation set the champion was not trained on. ``champion`` is None when no model is serving yet.
    """
    reasons, passed = [canary.reason()], not canary.problems
    for metric, minimum in (("accuracy", thresholds.min_accuracy), ("f1", thresholds.min_f1)):
        value = candidate[metric]
        if value < minimum:
            passed = False
            reasons.append(f"{metric} {value:.4f} is below the minimum {minimum:.4f}")
        else:
            reasons.append(f"{metric} {value:.4f} meets the minimum {minimum:.4f}")
    if champion is None:
        reasons.append("no champion yet")
    else:
        candidate = compared or candidate
        for metric in ("accuracy", "f1"):
            drop = round(champion[metric] - candidate[metric], 9)  # 0.95 - 0.94 is 0.010000000000000009
            if drop > thresholds.max_regression:
                passed = False
                reasons.append(
                    f"{metric} {candidate[metric]:.4f} regresses {drop:.4f} from the champion's "
                    f"{champion[metric]:.4f} (tolerance {thresholds.max_regression:.4f})"
                )
            else:
                reasons.append(
                    f"{metric} {candidate[metric]:.4f} vs champion {champion[metric]:.4f}: within tolerance "
                    f"{thresholds.max_regression:.4f}"
                )
    return GateDecision(passed, reasons)


def feature_signature(settings: dict[str, Any], featurizer) -> dict:
    """What must match for a model to score another run's evaluation features: the settings that
    shape them, and what they resolved to (``feature_layers=auto`` and ``image_size=0`` can change
    meaning, a weights file can be replaced) with the code and libraries that computed them."""
    resolved = {"layers": list(featurizer.layers), "image_px": featurizer.image_size,
                "weights_sha256": featurizer.weights_sha256, "code": featurizer.code}
    return {**{k: settings.get(k) for k in FEATURE_SETTINGS}, **resolved}
