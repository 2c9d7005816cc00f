"""What the benchmarks share: labelled NumtaDB images, peak memory of a process tree, and writing a
result as JSON plus a Markdown table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
from numtaflow.config import SHARED_DIR


def load_images(count: int) -> pd.DataFrame:
    """The first ``count`` training-a images (image_id, label, content: the encoded bytes), in the CSV's order."""
    folder = SHARED_DIR / "numtadb" / "training-a"
    labels = pd.read_csv(folder.parent / "training-a.csv").head(count)
    return pd.DataFrame({
        "image_id": labels["filename"],
        "label": labels["digit"].astype("int32"),
        "content": [(folder / name).read_bytes() for name in labels["filename"]],
    })


class PeakMemory:
    """Samples the resident memory of a process and all its descendants until stopped, except the
    processes ``exclude`` names (another path measured on its own)."""

    def __init__(self, pid: int, every: float = 0.5, exclude: frozenset[int] = frozenset()):
        self.root, self.every, self.exclude = psutil.Process(pid), every, exclude
        self.peak_total = self.peak_python_worker = self.peak_jvm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            total = 0
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                continue
            for process in (p for p in processes if p.pid not in self.exclude):
                try:
                    rss, command = process.memory_info().rss, " ".join(process.cmdline())
                except psutil.Error:
                    continue
                total += rss
                if "pyspark.daemon" in command or "pyspark.worker" in command:
                    self.peak_python_worker = max(self.peak_python_worker, rss)
                elif "java" in process.name():
                    self.peak_jvm = max(self.peak_jvm, rss)
            self.peak_total = max(self.peak_total, total)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"peak_rss_gb_all": round(self.peak_total / 2**30, 2),
                "peak_rss_gb_jvm": round(self.peak_jvm / 2**30, 2),
                "peak_rss_gb_one_python_worker": round(self.peak_python_worker / 2**30, 2)}


def run_job(step: str, run_id: str, settings: dict, env: dict | None = None, data_until: str | None = None) -> dict:
    """One Spark job through spark-submit (``numtaflow submit``): its wall seconds and the peak memory of
    its process tree; a failed job stops the benchmark with its error output."""
    command = [sys.executable, "-m", "numtaflow", "submit", step, "--run-id", run_id,
               "--settings-json", json.dumps(settings), *(["--data-until", data_until] if data_until else [])]
    started = time.time()
    # spark-submit passes the Python driver's stderr, where a step says why it failed, to its stdout
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    memory = PeakMemory(process.pid)
    output, _ = process.communicate()
    figures = {"wall_seconds": round(time.time() - started, 1), **memory.stop()}
    if process.returncode != 0:
        raise SystemExit(f"{step} of {run_id} failed (exit {process.returncode}):\n{output[-4000:]}")
    return figures


def write_results(out: str, stem: str, result: dict, markdown: str) -> None:
    """``<out>/<stem>.json`` and ``<out>/<stem>.md``; the table is printed too."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (folder / f"{stem}.md").write_text(markdown)
    print(markdown)
