"""What the benchmarks share: peak memory of a process tree, a Spark session configured as the
jobs' are, and writing a result as JSON plus a Markdown table."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import psutil


class PeakMemory:
    """Samples the resident memory of a process and all its descendants until stopped."""

    def __init__(self, pid: int, every: float = 0.5):
        self.root, self.every = psutil.Process(pid), every
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
            for process in processes:
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


def write_results(out: str, stem: str, result: dict, markdown: str) -> None:
    """``<out>/<stem>.json`` and ``<out>/<stem>.md``; the table is printed too."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (folder / f"{stem}.md").write_text(markdown)
    print(markdown)
