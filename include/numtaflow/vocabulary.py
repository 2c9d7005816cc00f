"""Facts of the problem that every layer shares, stated once: the digits, the backbones the
featurizer knows, the logistic-regression presets and how views are numbered.

Pure data, no heavy imports: the settings schema, the DAG file and the Spark jobs all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

DIGITS = tuple(range(10))  # the classes: Bengali digits 0-9, labelled by their value
DIGIT_LABELS = tuple(str(digit) for digit in DIGITS)  # the labels as CSVs and class folders write them
# an image holds a digit to learn from when both sides have at least MIN_IMAGE_SIDE pixels and its darkest and
# lightest pixels are at least MIN_INK_CONTRAST of 255 grey levels apart; validation excludes the others
MIN_IMAGE_SIDE = 8
MIN_INK_CONTRAST = 32


@dataclass(frozen=True)
class Backbone:
    name: str
    module: str  # keras.applications sub-module holding preprocess_input
    native_size: int
    weights_file: str
    recommended_layers: tuple[str, ...] = ()  # what feature_layers="auto" pools; empty: the last layer
    recommended_size: int = 0  # what image_size=0 feeds the network; 0: its native size
    min_size: int = 32  # the smallest input keras.applications builds it for
    # TensorFlow threads per Spark task core: 2 lets a worker's large convolutions use the core the
    # other worker leaves idle while it prepares images in Python (make bench, README: the heavy backbones)
    tf_threads_per_core: int = 1

    @property
    def default_size(self) -> int:
        return self.recommended_size or self.native_size


BACKBONES = {
    spec.name: spec
    for spec in (
        Backbone(
            "MobileNetV2", "mobilenet_v2", 224, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
            # chosen by cross-validation inside the training samples (README, Model quality):
            # mid-level strokes (blocks 13, 14, 16) beside the last layer, blocks 13 and 14 on a
            # 2 x 2 grid, at 128 px, where strokes suit the ImageNet filters better than at 224
            # (and featurizing is about 3x faster)
            ("block_13_expand_relu:2", "block_14_expand_relu:2", "block_16_project", "out_relu"),
            recommended_size=128,
        ),
        Backbone("EfficientNetB0", "efficientnet", 224, "efficientnetb0_notop.h5"),
        Backbone("InceptionV3", "inception_v3", 299, "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 min_size=75),
        Backbone("Xception", "xception", 299, "xception_weights_tf_dim_ordering_tf_kernels_notop.h5", min_size=71),
        Backbone("ResNet50", "resnet50", 224, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        Backbone("VGG16", "vgg16", 224, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", tf_threads_per_core=2),
        Backbone("VGG19", "vgg19", 224, "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", tf_threads_per_core=2),
    )
}


@dataclass(frozen=True)
class LrParams:
    max_iter: int
    reg_param: float
    elastic_net_param: float


# ``study`` reproduces the original study's setup; ``tuned`` is the default, chosen by
# cross-validation inside training samples only (benchmarks/select_lr.py, README)
LR_PRESETS = {
    "study": LrParams(max_iter=5, reg_param=0.03, elastic_net_param=0.5),
    "tuned": LrParams(max_iter=100, reg_param=0.01, elastic_net_param=0.0),
}
LR_CROSS_VALIDATED = "cv"  # the preset that cross-validates inside the run's own training split
LR_PRESET_NAMES = (*LR_PRESETS, LR_CROSS_VALIDATED)

MAX_POOL_GRID = 7  # the largest g in a feature layer's "name:g" grid
EVAL_VIEW_BASE = 1000  # evaluation view v is drawn as view EVAL_VIEW_BASE + v, never a training copy's number


def eval_view_id(number: int) -> int:
    """The view id of test-time view ``number`` (1, 2, ...), apart from every training copy's."""
    return EVAL_VIEW_BASE + number
