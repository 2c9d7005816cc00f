"""Command line: embedded services, data loading, job submission, run reports, model registry.

    python -m numtaflow s3 start|stop          # embedded SeaweedFS S3 on 127.0.0.1
    python -m numtaflow ui start|stop          # Airflow on 127.0.0.1, both DAGs unpaused
    python -m numtaflow cluster start|stop     # Spark standalone master + worker on 127.0.0.1
    python -m numtaflow load-data              # ../shared/numtadb -> s3://<bucket>/datasets/numtadb/
    python -m numtaflow submit STEP --run-id R # run one Spark job as the DAG would
    python -m numtaflow drop-batch [--date D]  # land new labelled images under incoming/dt=D/
    python -m numtaflow report [--run-id R]    # print a run's results, copy them to reports/
    python -m numtaflow models list|show RUN   # runs, metrics, gate decisions, the champion
    python -m numtaflow models promote RUN | rollback [VERSION]   # manual, compare-and-set
    python -m numtaflow models prune [--keep N] [--older-than DAYS] [--dry-run]   # old runs' working data
    python -m numtaflow cache [--prune]        # the caches' folders; delete what this code never reads
    python -m numtaflow predict PATH... [--model champion|VERSION|RUN]   # digits of new images
    python -m numtaflow inbox-batch [--count N] # land unlabelled images in the inbox (a scoring batch)
    python -m numtaflow scoring-report [--run-id R] [--labels CSV]   # a scoring run's results
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from .catalog import (DAG_ID, DATASETS_PREFIX, LINEAGE, METRICS, REPORTED, SCORING_DAG_ID, SCORING_STEPS, STEPS,
                      RunLayout)
from .config import PROJECT_ROOT, SHARED_DIR, Settings, SettingsError, settings_object
from .storage import Storage, StorageError, safe_run_id

STATE_DIR = Path(os.environ.get("NUMTAFLOW_STATE_DIR", PROJECT_ROOT / ".local"))


def cmd_s3(args: argparse.Namespace) -> None:
    """Start (or stop) the embedded S3 server where ``s3_endpoint`` points, so the jobs reach it."""
    from .services import S3Ports, ensure_credentials, start_s3, stop_s3

    if args.action == "start":
        settings = Settings.from_env()
        try:
            ports = S3Ports.for_endpoint(settings.s3_endpoint)
        except ValueError as error:
            raise SystemExit(f"s3 start: {error}") from None
        credentials = ensure_credentials(STATE_DIR / "credentials.env")
        pid = start_s3(STATE_DIR / "s3", credentials, ports)
        os.environ.update(credentials)
        Storage(settings).ensure_bucket()
        print(f"S3 server running (pid {pid}) at {settings.s3_endpoint}, bucket {settings.bucket}; "
              f"data in {STATE_DIR / 's3'}")
    else:
        print("stopped" if stop_s3(STATE_DIR / "s3") else "not running")


def cmd_ui(args: argparse.Namespace) -> None:
    """Start (or stop) Airflow on 127.0.0.1 with the training and scoring DAGs visible and unpaused."""
    from .services import ensure_airflow_password, start_airflow, stop_airflow

    if args.action == "stop":
        print("stopped" if stop_airflow(STATE_DIR) else "not running")
        return
    port = int(os.environ.get("AIRFLOW__API__PORT", "8080"))
    passwords = Path(os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
                                    STATE_DIR / "airflow-passwords.json"))
    ensure_airflow_password(passwords)
    start_airflow(STATE_DIR, port)
    deadline = time.time() + 120
    for dag_id in (DAG_ID, SCORING_DAG_ID):
        while subprocess.run(["airflow", "dags", "unpause", dag_id], capture_output=True).returncode != 0:
            if time.time() > deadline:
                raise SystemExit(f"Airflow is up but DAG {dag_id} was not parsed within 120 s; see "
                                 f"{STATE_DIR / 'airflow-dag-processor.log'}")
            time.sleep(3)
    print(f"Airflow UI: http://127.0.0.1:{port}/  (user admin; password in {passwords})")
    from .webapp import MOUNT

    print(f"DAGs {DAG_ID} and {SCORING_DAG_ID} are unpaused; models page: http://127.0.0.1:{port}{MOUNT}/")
    schedule = Settings.from_env().schedule
    if schedule.lower() != "none":
        print(f"time-based runs ({schedule}) start at the schedule's next slot, not now (NUMTAFLOW_SCHEDULE=none: "
              "none at all); landed batches start runs by themselves")
    print("unlabelled batches landed in the inbox (`python -m numtaflow inbox-batch`) start scoring runs by themselves")
    print(f"logs: {STATE_DIR}/airflow-*.log; stop with `make ui-stop`")


def cmd_cluster(args: argparse.Namespace) -> None:
    """Start (or stop) a Spark standalone master and worker on 127.0.0.1."""
    from .services import SparkPorts, start_spark_cluster, stop_spark_cluster

    state = STATE_DIR / "spark"
    if args.action == "stop":
        print("stopped" if stop_spark_cluster(state) else "not running")
        return
    ports = SparkPorts()
    master = start_spark_cluster(state, args.cores, args.memory, ports)
    print(f"Spark master {master} (UI http://127.0.0.1:{ports.master_ui}/, worker UI "
          f"http://127.0.0.1:{ports.worker_ui}/); run the DAG on it with NUMTAFLOW_SPARK_MASTER={master}")


def cmd_load_data(args: argparse.Namespace) -> None:
    """Upload NumtaDB folders (with their CSVs) into the bucket, once per folder."""
    settings = Settings.from_env()
    storage = Storage(settings)
    storage.ensure_bucket()
    source = Path(args.source)
    for name in args.folders:
        folder, csv = source / name, source / f"{name}.csv"
        if not folder.is_dir() or not csv.is_file():
            raise SystemExit(f"load-data: {folder} and {csv} are both needed (NumtaDB layout); see README 'Data'")
        prefix = f"{args.prefix.rstrip('/')}/{name}"
        marker = f"{args.prefix.rstrip('/')}/_loaded/{name}.json"
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if storage.exists(marker) and storage.get_json(marker).get("files") == len(files):
            print(f"{name}: already in s3://{storage.bucket}/{prefix}/ ({len(files)} files)")
            continue
        started = time.time()
        storage.put_bytes(f"{prefix}.csv", csv.read_bytes(), "text/csv")
        # put_object from 16 threads, not boto3's managed transfer: for training-a (19,702 files of 4 KB on
        # average) into the embedded S3 on 2 cores this took 24-37 s wall and 16-19 s CPU, against 31-44 s and
        # 23-30 s with upload_file per file or one TransferManager of 16. The managed path sends each file as
        # a stream with "Expect: 100-continue": a wait for the server and more work per request.
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda p: storage.put_bytes(f"{prefix}/{p.name}", p.read_bytes(), "image/png"), files))
        storage.put_json(marker, {"files": len(files), "source": str(folder)})
        print(f"{name}: uploaded {len(files)} files to s3://{storage.bucket}/{prefix}/ in {time.time() - started:.0f} s")


def cmd_submit(args: argparse.Namespace) -> None:
    from .spark import submit_command

    settings = Settings.from_env()
    overrides = settings_object("--settings-json", args.settings_json)
    if args.step in STEPS:  # a scoring step validates its own settings
        settings = settings.with_overrides(overrides)
    optional = [(option, str(value)) for option, value in (("--data-until", args.data_until),
                                                           ("--logical-date", args.logical_date),
                                                           ("--run-type", args.run_type),
                                                           ("--retries-left", args.retries_left)) if value]
    command = submit_command(settings, str(PROJECT_ROOT / "spark_jobs" / f"{args.step}.py"),
                             ["--run-id", args.run_id, "--settings-json", args.settings_json,
                              *[item for pair in optional for item in pair]])
    if args.print_only:
        print(shlex.join(command))  # quoted: copied into a shell, it runs as is
        return
    sys.exit(subprocess.run(command).returncode)


def cmd_class_archive(args: argparse.Namespace) -> None:
    from .spark import make_class_archive

    print(make_class_archive(Settings.from_env()))


def cmd_drop_batch(args: argparse.Namespace) -> None:
    """Land a batch of labelled images, as an uploader would, so a run starts by itself."""
    from .incoming import drop_batch

    settings = Settings.from_env()
    if not settings.incoming_input:
        raise SystemExit("NUMTAFLOW_INCOMING_INPUT is empty: there is no landing prefix to drop into")
    now = datetime.now(timezone.utc)
    day = args.date or now.date().isoformat()
    name = args.name or f"batch-{now:%H%M%S}"
    batch, count = drop_batch(Storage(settings), args.source, settings.incoming_input, day, name, args.per_class)
    print(f"landed {count} images in {batch.uri}/ (committed by {batch.uri}/_BATCH.json); runs whose data ends "
          f"now or later, or on {day} or later, train on it, and the DAG starts a run for it by itself when "
          "Airflow is up")


def cmd_inbox_batch(args: argparse.Namespace) -> None:
    """Land unlabelled images in the inbox; keep their labels aside for checking the scoring's accuracy."""
    import pandas as pd

    from .incoming import unlabelled_batch

    settings = Settings.from_env()
    storage = Storage(settings)
    if not settings.inbox_input:
        raise SystemExit("inbox-batch: NUMTAFLOW_INBOX_INPUT is empty: there is no inbox to land in")
    excluded_run = args.exclude_run and find_run(storage, None if args.exclude_run == "latest" else args.exclude_run,
                                                 None)
    exclude = evaluation_names(storage, excluded_run) if excluded_run else set()
    now = datetime.now(timezone.utc)
    day, name = args.date or now.date().isoformat(), args.name or f"scans-{now:%H%M%S}"
    try:
        batch, labels = unlabelled_batch(storage, args.source, settings.inbox_input, day, name, args.count, exclude)
    except ValueError as error:  # too few images left, or a source that is not a dataset: one line, no traceback
        raise SystemExit(f"inbox-batch: {error}") from None
    print(f"landed {len(labels)} unlabelled images in {batch.uri}/ (committed by {batch.uri}/_BATCH.json)"
          + (f", none of run {excluded_run}'s {len(exclude)} evaluation images" if exclude else ""))
    if args.labels_out:
        Path(args.labels_out).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(labels, columns=["filename", "digit"]).to_csv(args.labels_out, index=False)
        print(f"withheld labels: {args.labels_out} (the scoring run never sees them)")


def evaluation_names(storage: Storage, run_id: str) -> set[str]:
    """A training run's evaluation images, by their paths in its evaluation input."""
    from .catalog import EVAL_PREDICTIONS

    folder = RunLayout(storage.bucket, run_id).key(EVAL_PREDICTIONS)  # kept by `models prune`
    try:
        return set(storage.get_folder_frame(folder, columns=["image_id"])["image_id"])
    except FileNotFoundError as missing:
        raise SystemExit(f"run {run_id} has no evaluation predictions ({missing}): it never finished "
                         "evaluate") from None


def cmd_scoring_report(args: argparse.Namespace) -> None:
    """Print a scoring run's results (the newest by default) and, given the withheld labels, its accuracy."""
    import pandas as pd

    from .catalog import PREDICTIONS, SCORING_INDEX_KEY, SCORING_REPORT
    from .registry import read_index
    from .scoring import withheld_label_accuracy

    settings = Settings.from_env()
    storage = Storage(settings)
    runs = read_index(storage, SCORING_INDEX_KEY)
    if not runs:
        raise SystemExit("scoring-report: no scoring run has finished yet")
    run_id = safe_run_id(args.run_id) if args.run_id else max(runs, key=lambda r: r.get("created_at") or "")["run_id"]
    layout = RunLayout.scoring(settings.bucket, run_id)
    if not storage.exists(layout.key(SCORING_REPORT)):
        raise SystemExit(f"scoring-report: scoring run {run_id} has no report (s3://{settings.bucket}/"
                         f"{layout.key(SCORING_REPORT)}): it has not finished, or never ran"
                         + ("; without --run-id the newest finished run is shown" if args.run_id else ""))
    report = storage.get_json(layout.key(SCORING_REPORT))
    table = storage.get_frame(layout.key(PREDICTIONS["parquet"]))
    print(f"\nscoring run: {run_id} ({report['run_type']})")
    print(f"model:       version {report['model']['version']} of training run {report['model']['run_id']} "
          f"(asked for: {report['model']['requested']})")
    print(f"images:      {report['images_scored']} scored, {report['images_rejected']} rejected, from "
          f"{', '.join(report['inputs'])}")
    print(f"drift:       PSI {report['psi']:.4f} against the training distribution (threshold "
          f"{report['drift_threshold']}): {'DRIFT' if report['drift'] else 'no drift'}")
    evaluation = report["evaluation_low_confidence_share"]
    print(f"confidence:  {100 * report['low_confidence_share']:.1f}% below {report['confidence_threshold']}"
          + (f" (on the model's evaluation images: {100 * evaluation:.1f}%)" if evaluation is not None else ""))
    if args.labels:
        try:
            accuracy, compared = withheld_label_accuracy(table, pd.read_csv(args.labels, dtype={"filename": str}),
                                                         args.labels)
        except (OSError, ValueError) as error:  # no such file, not a CSV, the wrong columns, another batch's labels
            raise SystemExit(f"scoring-report: {error}") from None
        print(f"accuracy:    {accuracy:.4f} on {compared} images, against the withheld labels in {args.labels}")
    print(f"predictions: s3://{settings.bucket}/{layout.key(PREDICTIONS['parquet'])} and .csv")
    from .webapp import MOUNT, page_url

    print(f"report page: {page_url(MOUNT, 'scoring', run_id=run_id)} in the Airflow UI (review gallery of the "
          f"{len(report['gallery'])} least confident images)")


def find_run(storage: Storage, run_id: str | None, logical_date: str | None) -> str:
    from .registry import read_index

    runs = read_index(storage)
    if run_id:
        return safe_run_id(run_id)
    if logical_date:
        matches = [r for r in runs if (r.get("logical_date") or "").startswith(logical_date[:19])]
        if matches:
            return matches[-1]["run_id"]
        raise SystemExit(f"no finished run with logical date {logical_date} in the index")
    if not runs:
        raise SystemExit("no finished runs yet")
    return max(runs, key=lambda r: r.get("finished_at") or "")["run_id"]


def cmd_report(args: argparse.Namespace) -> None:
    """Print where a run's results are and copy the small ones to reports/<run>/ and reports/latest/."""
    settings = Settings.from_env()
    storage = Storage(settings)
    run_id = find_run(storage, args.run_id, args.logical_date)
    layout = RunLayout(settings.bucket, run_id)
    if not storage.exists(layout.key(METRICS)):  # before the copy replaces reports/latest
        raise SystemExit(f"report: run {run_id} has no metrics.json: it never finished evaluate "
                         "(`python -m numtaflow models list` names the runs that did)")
    target = Path(args.reports) / run_id
    target.mkdir(parents=True, exist_ok=True)
    for artifact in REPORTED:
        if storage.exists(layout.key(artifact)):
            (target / artifact.name).write_bytes(storage.get_bytes(layout.key(artifact)))
    latest = Path(args.reports) / "latest"
    shutil.rmtree(latest, ignore_errors=True)
    shutil.copytree(target, latest)
    metrics = json.loads((target / METRICS.name).read_text())
    record = json.loads((target / LINEAGE.name).read_text())
    gate = metrics["gate"]
    print(f"\nrun id:      {run_id}")
    print(f"backbone:    {metrics['backbone']}, {metrics['per_class_sample']} images per class, seed {metrics['seed']}, "
          f"LR {metrics['lr_params']}")
    for label, values in (("independent", metrics), ("20% split", metrics["split"])):
        print(f"{label:12s} accuracy {values['accuracy']:.4f}  f1 {values['f1']:.4f}  precision "
              f"{values['precision']:.4f}  recall {values['recall']:.4f}  roc_auc {values['roc_auc']}")
    print(f"evaluated on {metrics['n_eval']} independent images, {metrics['n_split_test']} split images")
    print(f"gate:        {'PROMOTED' if gate['promoted'] else 'NOT PROMOTED'} "
          f"(champion before: {gate['champion_before']}, after: {gate['champion_after']})")
    for reason in gate["reasons"]:
        print(f"             - {reason}")
    if gate.get("champion_before") and gate.get("compared_with"):
        print(f"             compared with: {gate['compared_with']}")
    if gate["promoted"] and gate.get("candidate_version"):
        from .registry import version_prefix

        print(f"served as:   version {gate['candidate_version']}: s3://{storage.bucket}/"
              f"{version_prefix(gate['candidate_version'])} (model/, pipeline/, model_card.md); classify images "
              "with `python -m numtaflow predict PATH...`")
    # the commit markers: run.json and metrics.json are written inside evaluate, before it commits
    markers = {step: storage.committed_step(layout, step) for step in STEPS}  # one GET each
    pruned = [step for step, marker in markers.items() if marker is None and step in record["steps"]]
    commits = {step: marker or record["steps"].get(step) for step, marker in markers.items()}
    print("steps (s):   " + ", ".join(f"{step} {commit['seconds']}" + (f" (reused from {commit['reused_from']})"
                                                                       if commit.get("reused_from") else "")
                                      for step, commit in commits.items() if commit))
    print(f"artifacts ({len(record['artifacts'])} objects; Parquet part files not listed):")
    for uri in record["artifacts"]:
        print(f"  {uri}")
    if pruned:
        print(f"pruned:      the working data of {', '.join(pruned)} (`models prune`); the Parquet folders of those "
              "steps listed above are gone")
    print(f"local copy:  {target.resolve()}  (and {latest.resolve()})")


def cmd_models_list(args: argparse.Namespace) -> None:
    """The champion, its history and every finished run with its metrics and gate decision."""
    from .registry import RegistryError, history, read_champion, read_index

    storage = Storage(Settings.from_env())
    try:
        champion, _ = read_champion(storage)
    except RegistryError as error:
        raise SystemExit(f"models list: {error}") from None
    print(f"champion: {f'version {champion.version} of run {champion.run_id}' if champion else 'none'}")
    for change in history(storage):
        print(f"  {change['changed_at']} {change['action']:8s} version {change.get('version')} of "
              f"{change['run_id']} (was {change.get('previous_version')}): "
              f"{'; '.join(change.get('reasons', []))[:120]}")
    for run in sorted(read_index(storage), key=lambda r: r.get("finished_at") or ""):
        m = run["metrics"]
        print(f"{run['run_id']:50s} {run.get('finished_at', ''):26s} {run['backbone']:14s} acc {m['accuracy']:.4f} "
              f"f1 {m['f1']:.4f} {'promoted' if run['promoted'] else 'rejected'}")


def cmd_models_show(args: argparse.Namespace) -> None:
    storage = Storage(Settings.from_env())
    try:
        record = storage.get_json(RunLayout(storage.bucket, safe_run_id(args.run)).key(LINEAGE))
    except FileNotFoundError:
        raise SystemExit(f"models show: run {args.run} has no run.json: it never finished evaluate "
                         "(`models list` names the runs that did)") from None
    print(json.dumps(record, indent=2))


def cmd_models_change(args: argparse.Namespace) -> None:
    """``models promote RUN`` or ``models rollback [VERSION]``: compare-and-set on the champion pointer."""
    from .registry import RegistryError, promote_run, read_champion, rollback

    storage = Storage(Settings.from_env())
    reason = args.reason or f"manual {args.action} by {os.environ.get('USER', 'an operator')}"
    try:
        pointer = (promote_run(storage, safe_run_id(args.run), reason) if args.action == "promote"
                   else rollback(storage, reason, args.version))
    except RegistryError as error:
        raise SystemExit(f"models {args.action}: {error}") from None
    if pointer is None:
        champion = read_champion(storage)[0]
        print(f"version {champion.version} of run {champion.run_id} serves already: nothing changed")
        return
    print(f"champion is now version {pointer.version} of run {pointer.run_id} (was version "
          f"{pointer.previous_version} of run {pointer.previous_run_id}): {reason}")


def cmd_models_prune(args: argparse.Namespace) -> None:
    """Delete the working data of finished runs beyond the newest ``--keep`` and older than ``--older-than``."""
    from .retention import prune

    storage = Storage(Settings.from_env())
    try:
        outcomes, moved = prune(storage, args.keep, timedelta(days=args.older_than), dry_run=args.dry_run)
    except StorageError as error:
        raise SystemExit(f"models prune: {error}") from None
    verb = "would free" if args.dry_run else "freed"
    pruned = [run for run in outcomes if not run.busy]
    for run in outcomes:
        print(f"{run.area:8s} run {run.run_id}: " + ("left alone: written since its last step committed (being "
                                                     "re-run?)" if run.busy else f"{verb} {run.bytes / 1e6:,.1f} MB"))
    print(f"runs beyond the newest {args.keep} and older than {args.older_than} day(s): {len(pruned)} "
          f"{'to prune' if args.dry_run else 'pruned'}, {sum(run.bytes for run in pruned) / 1e6:,.1f} MB of working "
          f"data{'' if args.dry_run else ' freed'} (their metrics, reports, models and predictions stay); "
          f"{moved} step record(s) {'would move' if args.dry_run else 'moved'} to a kept run")


def cmd_cache(args: argparse.Namespace) -> None:
    """List the cache folders in the bucket; ``--prune`` deletes what this code can never read again."""
    from .caches import current_codes, prunable, read_folders

    storage = Storage(Settings.from_env())
    folders, codes = read_folders(storage), current_codes()
    doomed = set(prunable(folders, codes, datetime.now(timezone.utc)))
    print(f"{'cache':12s} {'folder':24s} {'parts':>5s} {'rows':>9s} {'MB':>9s}  {'last written':16s}  written by")
    for folder in folders:
        written = "this code" if folder.written_by(codes[folder.cache]) else "other code"
        if folder.prefix in doomed:
            written += ": pruned" if args.prune else ": --prune deletes it"
        elif crashed := [part for part in folder.parts if part.prefix in doomed]:
            written += f", {len(crashed)} uncommitted part(s)" + (" pruned" if args.prune else " --prune deletes")
        print(f"{folder.cache:12s} {folder.key:24s} {len(folder.parts):5d} {folder.rows:9,d} "
              f"{folder.bytes / 1e6:9.1f}  {folder.last_modified:%Y-%m-%d %H:%M}  {written}")
    freed = sum(part.bytes for folder in folders for part in folder.parts
                if folder.prefix in doomed or part.prefix in doomed)
    if args.prune:
        for prefix in sorted(doomed):
            storage.delete_prefix(prefix)
    print(f"s3://{storage.bucket}/cache/: {len(folders)} folder(s), {sum(f.bytes for f in folders) / 1e6:,.1f} MB; "
          + (f"pruned {len(doomed)} prefix(es), {freed / 1e6:,.1f} MB" if args.prune
             else f"--prune would delete {len(doomed)} prefix(es), {freed / 1e6:,.1f} MB"))


def cmd_predict(args: argparse.Namespace) -> None:
    """Classify image files (or folders or zips of them, local or in S3) with the champion's pipeline,
    or a version's."""
    from .registry import RegistryError, find_model
    from .scoring import image_files, prediction_lines

    settings = Settings.from_env()
    storage = Storage(settings)
    try:
        model = find_model(storage, args.model)
    except RegistryError as error:
        raise SystemExit(f"predict: {error}") from None
    if not model.pipeline_uri:
        raise SystemExit(f"predict: version {model.version} of run {model.run_id} was saved without its pipeline; "
                         "promote a run trained since pipelines are saved")
    files, unreadable = image_files(args.paths, storage)
    for item in unreadable:
        print(item.line())
    classify = pipeline_classifier(settings, model.pipeline_uri)
    scored = 0
    for line, was_scored in prediction_lines(files, settings.max_image_pixels, classify):
        print(line, flush=True)
        scored += was_scored
    if not scored:
        raise SystemExit("predict: no image could be scored")
    print(f"(model: version {model.version} of run {model.run_id})", file=sys.stderr)


def pipeline_classifier(settings: Settings,
                        pipeline_uri: str) -> Callable[[list[tuple[str, bytes]]], list[list[float]]]:
    """The probabilities the saved pipeline at ``pipeline_uri`` gives (path, bytes) pairs, in their
    order. Spark starts and the pipeline loads on the first call: input with nothing to score starts
    neither."""
    @functools.cache
    def loaded():
        from pyspark.ml import PipelineModel

        from .spark import interactive_session
        from .storage import spark_path

        spark = interactive_session(settings, "numtaflow-predict")
        spark.sparkContext.setLogLevel("ERROR")
        return spark, PipelineModel.load(spark_path(pipeline_uri))

    def classify(images: list[tuple[str, bytes]]) -> list[list[float]]:
        from pyspark.ml.functions import vector_to_array

        spark, pipeline = loaded()
        scored = pipeline.transform(spark.createDataFrame(images, "path string, content binary"))
        probabilities = scored.select("path", vector_to_array("probability").alias("p")).collect()
        rows = {row["path"]: row["p"] for row in probabilities}
        return [rows[path] for path, _ in images]

    return classify


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An integer argument no smaller than ``minimum`` (a batch of no images would be committed empty)."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="numtaflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    s3 = commands.add_parser("s3", help="start or stop the embedded S3 server")
    s3.add_argument("action", choices=["start", "stop"])
    s3.set_defaults(func=cmd_s3)
    ui = commands.add_parser("ui", help="start or stop Airflow (API server, scheduler, DAG processor, triggerer) on "
                        "127.0.0.1, both DAGs unpaused")
    ui.add_argument("action", choices=["start", "stop"])
    ui.set_defaults(func=cmd_ui)
    cluster = commands.add_parser("cluster", help="start or stop a local Spark standalone cluster")
    cluster.add_argument("action", choices=["start", "stop"])
    cluster.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    cluster.add_argument("--memory", default="8g")
    cluster.set_defaults(func=cmd_cluster)
    load = commands.add_parser("load-data", help="upload NumtaDB folders into the bucket")
    load.add_argument("--source", default=str(SHARED_DIR / "numtadb"))
    load.add_argument("--prefix", default=DATASETS_PREFIX)
    load.add_argument("folders", nargs="*", default=["training-a", "training-c"])
    load.set_defaults(func=cmd_load_data)
    submit = commands.add_parser("submit", help="run one Spark job with spark-submit")
    submit.add_argument("step", choices=STEPS + SCORING_STEPS)
    submit.add_argument("--run-id", required=True)
    submit.add_argument("--settings-json", default="{}")
    submit.add_argument("--data-until", help="ISO time bounding the landed batches the run trains on")
    submit.add_argument("--logical-date", help="ISO time of the run, as the DAG passes it (recorded; the default of "
                        "--data-until)")
    submit.add_argument("--run-type", help="manual, scheduled, backfill or asset_triggered")
    submit.add_argument("--retries-left", type=int, default=0,
                        help="tries left after this one, as Airflow passes it (a failing canary is then retried)")
    submit.add_argument("--print-only", action="store_true")
    submit.set_defaults(func=cmd_submit)
    archive = commands.add_parser("class-archive", help="make the Spark driver's JVM class archive (make setup)")
    archive.set_defaults(func=cmd_class_archive)
    drop = commands.add_parser("drop-batch", help="land new labelled images under the incoming prefix")
    drop.add_argument("--source", default=str(SHARED_DIR / "numtadb" / "training-c"),
                      help="a NumtaDB folder (CSV beside it) or folder per class, local or s3://")
    drop.add_argument("--per-class", type=int_at_least(1), default=20, help="images per digit in the batch")
    drop.add_argument("--date", help="arrival partition YYYY-MM-DD (default: today, UTC)")
    drop.add_argument("--name", help="batch folder name (default: batch-HHMMSS)")
    drop.set_defaults(func=cmd_drop_batch)
    report = commands.add_parser("report", help="print a run's results and copy them to reports/")
    report.add_argument("--run-id")
    report.add_argument("--logical-date")
    report.add_argument("--reports", default=str(PROJECT_ROOT / "reports"))
    report.set_defaults(func=cmd_report)
    models = commands.add_parser("models", help="runs, metrics and the champion")
    actions = models.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the champion, its history and every finished run").set_defaults(
        func=cmd_models_list)
    show = actions.add_parser("show", help="a run's run.json")
    show.add_argument("run", metavar="RUN")
    show.set_defaults(func=cmd_models_show)
    promote = actions.add_parser("promote", help="register RUN's model as a version and serve it")
    promote.add_argument("run", metavar="RUN")
    back = actions.add_parser("rollback", help="serve an earlier version again")
    back.add_argument("version", nargs="?", metavar="VERSION", help="default: the version before the champion")
    for change in (promote, back):
        change.add_argument("--reason", help="recorded in the champion pointer and its history")
        change.set_defaults(func=cmd_models_change)
    prune = actions.add_parser("prune", help="delete old runs' working data (their metrics, reports, models and "
                               "predictions stay)")
    prune.add_argument("--keep", type=int_at_least(0), default=5,
                       help="the newest runs (of each DAG) whose working data stays (default 5)")
    prune.add_argument("--older-than", type=int_at_least(0), default=7, metavar="DAYS",
                       help="only runs finished more than DAYS days ago (default 7)")
    prune.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    prune.set_defaults(func=cmd_models_prune)
    cache = commands.add_parser("cache", help="list the caches' folders; --prune deletes those this code never reads")
    cache.add_argument("--prune", action="store_true", help="delete folders no part of which this code wrote, and "
                       "parts never committed (nothing modified in the last day)")
    cache.set_defaults(func=cmd_cache)
    predict = commands.add_parser("predict", help="classify images with the champion (or a version)")
    predict.add_argument("paths", nargs="+", metavar="PATH",
                         help="image files, folders or .zip archives of them, local or s3://")
    predict.add_argument("--model", default="champion",
                         help="champion (default), a version (16 hex digits) or a training run whose model "
                         "was registered")
    predict.set_defaults(func=cmd_predict)
    inbox = commands.add_parser("inbox-batch", help="land unlabelled images in the inbox, for the scoring DAG")
    inbox.add_argument("--source", default=str(SHARED_DIR / "numtadb" / "training-c"),
                       help="a labelled NumtaDB folder (CSV beside it) or folder per class, local or s3://")
    inbox.add_argument("--count", type=int_at_least(1), default=500, help="images in the batch, as many per digit")
    inbox.add_argument("--exclude-run", metavar="RUN", help="leave out this training run's evaluation images "
                       "('latest': the newest run)")
    inbox.add_argument("--labels-out", help="write the withheld labels here (CSV: filename, digit)")
    inbox.add_argument("--date", help="arrival partition YYYY-MM-DD (default: today, UTC)")
    inbox.add_argument("--name", help="batch folder name (default: scans-HHMMSS)")
    inbox.set_defaults(func=cmd_inbox_batch)
    scoring = commands.add_parser("scoring-report", help="print a scoring run's results")
    scoring.add_argument("--run-id", help="default: the newest scoring run")
    scoring.add_argument("--labels", help="withheld labels (CSV: filename, digit) to measure accuracy against")
    scoring.set_defaults(func=cmd_scoring_report)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SettingsError as error:  # a wrong NUMTAFLOW_* value: one line naming it, not a traceback
        raise SystemExit(f"numtaflow {args.command}: {error}") from None
