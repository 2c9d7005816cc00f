import numpy as np
import pytest

from numtaflow.evaluation import compute_metrics, confused_pairs, confusion_png, roc_auc_ovr
from numtaflow.gating import CanaryCheck, GateThresholds, check_canary, decide, feature_signature


def one_hot(labels, confidence=0.9):
    probabilities = np.full((len(labels), 10), (1 - confidence) / 9)
    probabilities[np.arange(len(labels)), labels] = confidence
    return probabilities


def test_metrics_against_hand_computed_values():
    y_true = [0, 0, 1, 1]
    predicted = [0, 1, 1, 1]
    metrics = compute_metrics(y_true, one_hot(predicted))
    assert metrics["accuracy"] == 0.75
    # class 0: precision 1, recall 0.5, f1 2/3; class 1: precision 2/3, recall 1, f1 0.8; equal support
    assert metrics["precision"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-4)
    assert metrics["recall"] == 0.75
    assert metrics["f1"] == pytest.approx((2 / 3 + 0.8) / 2, abs=1e-4)
    assert metrics["per_class"]["0"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert metrics["confusion_matrix"][0][:2] == [1, 1] and metrics["confusion_matrix"][1][:2] == [0, 2]


def test_metrics_match_values_counted_from_the_predictions():
    """Per-class and support-weighted figures counted directly, with a class that is never
    predicted (precision 0, not an error) and one absent from the labels (support 0)."""
    rng = np.random.default_rng(7)
    y_true = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8], size=300)
    right = (rng.random(300) < 0.7) & (y_true != 8)
    predicted = np.where(right, y_true, rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 9], size=300))
    metrics = compute_metrics(y_true, one_hot(predicted))
    counts = np.bincount(y_true, minlength=10)
    expected = {}
    for digit in range(10):
        hits = np.sum((y_true == digit) & (predicted == digit))
        precision = hits / max(np.sum(predicted == digit), 1)
        recall = hits / max(counts[digit], 1)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        expected[digit] = (precision, recall, f1)
        row = metrics["per_class"][str(digit)]
        assert row["support"] == counts[digit]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((precision, recall, f1), abs=5e-5)
        assert metrics["confusion_matrix"][digit] == np.bincount(predicted[y_true == digit], minlength=10).tolist()
    assert metrics["per_class"]["8"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": counts[8]}
    assert metrics["per_class"]["9"]["support"] == 0
    weighted = np.average([expected[d] for d in range(10)], axis=0, weights=counts)
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == pytest.approx(tuple(weighted), abs=5e-5)
    assert metrics["accuracy"] == pytest.approx(np.mean(y_true == predicted), abs=5e-5)
    assert metrics["n"] == 300


def test_roc_auc_uses_probabilities_not_hard_predictions():
    y_true = np.array([0, 0, 1, 1])
    probabilities = np.zeros((4, 10))
    # every hard prediction is class 0, but the ranking of class-1 probability is perfect
    probabilities[:, 0] = [0.9, 0.8, 0.7, 0.6]
    probabilities[:, 1] = [0.05, 0.1, 0.2, 0.3]
    assert roc_auc_ovr(y_true, probabilities) == 1.0
    assert compute_metrics(y_true, probabilities)["accuracy"] == 0.5


def test_roc_auc_skips_classes_absent_from_a_small_holdout():
    assert roc_auc_ovr(np.array([3, 3]), one_hot([3, 3])) is None
    assert roc_auc_ovr(np.array([3, 4]), one_hot([3, 4])) == 1.0


def test_confusion_png_is_an_image():
    assert confusion_png([[3, 1], [0, 4]], "t").startswith(b"\x89PNG")


THRESHOLDS = GateThresholds(min_accuracy=0.85, min_f1=0.85, max_regression=0.01)
SERVABLE = CanaryCheck(images=20, problems=(), tolerance=1e-4)


def test_gate_promotes_first_good_model():
    decision = decide({"accuracy": 0.9, "f1": 0.9}, None, THRESHOLDS, SERVABLE)
    assert decision.promoted and "no champion yet" in decision.reasons


def test_gate_rejects_below_threshold_and_says_why():
    decision = decide({"accuracy": 0.80, "f1": 0.9}, None, THRESHOLDS, SERVABLE)
    assert not decision.promoted
    assert "accuracy 0.8000 is below the minimum 0.8500" in decision.reasons


def test_gate_rejects_regression_beyond_tolerance_only():
    champion = {"accuracy": 0.92, "f1": 0.92}
    assert decide({"accuracy": 0.915, "f1": 0.915}, champion, THRESHOLDS, SERVABLE).promoted
    worse = decide({"accuracy": 0.90, "f1": 0.915}, champion, THRESHOLDS, SERVABLE)
    assert not worse.promoted
    assert any("regresses 0.0200" in reason for reason in worse.reasons)


def test_a_drop_of_exactly_the_tolerance_passes_whatever_the_float_noise():
    tolerance = THRESHOLDS.max_regression
    for hundredths in range(86, 100):  # 0.95 - 0.94 is 0.010000000000000009 in binary floating point
        champion = {"accuracy": hundredths / 100, "f1": hundredths / 100}
        at_tolerance = {metric: value - tolerance for metric, value in champion.items()}
        at_tolerance = {metric: float(f"{value:.4f}") for metric, value in at_tolerance.items()}
        assert decide(at_tolerance, champion, THRESHOLDS, SERVABLE).promoted, champion


EVALUATED = {"a.png": (3, [0.1, 0.9]), "b.png": (0, [0.8, 0.2])}


def test_canary_agreeing_within_tolerance_is_servable():
    canary = {"error": None, "scores": {"a.png": {"digit": 3, "probability": [0.10004, 0.89996]},
                                        "b.png": {"digit": 0, "probability": [0.8, 0.2]}}}
    check = check_canary(canary, EVALUATED, 1e-4)
    assert check.problems == () and check.images == 2
    assert "all 2 canary images" in check.reason()


def test_canary_names_each_image_that_disagrees():
    canary = {"error": None, "scores": {"a.png": {"digit": 0, "probability": [0.6, 0.4]},
                                        "b.png": {"digit": 0, "probability": [0.79, 0.21]},
                                        "c.png": {"digit": 1, "probability": [0.0, 1.0]}}}
    check = check_canary(canary, EVALUATED, 1e-4)
    assert check.problems == ("a.png got digit 0, evaluate's 3", "b.png: probabilities differ by 0.01 (tolerance 0.0001)",
                              "c.png is not among evaluate's images")
    decision = decide({"accuracy": 0.99, "f1": 0.99}, None, THRESHOLDS, check)
    assert not decision.promoted
    assert decision.reasons[0].startswith("the saved pipeline is not servable: a.png got digit 0")


def test_a_pipeline_that_cannot_load_is_not_promoted():
    check = check_canary({"error": "AnalysisException: Path does not exist: .../pipeline/stages", "scores": {}},
                         EVALUATED, 1e-4)
    decision = decide({"accuracy": 0.99, "f1": 0.99}, None, THRESHOLDS, check)
    assert not decision.promoted and "could not be loaded or run (AnalysisException: Path does not exist" in decision.reasons[0]
    assert check_canary({"error": None, "scores": {}}, EVALUATED, 1e-4).problems == ("it scored no canary image",)


def test_misclassified_examples_are_chosen_per_pair_in_id_order():
    import pandas as pd

    from numtaflow.evaluation import misclassified_ids, misclassified_png
    from tests.conftest import digit_png

    predictions = pd.DataFrame({"image_id": ["d.png", "a.png", "c.png", "b.png", "e.png"],
                                "label": [5, 5, 5, 3, 3], "digit": [6, 6, 5, 8, 3]})
    pairs = confused_pairs([[0] * 10 for _ in range(3)] + [[0] * 8 + [1, 0]] + [[0] * 10] + [[0] * 6 + [2] + [0] * 3])
    assert pairs == [{"true": 5, "predicted": 6, "count": 2}, {"true": 3, "predicted": 8, "count": 1}]
    assert misclassified_ids(predictions, pairs, per_pair=6) == [["a.png", "d.png"], ["b.png"]]
    assert misclassified_ids(predictions, pairs, per_pair=1) == [["a.png"], ["b.png"]]
    png = misclassified_png([(pairs[0], [digit_png(5), digit_png(5, seed=1)]), (pairs[1], [digit_png(3)])], "t")
    assert png.startswith(b"\x89PNG") and misclassified_png([], "none").startswith(b"\x89PNG")


def test_a_champion_is_re_scored_only_on_features_of_the_same_resolved_featurizer():
    from numtaflow.contracts import Featurizer

    settings = {"backbone": "MobileNetV2", "image_size": 0, "feature_layers": "auto", "crop_to_ink": True,
                "weights": "imagenet", "test_views": 2}
    made = Featurizer(backbone="MobileNetV2", image_size=128, layers=["out_relu"], weights="imagenet",
                      weights_sha256="aaa", code="c1")
    same = feature_signature(settings, made)
    assert feature_signature(dict(settings), made.model_copy()) == same
    for change in ({"image_size": 224}, {"weights_sha256": "bbb"}, {"code": "c2"}, {"layers": ["block_16_project"]}):
        assert feature_signature(settings, made.model_copy(update=change)) != same, change


def test_the_minimums_apply_to_the_whole_set_and_the_comparison_to_the_images_both_are_judged_on():
    champion = {"accuracy": 0.95, "f1": 0.95}
    whole, compared = {"accuracy": 0.90, "f1": 0.90}, {"accuracy": 0.95, "f1": 0.95}
    assert not decide(whole, champion, THRESHOLDS, SERVABLE).promoted
    decision = decide(whole, champion, THRESHOLDS, SERVABLE, compared)
    assert decision.promoted and "accuracy 0.9000 meets the minimum 0.8500" in decision.reasons
    assert "accuracy 0.9500 vs champion 0.9500: within tolerance 0.0100" in decision.reasons


def predictions(digits: dict[str, int]):
    """Evaluation rows as evaluate reads them: every image's label is the digit of its name."""
    import pandas as pd

    return pd.DataFrame({"image_id": list(digits), "label": [int(name[1]) for name in digits],
                         "digit": list(digits.values()), "p": [one_hot([d])[0] for d in digits.values()]})


CONTENT = {"d0.png": "h0", "d1.png": "h1", "d2.png": "h2", "d3.png": "h3"}
CHAMPION_ROWS = predictions({"d0.png": 0, "d1.png": 1, "d2.png": 2, "d3.png": 3})  # right on all four
CANDIDATE_ROWS = predictions({"d0.png": 0, "d1.png": 7, "d2.png": 2, "d3.png": 3})  # wrong on d1


def test_the_champion_is_never_judged_on_images_it_was_trained_on():
    from numtaflow.steps.evaluate import on_unseen_images

    champion, candidate, how = on_unseen_images(CANDIDATE_ROWS, CHAMPION_ROWS, CONTENT, frozenset({"h1", "other"}))
    assert (champion["n"], champion["accuracy"]) == (3, 1.0)
    assert (candidate["n"], candidate["accuracy"]) == (3, 1.0)  # d1 left out of both
    assert "the 3 of this run's 4 evaluation images it was not trained on (the other 1 were" in how


@pytest.mark.parametrize("trained_on, said", [
    (frozenset({"other"}), "none of which it was trained on"),
    (None, "its training images are not on record"),
])
def test_without_shared_images_the_champion_is_judged_on_the_whole_set(trained_on, said):
    from numtaflow.steps.evaluate import on_unseen_images

    champion, candidate, how = on_unseen_images(CANDIDATE_ROWS, CHAMPION_ROWS, CONTENT, trained_on)
    assert (champion["n"], champion["accuracy"], candidate) == (4, 1.0, None) and said in how


@pytest.mark.parametrize("trained_on", [frozenset({"h0", "h1", "h2"}), frozenset(CONTENT.values())])
def test_too_few_unseen_images_leave_nothing_to_compare_on(trained_on):
    """One of four evaluation images (below MIN_UNSEEN_SHARE) would let a single image decide."""
    from numtaflow.steps.evaluate import on_unseen_images

    champion, candidate, how = on_unseen_images(CANDIDATE_ROWS, CHAMPION_ROWS, CONTENT, trained_on)
    assert (champion, candidate) == (None, None) and f"only {4 - len(trained_on)} of this run's 4" in how
