"""AP50 and time per image through a live server's POST /predict, with the request's default options.

Starts `specks serve --model MODEL` on loopback (the embedded default is served beside it), sends
every image of a COCO-format folder as the seed client does (a JSON body with the base64 image and
`"model"` set, and `"conf"` only when --conf is given), scores the answers with `specks eval`'s COCO code, and does the
same with `"model": "yolox-nano"` (the embedded default) on the same server, the two models
alternating image by image. Prints AP50, AP, AP_small, AP50 per category and the median
milliseconds per request.

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

from specks.config import Settings
from specks.models import DEFAULT_MODEL_NAME
from specks.tools.evaluation import CocoDataset, score_coco
from specks.tools.server_process import ServerProcess


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


def ap50_by_category(dataset: CocoDataset, results: list[dict[str, Any]]) -> dict[str, float]:
    """AP50 of each category (pycocotools, at most 500 detections per image and category)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = dataset.annotations
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes(results), "bbox") if results else None
        if evaluator is None:
            return {c["name"]: 0.0 for c in dataset.annotations["categories"]}
        evaluator.params.maxDets = [500]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, [recall, category], all areas
    scores = {}
    for index, category in enumerate(dataset.annotations["categories"]):
        column = precision[:, index]
        scores[category["name"]] = float(column[column > -1].mean()) if (column > -1).any() else 0.0
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="what --model names (a file or a named model)")
    parser.add_argument("dataset", type=Path, help="a COCO-format folder")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--conf", type=float, help="send this confidence floor (default: none, the server's 0.25)")
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
                body = {"image": payload, "model": model} | ({} if args.conf is None else {"conf": args.conf})
                started = time.perf_counter()
                answer = session.post(server.url + "/predict", data=json.dumps(body),
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
        per_category = ", ".join(f"{name} {ap:.3f}" for name, ap in ap50_by_category(dataset, run["results"]).items())
        print(f"  {'':22s} AP50 per category: {per_category}")
    ratio = statistics.median(runs[name]["ms"]) / statistics.median(runs[DEFAULT_MODEL_NAME]["ms"])
    print(f"  time per request, {name} / {DEFAULT_MODEL_NAME}: x{ratio:.2f}")


if __name__ == "__main__":
    main()
