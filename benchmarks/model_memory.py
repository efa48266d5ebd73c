"""How much resident memory (RSS) each model costs a worker, measured in fresh processes.

For each model, a new Python process imports what a Specks worker imports (Flask app, NumPy,
Pillow, ONNX Runtime), then reads its own VmRSS:

  base       after the imports, before any model;
  loaded     after ``load_detector`` (the session, its weights, and the probe run at the model's
             nominal input size, i.e. the warm-up every worker does);
  full       after one full-image request on the photo (``"slice": false``);
  sliced     after one request with the server's defaults (small-object mode on a large photo:
             a dynamic-size model runs the whole 2000x1500 photo at native size, a fixed-size one
             runs 640-pixel tiles in batches).

The model's cost is ``loaded - base`` at rest and ``sliced - base`` once the ONNX Runtime arena has
grown for the largest input it was given. ``specks.service.memory`` estimates a worker from these figures.

``--worker`` instead starts one real ``specks serve`` worker serving every model given (as
m1=..., m2=..., plus the embedded default, always served), sends each model one full-image and
one default request, and compares the worker's RSS with ``specks.service.memory``'s estimate.

    .venv/bin/python benchmarks/model_memory.py \
        --image ../shared/data/visdrone_dev10/images/9999999_00023_d_0000001.jpg \
        default ../shared/models/yolov5n.onnx ../shared/models/yolov5n_dynamic.onnx \
        ../shared/models/yolo11n_random_weights_dynamic.onnx ../shared/models/yolo26n_random_weights_e2e_dynamic.onnx
    .venv/bin/python benchmarks/model_memory.py --worker --image ... default   # then with the other models
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import json, sys
from pathlib import Path

def rss_mb():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

import specks.web.app, specks.models.onnx_model, specks.core.visualize  # what a worker imports
from specks.config import Settings
from specks.core.options import DetectOptions
from specks.service.loading import load_detector

spec, image, threads = sys.argv[1], Path(sys.argv[2]).read_bytes(), int(sys.argv[3])
figures = {"base": rss_mb()}
detector = load_detector(Settings(model=None if spec == "default" else spec), threads=threads)
figures["loaded"] = rss_mb()
detector.predict_bytes(image, DetectOptions(slice=False))
figures["full"] = rss_mb()
detector.predict_bytes(image, DetectOptions())
figures["sliced"] = rss_mb()
figures["onnx_bytes"] = Path(detector.model.info.path).stat().st_size if spec != "default" else None
figures["name"] = detector.model.info.name
print(json.dumps(figures))
"""


def measure(spec: str, image: Path, threads: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, spec, str(image), str(threads)], capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["onnx_bytes"] is None:  # the embedded default: the converted ONNX file in the cache
        from specks.config import Settings
        from specks.models import prepare_model

        figures["onnx_bytes"] = prepare_model(None, Settings().cache_dir).onnx_path.stat().st_size
    return figures


def measure_worker(specs: list[str], image: Path) -> dict[str, object]:
    import base64
    import http.client

    import orjson

    from specks.config import ModelSpec, Settings
    from specks.models import prepare_model
    from specks.service.memory import estimate_worker_memory
    from specks.service.served import served_models
    from specks.tools.benchmark import post_predict
    from specks.tools.server_process import ServerProcess, child_pids, rss_mb

    settings = Settings(models=tuple(ModelSpec(f"m{i + 1}", spec) for i, spec in enumerate(specs)))
    served = served_models(settings)
    sizes = {spec.name: prepare_model(spec.path, settings.cache_dir).onnx_path.stat().st_size for spec in served}
    estimate = estimate_worker_memory(settings, sizes)
    server = ServerProcess(settings, workers=1, threads=1)
    try:
        server.wait_ready()
        (worker,) = child_pids(server.pid)
        at_ready = rss_mb(worker)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        image_b64 = base64.b64encode(image.read_bytes()).decode("ascii")
        for spec in served:
            for extra in ({"slice": False}, {}):
                post_predict(connection, orjson.dumps({"image": image_b64, "model": spec.name, **extra}))
        connection.close()
        after = rss_mb(worker)
    finally:
        server.stop()
    return {
        "models": [spec.name for spec in served],
        "rss_at_ready_mb": at_ready,
        "rss_after_requests_mb": after,
        "estimate": estimate.describe(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model files, or 'default' for the embedded default")
    parser.add_argument("--image", type=Path, required=True, help="a large photo (e.g. 2000x1500)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (a worker's share; default 1)")
    parser.add_argument("--worker", action="store_true", help="measure one live worker serving all the models")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_worker([m for m in args.models if m != "default"], args.image), indent=2))
        return 0
    rows = [measure(spec, args.image, args.threads) for spec in args.models]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| model | ONNX file MiB | base RSS MiB | + loaded, warm | + full-image request | + sliced request |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        base = row["base"]
        print(
            f"| {row['name']} | {row['onnx_bytes'] / 2**20:.1f} | {base:.0f} | {row['loaded'] - base:+.0f} "
            f"| {row['full'] - base:+.0f} | {row['sliced'] - base:+.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
