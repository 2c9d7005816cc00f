"""Accuracy of the default pipeline on unseen images across sampling seeds (mean and spread).

    python benchmarks/seed_spread.py [--seeds 1 2 3 4 5] [--from-step STEP] [--out bench/results]

Runs the six Spark jobs exactly as the DAG does (``python -m numtaflow submit``), once per seed,
with every other setting at its default: 50 training images per class drawn by the seed from
the training input, evaluation on the independent set. These are measurement runs, not
candidates: their gate needs an accuracy of 1.0, so the champion never changes. Writes
``seeds.json`` and ``seeds.md``. ``--from-step train`` reruns only train and evaluate on the
runs' committed earlier steps, after a change that leaves validation, samples and features as
they were (a logistic-regression preset); the seconds then cover those steps only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from numtaflow.catalog import LINEAGE, METRICS, STEPS, RunLayout
from numtaflow.config import Settings
from numtaflow.storage import Storage
from numtaflow.vocabulary import LR_PRESETS


def run_seed(seed: int, steps: tuple[str, ...]) -> dict:
    run_id = f"seeds__seed-{seed}"
    overrides = json.dumps({"seed": seed, "min_accuracy": 1.0})
    started = time.time()
    for step in steps:
        command = [sys.executable, "-m", "numtaflow", "submit", step, "--run-id", run_id, "--settings-json", overrides]
        if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
            raise SystemExit(f"step {step} of {run_id} failed; rerun it with: {' '.join(command)}")
    storage = Storage(Settings.from_env())
    layout = RunLayout(storage.bucket, run_id)
    metrics = storage.get_json(layout.key(METRICS))
    return {"seed": seed, "run_id": run_id, "seconds": round(time.time() - started, 1), "steps": list(steps),
            **{key: metrics[key] for key in ("accuracy", "f1", "roc_auc", "n_eval", "n_train")},
            "split_accuracy": metrics["split"]["accuracy"],
            "featurizer": storage.get_json(layout.key(LINEAGE))["featurizer"]}


def summarize(runs: list[dict]) -> dict:
    summary = {}
    for key in ("accuracy", "f1", "roc_auc"):
        values = [r[key] for r in runs]
        summary[key] = {"mean": round(statistics.mean(values), 4),
                        "stdev": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                        "min": round(min(values), 4), "max": round(max(values), 4)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--from-step", choices=STEPS, default=STEPS[0])
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    settings = Settings.from_env()
    steps = STEPS[STEPS.index(args.from_step):]
    runs = [run_seed(seed, steps) for seed in args.seeds]
    run_settings = settings.run_settings()
    result = {"settings": {k: run_settings[k] for k in (
        "train_input", "eval_input", "per_class", "eval_per_class", "backbone", "feature_layers", "crop_to_ink",
        "train_views", "test_views", "lr_preset")},
        "lr": asdict(LR_PRESETS[settings.lr_preset]) if settings.lr_preset in LR_PRESETS else None,
        "runs": runs, "summary": summarize(runs)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds.json").write_text(json.dumps(result, indent=2))
    lines = ["| seed | accuracy | F1 | ROC AUC | 20% split accuracy | seconds |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['accuracy']:.4f} | {r['f1']:.4f} | {r['roc_auc']:.4f} | {r['split_accuracy']:.4f} "
              f"| {r['seconds']:.0f} |" for r in runs]
    s = result["summary"]
    lines.append(f"| mean ± stdev | {s['accuracy']['mean']:.4f} ± {s['accuracy']['stdev']:.4f} | "
                 f"{s['f1']['mean']:.4f} ± {s['f1']['stdev']:.4f} | {s['roc_auc']['mean']:.4f} | | |")
    (out / "seeds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
