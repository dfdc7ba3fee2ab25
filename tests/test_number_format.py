"""Numbers for people (probe/view.py): grouped thousands, fixed significant digits, no scientific notation."""

from __future__ import annotations

import math

import pytest

from probe.view import Column, format_number, format_percent, format_value, make_table


@pytest.mark.parametrize("value, digits, text", [
    (12134.0, 3, "12,100"),  # more integer digits than significant ones: rounded at the third
    (12134.0, 4, "12,130"),
    (905.7, 3, "906"),
    (175.0, 4, "175.0"),  # trailing zeros kept: the column reads at one precision
    (1.0, 4, "1.000"),
    (0.004867, 3, "0.00487"),
    (9.996, 3, "10.0"),  # rounding up a decade keeps three digits
    (99.95, 3, "100"),
    (-1234.5, 3, "-1,230"),
    (204000.0, 3, "204,000"),
    (1.213e4, 4, "12,130"),  # the 1.213e+04 tokens/s
    (0.0, 3, "0"),
    (1528, None, "1,528"),  # integers as they are, grouped
    (30522, None, "30,522"),
    (12, 3, "12"),
    (12345, 3, "12,300"),
    (0.5, None, "0.5"),  # no digits given: 4 significant, trailing zeros dropped
    (100.0, None, "100"),
    (1e-9, None, "0.000000001"),
    (4.858e4, None, "48,580"),
])
def test_format_number(value, digits, text):
    assert format_number(value, digits) == text


def test_format_number_never_writes_scientific_notation():
    for exponent in range(-12, 16):
        for mantissa in (1.0, 1.2345, 9.9999):
            text = format_number(mantissa * 10.0**exponent, 3)
            assert "e" not in text.lower(), text
            assert float(text.replace(",", "")) == pytest.approx(mantissa * 10.0**exponent, rel=5e-3)


def test_non_finite_and_missing_values_are_named():
    assert format_number(math.nan, 3) == "nan"
    assert format_value(None) == "not available"
    assert format_value(True) == "yes"
    assert format_percent(0.0123) == "1.23%"
    assert format_percent(None) == "not available"


def test_make_table_formats_numbers_by_column_and_leaves_text_alone():
    table = make_table("t", (Column("backend"), Column("n"), Column("p50 (ms)", 3)),
                       [("a", 1200, 4.7171), ("b", 3, 12345.6), ("c", None, "n/a")])
    assert table.columns == ("backend", "n", "p50 (ms)")
    assert table.rows == (("a", "1,200", "4.72"), ("b", "3", "12,300"), ("c", "not available", "n/a"))
    with pytest.raises(ValueError):
        make_table("t", (Column("a"),), [("x", "y")])  # a row that does not match the columns
