"""ToyBench: the world classifier, the metrics and the evaluate runner (docs/toybench.md)."""

from accvideo.evaluate.classifier import ClassifierConfig, VideoClassifier, classify, load_classifier
from accvideo.evaluate.metrics import (
    alignment_accuracy,
    frechet_distance,
    motion_radius,
    temporal_consistency,
    warp_error,
)
from accvideo.evaluate.run import evaluate_videos

__all__ = [
    "ClassifierConfig",
    "VideoClassifier",
    "alignment_accuracy",
    "classify",
    "evaluate_videos",
    "frechet_distance",
    "load_classifier",
    "motion_radius",
    "temporal_consistency",
    "warp_error",
]
