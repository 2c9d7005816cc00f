"""A model version's card: what it is for and not for, the data it learnt from and was judged on,
how it scored per digit, which digits it confuses, how it was built, and its known limits.

Generated from what the run recorded (its ``metrics.json`` and ``run.json``) when the version is
registered, written once beside the model as ``model_card.json`` and ``model_card.md``, and shown on
the Models pages: never typed by hand.
"""

from __future__ import annotations

from typing import Any

from .evaluation import confused_pairs

INTENDED_USE = ("Reading single handwritten Bengali digits (0-9) from scanned or photographed crops, "
                "in batches, with a person reviewing the least confident answers.")
NOT_FOR = ("Whole forms or multi-digit strings (one digit per image only); other scripts; decisions about "
           "people without a person checking; images unlike the training crops (photographs of scenes, "
           "printed digits).")


def card_facts(version: dict[str, Any], metrics: dict[str, Any], lineage: dict[str, Any]) -> dict[str, Any]:
    """Everything the card says, as plain data (``version`` is the registry's version record)."""
    settings, sample = version["settings"], lineage["sample"]
    inputs = lineage["inputs"]
    return {
        "version": version["version"],
        "run_id": version["run_id"],
        "intended_use": INTENDED_USE,
        "not_for": NOT_FOR,
        "training_data": {
            "input": inputs["train"]["uri"], "manifest_sha256": inputs["train"]["manifest_sha256"],
            "batches": [batch["uri"] for batch in inputs["train"].get("batches", [])],
            "per_class": sample["train"]["per_class"], "images": sample["train"]["rows"],
            "distorted_copies_per_image": settings.get("train_views"), "data_until": lineage.get("data_until"),
        },
        "evaluation_data": {
            "input": inputs["eval"]["uri"], "manifest_sha256": inputs["eval"]["manifest_sha256"],
            "per_class": sample["eval"]["per_class"], "images": sample["eval"]["rows"],
            "ids_sha256": sample["eval"]["ids_sha256"],
        },
        "metrics": {key: metrics.get(key) for key in ("accuracy", "f1", "precision", "recall", "roc_auc")},
        "split_accuracy": metrics["split"]["accuracy"],
        "per_class": metrics["per_class"],
        "confused_pairs": confused_pairs(metrics["confusion_matrix"]),
        "featurizer": version["featurizer"],
        "test_views": settings.get("test_views"),
        "crop_to_ink": settings.get("crop_to_ink"),
        "logistic_regression": metrics["lr_params"],
        "stack": lineage.get("versions", {}),
        "code_version": lineage.get("code_version"),
        "limits": [
            f"Fitted on {metrics.get('n_train')} images (with {settings.get('train_views')} distorted copies "
            f"each) of a sample of {settings.get('per_class')} per digit from {inputs['train']['uri']}; the "
            f"other {metrics.get('n_split_test')} were held out.",
            "NumtaDB crops are small, grey, one digit roughly centred; images are converted to grey, "
            "set to dark ink on light paper, cropped to the ink and resized, so colour carries nothing.",
            f"Judged on {sample['eval']['rows']} images of {inputs['eval']['uri']}; other sources "
            "(other scanners, handwriting styles, noise) may score lower.",
            "Blank or tiny images, and files that do not decode, are refused rather than classified.",
        ],
    }
