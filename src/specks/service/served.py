"""Which models a worker serves, and under which names, decided from the settings alone.

Kept apart from ``holder`` (which loads them) so that the gunicorn master can check and prepare the
configured models without importing ONNX Runtime (see ``specks.web.server``).
"""

from __future__ import annotations

from ..config import ModelSpec, Settings
from ..errors import ConfigError, SpecksError
from ..models import DEFAULT_MODEL_NAME, model_name


def served_models(settings: Settings) -> tuple[ModelSpec, ...]:
    """Every model a worker serves, the default first: the bare model, the named ones, the embedded default.

    A bare path is served under its file name (``model_name``); two models under one name are a
    ConfigError.
    """
    served: list[ModelSpec] = []
    if settings.model is not None:
        served.append(ModelSpec(_bare_name(settings.model), settings.model))
    served.extend(settings.models)
    if all(spec.name != DEFAULT_MODEL_NAME for spec in served):  # SPECKS_MODEL may name the default itself
        served.append(ModelSpec(DEFAULT_MODEL_NAME, None))
    names = [spec.name for spec in served]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(
            f"two models would be served as {', '.join(map(repr, duplicates))}; "
            "give one of them a name of its own with --model NAME=PATH"
        )
    return tuple(served)


def _bare_name(path: str) -> str:
    try:
        return model_name(path)
    except SpecksError:  # an unusable path is reported when it fails to load (GET /ready says why)
        return path.rsplit("/", 1)[-1] or path
