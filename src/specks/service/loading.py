"""Loading a served model as a ``Detector``: which file, under which name, with which profile.

The server (``service.holder``), the command line and the tools all load models through
``load_detector``, so a model answers the same wherever it runs.
"""

from __future__ import annotations

from ..config import ModelSpec, Settings
from ..core.pipeline import Detector
from ..models import load_model
from ..models.letterboxer import ort_detector
from ..models.onnx_model import OnnxModel
from ..models.profiles import find_profile
from .served import served_models


def load_detector(
    settings: Settings, *, threads: int | None = None, spec: ModelSpec | None = None, use_profile: bool = True
) -> Detector[OnnxModel]:
    """Load ``spec`` with the settings' limits and slicing defaults, and its model profile.

    spec:        None loads the model requests get when they name none: ``settings.model`` (under its
                 file name), else the first of ``settings.models``, else the embedded default.
    threads:     ONNX Runtime intra-op threads; None gives one process every core (or SPECKS_THREADS).
    use_profile: apply the profile in force: ``settings.profile`` for the default model, else a
                 ``<model file>.specks.json`` beside the model.
    """
    threads = settings.threads_for(1) if threads is None else threads
    # --profile / SPECKS_PROFILE is the default model's (the one requests get when they name none).
    explicit_profile = settings.profile if spec is None or spec == served_models(settings)[0] else None
    if spec is None and settings.model is None and settings.models:
        spec = settings.models[0]
    path, name = (settings.model, None) if spec is None else (spec.path, spec.name)
    profile = find_profile(path, explicit_profile) if use_profile else None
    model = load_model(
        path,
        runtime=settings.runtime,
        threads=threads,
        cache_dir=settings.cache_dir,
        name=name,
        overrides=profile.overrides if profile else None,
    )
    return ort_detector(model, settings.limits, settings.slicing, profile=profile)
