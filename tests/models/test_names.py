"""Tests of class-name parsing, canonical COCO spellings and the names precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specks.core.names import COCO80_NAMES, canonical_names, parse_names_metadata, resolve_names
from specks.errors import ModelLoadError

PLACEHOLDER_DICT = str({i: str(i) for i in range(80)})  # what Ultralytics writes when it knew no names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("{0: 'person', 1: 'bicycle'}", ["person", "bicycle"], id="python-dict"),
        pytest.param(str(dict(enumerate(COCO80_NAMES))), list(COCO80_NAMES), id="python-dict-coco80"),
        pytest.param("{1: 'dog', 0: 'cat'}", ["cat", "dog"], id="python-dict-unordered"),
        pytest.param('{"0": "cat", "1": "dog"}', ["cat", "dog"], id="json-dict"),
        pytest.param("['cat', 'dog']", ["cat", "dog"], id="python-list"),
        pytest.param('["cat", "dog"]', ["cat", "dog"], id="json-list"),
        pytest.param("{0: 'traffic light'}", ["traffic light"], id="name-with-space"),
        pytest.param(PLACEHOLDER_DICT, None, id="placeholders-dict"),
        pytest.param(json.dumps([str(i) for i in range(3)]), None, id="placeholders-list"),
        pytest.param("{0: 'a', 2: 'b'}", None, id="non-contiguous-keys"),
        pytest.param("{1: 'a', 2: 'b'}", None, id="keys-not-from-zero"),
        pytest.param("{'a': 'b'}", None, id="non-integer-keys"),
        pytest.param("{}", None, id="empty-dict"),
        pytest.param("[]", None, id="empty-list"),
        pytest.param("", None, id="empty-string"),
        pytest.param("person, bicycle", None, id="comma-separated"),
        pytest.param("{0: 'a'", None, id="unterminated"),
        pytest.param("42", None, id="number"),
        pytest.param("'person'", None, id="bare-string"),
        pytest.param("{[1]: 'a'}", None, id="unhashable-key"),
        pytest.param("[" * 10_000, None, id="deeply-nested"),
    ],
)
def test_parse_names_metadata(text: str, expected: list[str] | None) -> None:
    assert parse_names_metadata(text) == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(["motorbike"], ["motorcycle"], id="motorbike"),
        pytest.param(["aeroplane"], ["airplane"], id="aeroplane"),
        pytest.param(["sofa"], ["couch"], id="sofa"),
        pytest.param(["pottedplant"], ["potted plant"], id="pottedplant"),
        pytest.param(["diningtable"], ["dining table"], id="diningtable"),
        pytest.param(["tvmonitor"], ["tv"], id="tvmonitor"),
        pytest.param([" Motorbike ", "TVMonitor"], ["motorcycle", "tv"], id="case-and-space"),
        pytest.param(["person", " traffic light "], ["person", "traffic light"], id="official-names-stripped"),
        pytest.param(["Widget"], ["Widget"], id="other-names-keep-case"),
        pytest.param([], [], id="empty"),
    ],
)
def test_canonical_names(names: list[str], expected: list[str]) -> None:
    assert canonical_names(names) == expected


def write_names(folder: Path, file_name: str, names: list[str]) -> Path:
    path = folder / file_name
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return path


METADATA_CAT_DOG = "{0: 'cat', 1: 'dog'}"


@pytest.mark.parametrize(
    ("metadata", "files", "num_classes", "expected"),
    [
        pytest.param(METADATA_CAT_DOG, {"det.names": ["a", "b"]}, 2, ["cat", "dog"], id="metadata-beats-file"),
        pytest.param(PLACEHOLDER_DICT, {"det.names": ["a", "b"]}, 2, ["a", "b"], id="placeholders-use-file"),
        pytest.param(None, {"coco.names": ["motorbike", "sofa"]}, 2, ["motorcycle", "couch"], id="coco-names-file"),
        pytest.param(None, {"classes.txt": ["a", "", "b"]}, 2, ["a", "b"], id="classes-txt-blank-lines"),
        pytest.param(None, {"names.txt": ["a", "b"]}, 2, ["a", "b"], id="names-txt"),
        pytest.param(
            None,
            {"det.names": ["own"], "coco.names": ["shared"]},
            1,
            ["own"],
            id="stem-names-beats-coco-names",
        ),
        pytest.param(None, {"other.names": ["x"]}, 2, ["class_0", "class_1"], id="unrelated-file-ignored"),
        pytest.param(PLACEHOLDER_DICT, {}, 80, list(COCO80_NAMES), id="placeholders-80-coco"),
        pytest.param(None, {}, 80, list(COCO80_NAMES), id="no-names-80-coco"),
        pytest.param(None, {}, 3, ["class_0", "class_1", "class_2"], id="no-names-by-index"),
        pytest.param(None, {"det.names": ["a", "b"]}, 4, ["a", "b", "class_2", "class_3"], id="short-file-padded"),
        pytest.param(None, {"det.names": ["a", "b", "c"]}, 2, ["a", "b"], id="long-file-truncated"),
        pytest.param("['cat']", {}, 2, ["cat", "class_1"], id="short-metadata-padded"),
        pytest.param("{0: 'aeroplane'}", {}, 1, ["airplane"], id="metadata-canonicalised"),
    ],
)
def test_resolve_names(
    tmp_path: Path, metadata: str | None, files: dict[str, list[str]], num_classes: int, expected: list[str]
) -> None:
    for file_name, names in files.items():
        write_names(tmp_path, file_name, names)

    assert resolve_names(metadata, tmp_path / "det.onnx", num_classes) == expected


def test_an_unreadable_names_file_is_a_model_load_error(tmp_path: Path) -> None:
    (tmp_path / "det.names").write_bytes(b"cat\n\xff\xfe\n")
    with pytest.raises(ModelLoadError, match="cannot read the class names file"):
        resolve_names(None, tmp_path / "det.onnx", 2)
