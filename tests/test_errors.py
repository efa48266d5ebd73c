"""Quoting client input in messages: ``errors.clipped`` and ``errors.shown`` keep it short."""

from __future__ import annotations

import pytest

from specks.errors import MAX_SHOWN_CHARS, clipped, shown


def test_clipped_keeps_short_text_whole() -> None:
    assert clipped("people") == "people"
    assert clipped("x" * MAX_SHOWN_CHARS) == "x" * MAX_SHOWN_CHARS


def test_clipped_keeps_the_start_and_end_and_names_the_length() -> None:
    text = "a" * 10 + "m" * 15_000_000 + "z" * 10

    short = clipped(text)

    assert len(short) <= MAX_SHOWN_CHARS
    assert short.startswith("aaaaaaaaaa")
    assert short.endswith("zzzzzzzzzz")
    assert "...(15000020 characters)..." in short


def test_clipped_to_less_than_its_marker_is_the_marker() -> None:
    assert clipped("x" * 1000, 5) == "...(1000 characters)..."
    assert clipped("abc", 1) == "abc"  # never longer than the text itself


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("forklift", "'forklift'"),
        (12, "12"),
        (1.5, "1.5"),
        (None, "None"),
        (True, "True"),
        ([], "[]"),
        ({}, "{}"),
        (["car", 2], "['car', 2]"),
        ({"type": "url"}, "{'type': 'url'}"),
    ],
)
def test_shown_is_the_repr_of_small_values(value: object, expected: str) -> None:
    assert shown(value) == expected


def test_shown_cuts_a_long_string_inside_its_quotes() -> None:
    text = shown("n" * 15_000_000)

    assert text.startswith("'n") and text.endswith("n'")
    assert "...(15000000 characters)..." in text
    assert len(text) <= MAX_SHOWN_CHARS + 2


def test_shown_escapes_control_characters() -> None:
    assert "\n" not in shown("a\nb")


@pytest.mark.parametrize(
    ("value", "count"),
    [
        pytest.param([0.5] * 5000, "5000 items", id="long-list"),
        pytest.param(["x" * 100_000] * 65, "65 items", id="list-of-long-strings"),
        pytest.param([{"type": "base64", "value": "A" * 90_000}] * 65, "65 items", id="roboflow-images"),
        pytest.param({f"key{i}": i for i in range(100_000)}, "100000 items", id="many-keys"),
    ],
)
def test_shown_names_how_many_items_a_long_container_holds(value: object, count: str) -> None:
    text = shown(value)

    assert count in text
    assert len(text) <= 2 * MAX_SHOWN_CHARS


def test_shown_takes_its_own_length() -> None:
    assert len(shown("q" * 1000, 40)) <= 42
    assert shown("q" * 30, 40) == repr("q" * 30)
