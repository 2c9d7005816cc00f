"""How fast `numtaflow predict` gathers an S3 prefix of images: listing, reading and checking them,
before any scoring.

    python benchmarks/predict_read_bench.py [--images 2000] [--rounds 3] [--out bench/results]

Copies the first N training-a images into ``s3://numtaflow-bench/predict-read/n<N>/`` on the configured
S3 server (kept, and reused when complete), then times ``scoring.image_files`` + ``scoring.scorable``
over that prefix three ways, each with a fresh ``Storage``: as the command read before (one file at a
time, a new S3 file system, so new connections, per file), one file at a time through one file system,
and ``READ_THREADS`` files at a time (the command today). The three alternate in each round, in
rotated order, so a drift in the machine's speed falls on all three. Writes the median seconds and the
ratio of each to the first (``predict_read.json``/``.md``). On the embedded server a round trip is a
fraction of a millisecond; a remote server's longer round trips are what the threads overlap.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from bench_support import load_images, write_results
from numtaflow.config import Settings
from numtaflow.scoring import READ_THREADS, image_files, scorable
from numtaflow.storage import Storage

BUCKET = "numtaflow-bench"


def storage() -> Storage:
    return Storage(Settings.from_env({**os.environ, "NUMTAFLOW_BUCKET": BUCKET}))


def gather(prefix_uri: str, per_file_filesystem: bool, threads: int) -> tuple[float, int]:
    """Seconds to list, read and check every image under the prefix, and how many can be scored."""
    reader = storage()
    if per_file_filesystem:
        reader.filesystem = reader._new_filesystem  # as before: a new file system for every file
    started = time.perf_counter()
    accepted, _ = scorable(image_files([prefix_uri], reader)[0], reader.settings.max_image_pixels, threads)
    return time.perf_counter() - started, len(accepted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    writer = storage()
    writer.ensure_bucket()
    prefix = f"predict-read/n{args.images}"
    if sum(1 for _ in writer.list_objects(prefix + "/")) != args.images:
        images = load_images(args.images)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda row: writer.put_bytes(f"{prefix}/{row[0]}", row[1], "image/png"),
                          zip(images["image_id"], images["content"])))
    ways = {"one at a time, a new file system per file (before)": (True, 1),
            "one at a time, one file system": (False, 1),
            f"{READ_THREADS} at a time, one file system (now)": (False, READ_THREADS)}
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    names = list(ways)
    for round_number in range(args.rounds):
        for way in names[round_number % len(names):] + names[:round_number % len(names)]:
            elapsed, scored = gather(f"s3://{BUCKET}/{prefix}", *ways[way])
            assert scored == args.images, f"{way}: {scored} of {args.images} images could be scored"
            seconds[way].append(elapsed)
    baseline = statistics.median(seconds[names[0]])
    result = {"images": args.images, "rounds": args.rounds, "read_threads": READ_THREADS,
              "cpu_count": os.cpu_count(), "ways": {
                  way: {"median_seconds": round(statistics.median(times), 3),
                        "seconds": [round(t, 3) for t in times],
                        "ratio_to_before": round(statistics.median(times) / baseline, 3)}
                  for way, times in seconds.items()}}
    rows = "\n".join(f"| {way} | {figures['median_seconds']:.2f} | {figures['ratio_to_before']:.2f} |"
                     for way, figures in result["ways"].items())
    markdown = (f"# predict: listing, reading and checking {args.images:,} images under an S3 prefix\n\n"
                f"Median of {args.rounds} rounds, the ways alternating; {os.cpu_count()} cores.\n\n"
                "| way | seconds | ratio to before |\n|---|---:|---:|\n" + rows + "\n")
    write_results(args.out, "predict_read", result, markdown)


if __name__ == "__main__":
    main()
