"""AP50 and time per image through a live server's POST /predict, with the request's default options.

Starts `specks serve --model MODEL` on loopback (the embedded default is served beside it), sends
every image of a COCO-format folder as the seed client does (a JSON body with the base64 image and
`"model"` set, no other option), scores the answers with `specks eval`'s COCO code, and does the
same with `"model": "yolox-nano"` (the embedded default) on the same server, the two models
alternating image by image. Prints AP50, AP, AP_small and the median milliseconds per request.

    .venv/bin/python benchmarks/predict_ap.py yolox-nano-thermal ../shared/data/hit_uav_val
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import requests

from specks.benchmark import ServerProcess
from specks.config import Settings
from specks.evaluation import CocoDataset, score_coco
from specks.models import DEFAULT_MODEL_NAME


def coco_results(image_id: int, answer: dict[str, Any], category_by_name: dict[str, int]) -> list[dict[str, Any]]:
    results = []
    for found in answer["detections"]:
        if found["label"] in category_by_name:
            box = found["box"]
            results.append({
                "image_id": image_id, "category_id": category_by_name[found["label"]],
                "bbox": [box["x1"], box["y1"], box["x2"] - box["x1"], box["y2"] - box["y1"]],
                "score": found["confidence"],
            })  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="what --model names (a file or a named model)")
    parser.add_argument("dataset", type=Path, help="a COCO-format folder")
    parser.add_argument("--limit", type=int, help="only the first N images")
    args = parser.parse_args()
    dataset = CocoDataset.load(args.dataset)
    if args.limit:
        dataset = dataset.first(args.limit)
    category_by_name = {c["name"]: c["id"] for c in dataset.annotations["categories"]}
    settings = dataclasses.replace(Settings.from_env(), model=args.model)
    server = ServerProcess(settings)
    try:
        server.wait_until_all_workers_ready()
        served = requests.get(server.url + "/models", timeout=30).json()
        name = served["default"]
        runs: dict[str, dict[str, list[Any]]] = {m: {"results": [], "ms": []} for m in (name, DEFAULT_MODEL_NAME)}
        session = requests.Session()
        for image in dataset.images:
            payload = base64.b64encode(dataset.image_path(image).read_bytes()).decode("ascii")
            for model, run in runs.items():
                started = time.perf_counter()
                answer = session.post(server.url + "/predict", data=json.dumps({"image": payload, "model": model}),
                                      headers={"Content-type": "application/json"}, timeout=120)  # fmt: skip
                run["ms"].append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
                run["results"].extend(coco_results(image["id"], answer.json(), category_by_name))
    finally:
        server.stop()
    print(f"{args.dataset}: {len(dataset.images)} images through POST /predict, default options")
    for model, run in runs.items():
        scores = score_coco(dataset.annotations, run["results"], max_dets=500)
        print(f"  {model:22s} AP50 {scores['AP50']:.3f}  AP {scores['AP']:.3f}  AP_small {scores['AP_small']:.3f}  "
              f"median {statistics.median(run['ms']):.1f} ms per request")
    ratio = statistics.median(runs[name]["ms"]) / statistics.median(runs[DEFAULT_MODEL_NAME]["ms"])
    print(f"  time per request, {name} / {DEFAULT_MODEL_NAME}: x{ratio:.2f}")


if __name__ == "__main__":
    main()
