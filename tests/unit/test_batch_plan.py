"""Splitting an input frame into payloads: by rows, or by a byte budget every encoded part stays under."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

from mf_sm_async import ConfigError
from mf_sm_async.batch import plan
from mf_sm_async.batch.codecs import CONTENT_TYPES, CSV, JSON, JSONLINES, NPY, PARQUET, encode_rows
from mf_sm_async.batch.plan import Part, plan_parts, split_part


def covered_rows(parts):
    return [row for part in parts for row in range(part.start, part.stop)]


def numbers_frame(rows=3000, columns=64, seed=0):
    return pd.DataFrame(np.random.default_rng(seed).standard_normal((rows, columns)),
                        columns=[f"f{i}" for i in range(columns)])


def mixed_frame(rows=2000, seed=0):
    rng = np.random.default_rng(seed)
    words = np.array(["ok", "naïve café", "a much longer sentence of free text " * 3, "日本語"])
    return pd.DataFrame({
        "x": rng.standard_normal(rows),
        "n": rng.integers(-10**12, 10**12, rows),
        "flag": rng.random(rows) < 0.5,
        "text": words[rng.integers(0, len(words), rows)],
    })


def test_parts_of_a_fixed_number_of_rows_cover_the_frame_in_order():
    parts = plan_parts(numbers_frame(1234, 2), rows_per_payload=500)
    assert [(p.number, p.key, p.start, p.stop, p.rows) for p in parts] == [
        (0, "00000", 0, 500, 500), (1, "00001", 500, 1000, 500), (2, "00002", 1000, 1234, 234)]


def test_default_is_500_rows_per_payload():
    assert [part.rows for part in plan_parts(numbers_frame(1001, 1))] == [500, 500, 1]


@pytest.mark.parametrize("index", [
    pd.Index(["b", "a", "b", "c", "a", "a", "z"]),  # strings, repeated
    pd.MultiIndex.from_tuples([(i % 2, "x") for i in range(7)]),
    pd.Index([10, 10, 3, 3, 3, -1, 0]),
])
def test_parts_are_positions_whatever_the_index(index):
    frame = pd.DataFrame({"x": range(7)}, index=index)
    parts = plan_parts(frame, rows_per_payload=3)
    assert covered_rows(parts) == list(range(7))
    assert pd.concat([frame.iloc[p.start:p.stop] for p in parts]).equals(frame)


@pytest.mark.parametrize(("frame", "content_type"), [
    *[(numbers_frame(), content_type) for content_type in CONTENT_TYPES],
    *[(mixed_frame(), content_type) for content_type in (JSONLINES, JSON, PARQUET)],
    (mixed_frame().drop(columns="text"), CSV),
    (mixed_frame().drop(columns="text"), NPY),
])
@pytest.mark.parametrize("budget", [60_000, 600_000])
def test_every_part_encodes_under_the_byte_budget(frame, content_type, budget):
    parts = plan_parts(frame, max_payload_bytes=budget, content_type=content_type)
    assert covered_rows(parts) == list(range(len(frame)))
    assert max(len(encode_rows(frame.iloc[p.start:p.stop], content_type)) for p in parts) <= budget


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("budget", [60_000, 600_000])
def test_rows_of_similar_size_fill_most_of_the_budget(content_type, budget):
    frame = numbers_frame()
    parts = plan_parts(frame, max_payload_bytes=budget, content_type=content_type)
    assert len(encode_rows(frame.iloc[parts[0].start:parts[0].stop], content_type)) > 0.75 * budget


def test_a_row_larger_than_the_budget_is_a_part_of_its_own():
    parts = plan_parts(numbers_frame(5, 64), max_payload_bytes=100)
    assert [part.rows for part in parts] == [1] * 5


def test_a_budget_larger_than_the_frame_is_one_part():
    assert [part.rows for part in plan_parts(numbers_frame(300, 4), max_payload_bytes=plan.MAX_PAYLOAD_BYTES)] == [300]


@pytest.mark.parametrize("kwargs", [{}, {"rows_per_payload": 10}, {"max_payload_bytes": 1000}])
def test_an_empty_frame_has_no_parts(kwargs):
    assert plan_parts(pd.DataFrame({"x": pd.Series([], dtype=float)}), **kwargs) == []


INT_ROWS = "an integer from 1 to 1000000"
INT_BYTES = r"an integer from 1 to 1073741824 \(1 GiB\)"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rows_per_payload": 0}, f"rows_per_payload=0 is invalid: allowed {INT_ROWS}"),
    ({"rows_per_payload": 1_000_001}, f"rows_per_payload=1000001 is invalid: allowed {INT_ROWS}"),
    ({"rows_per_payload": 2.0}, f"rows_per_payload=2.0 is invalid: allowed {INT_ROWS}"),
    ({"rows_per_payload": True}, f"rows_per_payload=True is invalid: allowed {INT_ROWS}"),
    ({"rows_per_payload": "500"}, f"rows_per_payload='500' is invalid: allowed {INT_ROWS}"),
    ({"max_payload_bytes": 0}, f"max_payload_bytes=0 is invalid: allowed {INT_BYTES}"),
    ({"max_payload_bytes": 2**30 + 1}, f"max_payload_bytes=1073741825 is invalid: allowed {INT_BYTES}"),
    ({"max_payload_bytes": 1e6}, f"max_payload_bytes=1000000.0 is invalid: allowed {INT_BYTES}"),
    ({"rows_per_payload": 10, "max_payload_bytes": 1000}, "max_payload_bytes=1000 is invalid: allowed None when "
                                                          "rows_per_payload is given"),
    ({"content_type": "text/html"}, "content_type='text/html' is invalid: allowed one of application/jsonlines"),
])
def test_invalid_settings_name_the_field_value_and_what_is_allowed(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        plan_parts(numbers_frame(10, 2), **kwargs)


def test_numpy_integers_are_accepted():
    assert [p.rows for p in plan_parts(numbers_frame(10, 2), rows_per_payload=np.int64(4))] == [4, 4, 2]


def test_a_frame_csv_cannot_carry_is_refused_when_planning_by_bytes():
    with pytest.raises(ConfigError, match=r"frame\['text'\]\.dtype"):
        plan_parts(mixed_frame(10), max_payload_bytes=10_000, content_type=CSV)


def test_split_part_halves_a_part_under_new_keys():
    left, right = split_part(Part(7, 100, 105))
    assert (left.start, left.stop, right.start, right.stop) == (100, 102, 102, 105)
    assert (left.key, right.key) == ("00007.0", "00007.1")
    assert left.number == right.number == 7


def test_a_one_row_part_cannot_be_split():
    part = Part(2, 40, 41)
    assert split_part(part) == [part]


def test_splitting_down_to_single_rows_gives_distinct_keys_that_cover_the_part():
    parts = plan_parts(numbers_frame(23, 1), rows_per_payload=10)
    pending, singles, keys = list(parts), [], {p.key for p in parts}
    while pending:
        children = split_part(pending.pop())
        if len(children) == 1:
            singles.extend(children)
            continue
        assert not keys & {child.key for child in children}  # never a key already used, top-level or not
        keys |= {child.key for child in children}
        pending.extend(children)
    assert sorted(covered_rows(singles)) == list(range(23))
    assert len({part.key for part in singles}) == 23


def test_docstring_examples_run():
    assert doctest.testmod(plan).failed == 0
