"""The model card says what the run recorded: per-digit figures, the most confused pairs, the data."""

from numtaflow.catalog import MODEL_CARD_FACTS, SCORING_INDEX_KEY
from numtaflow.evaluation import confused_pairs
from numtaflow.model_card import card_facts
from numtaflow.registry import version_prefix
from numtaflow.templates import render
from numtaflow.webapp import version_page


def evidence():
    confusion = [[0] * 10 for _ in range(10)]
    for digit in range(10):
        confusion[digit][digit] = 18
    confusion[1][9], confusion[9][1], confusion[5][6], confusion[3][8] = 2, 1, 3, 2
    per_class = {str(d): {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 20} for d in range(10)}
    metrics = {"accuracy": 0.9, "f1": 0.89, "precision": 0.9, "recall": 0.9, "roc_auc": 0.99, "per_class": per_class,
               "confusion_matrix": confusion, "split": {"accuracy": 0.88}, "lr_params": {"preset": "tuned"},
               "n_train": 400, "n_split_test": 100}
    sample = {"rows": 500, "per_class": {str(d): 50 for d in range(10)}, "ids_sha256": "a" * 64}
    lineage = {"inputs": {"train": {"uri": "s3://b/training-a", "manifest_sha256": "m" * 64,
                                    "batches": [{"uri": "s3://b/incoming/dt=2026-11-02/x"}]},
                          "eval": {"uri": "s3://b/training-c", "manifest_sha256": "e" * 64}},
               "sample": {"train": sample, "eval": {**sample, "rows": 200}}, "versions": {"pyspark": "4.2.0"},
               "code_version": "abc", "data_until": "2026-11-03"}
    version = {"version": "0123456789abcdef", "run_id": "manual__1",
               "settings": {"per_class": 50, "train_views": 12, "test_views": 4, "crop_to_ink": True},
               "featurizer": {"backbone": "MobileNetV2", "image_size": 128, "layers": ["out_relu"],
                              "weights": "/x/mobilenet.h5", "weights_sha256": "f" * 64}}
    return version, metrics, lineage


def test_confused_pairs_are_the_largest_off_diagonal_counts():
    _, metrics, _ = evidence()
    assert confused_pairs(metrics["confusion_matrix"], 3) == [
        {"true": 5, "predicted": 6, "count": 3}, {"true": 1, "predicted": 9, "count": 2},
        {"true": 3, "predicted": 8, "count": 2}]


def test_the_card_is_made_from_the_records_in_markdown_and_html():
    card = card_facts(*evidence())
    text = render("model_card.md", card=card, examples="misclassified.png")
    assert "# Model card: version 0123456789abcdef" in text and "| 5 | 6 | 3 |" in text
    assert "s3://b/incoming/dt=2026-11-02/x" in text and "Fitted on 400 images (with 12 distorted copies each) of a sample of 50 per digit" in text
    assert "the other 100 were held out" in text
    assert "`mobilenet.h5`" in text and "/x/" not in text  # the file, never a machine's path

    class Storage:
        def get_json(self, key):
            assert key == version_prefix("0123456789abcdef") + MODEL_CARD_FACTS
            return card

        def read_with_etag(self, key):
            assert key == SCORING_INDEX_KEY
            runs = [{"run_id": f"scoring-{v}", "version": v, "created_at": "2026-02-01", "images_scored": 500,
                     "images_rejected": 0, "psi": 0.01, "drift": False, "low_confidence_share": 0.1,
                     "evaluation_low_confidence_share": 0.08} for v in ("0123456789abcdef", "fedcba9876543210")]
            return {"runs": runs}, "etag"

    page = version_page(Storage(), "0123456789abcdef", "/numtaflow")
    assert "<td>5</td><td>6</td><td>3</td>" in page and "Intended use" in page
    assert "src='/numtaflow/versions/0123456789abcdef/misclassified.png'" in page
    assert "/numtaflow/scoring/scoring-0123456789abcdef" in page and "scoring-fedcba9876543210" not in page
