import pytest

from numtaflow.sampling import distinct_content, ids_hash, short_classes, stratified_sample, stratified_split


@pytest.fixture(scope="module")
def images(spark):
    rows = [(f"img{label}_{index:03d}", label) for label in range(10) for index in range(30 + label)]
    return spark.createDataFrame(rows, "image_id string, label int")


def ids(frame):
    return sorted(row["image_id"] for row in frame.select("image_id").collect())


def test_sample_has_exactly_n_per_class(images):
    counts = {r["label"]: r["count"] for r in stratified_sample(images, 7, seed=1).groupBy("label").count().collect()}
    assert counts == {label: 7 for label in range(10)}


def test_sample_is_reproducible_whatever_the_partitioning(images):
    first = ids(stratified_sample(images, 5, seed=3))
    again = ids(stratified_sample(images.repartition(7).orderBy("label"), 5, seed=3))
    other_seed = ids(stratified_sample(images, 5, seed=4))
    assert first == again
    assert first != other_seed


def test_split_is_exact_per_class(images):
    sample = stratified_sample(images, 10, seed=0)
    split = stratified_split(sample, 0.8, seed=42)
    per_class = {(r["label"], r["is_train"]): r["count"] for r in split.groupBy("label", "is_train").count().collect()}
    assert all(per_class[(label, True)] == 8 and per_class[(label, False)] == 2 for label in range(10))
    assert ids(split.where("is_train")) == ids(stratified_split(sample.repartition(3), 0.8, seed=42).where("is_train"))


def test_the_split_always_leaves_a_hold_out(images):
    for per_class, fraction in ((2, 0.8), (3, 0.9)):  # round(2 × 0.8) = 2, round(3 × 0.9) = 3
        split = stratified_split(stratified_sample(images, per_class, seed=0), fraction, seed=42)
        counts = {(r["label"], r["is_train"]): r["count"] for r in split.groupBy("label", "is_train").count().collect()}
        assert all(counts[(label, False)] >= 1 and counts[(label, True)] >= 1 for label in range(10)), counts


def test_short_classes_names_each_digit_drawn_too_few_times():
    drawn = {str(digit): 4 for digit in range(10)} | {"3": 3}
    del drawn["7"]
    assert short_classes(drawn, 4) == {"3": 3, "7": 0}
    assert short_classes(drawn, 3) == {"7": 0}


def test_ids_hash_is_order_independent():
    assert ids_hash(["a", "b"]) == ids_hash(["b", "a"]) != ids_hash(["a", "c"])


def test_copies_of_the_same_bytes_are_sampled_once_as_their_first_name(spark):
    rows = [(f"img{label}_{index}", label, f"sha{label}_{index}") for label in range(10) for index in range(3)]
    rows += [(f"dt=2026-11-01/b/img{label}_0", label, f"sha{label}_0") for label in range(10)]  # a batch's copies
    rows += [("img0_0_copy", 0, "sha0_0")]
    frame = spark.createDataFrame(rows, "image_id string, label int, content_sha256 string")
    sample = stratified_sample(distinct_content(frame), 3, seed=5)
    assert sample.count() == 30
    assert sample.select("content_sha256").distinct().count() == 30
    first_names = {content: min(name for name, _, other in rows if other == content) for _, _, content in rows}
    assert ids(sample) == sorted(first_names.values())
