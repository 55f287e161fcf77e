"""The settings' validators: what counts as an integer or a number, and the error they raise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from charrnn.config import ModelConfig, TrainConfig, check, is_int, is_number
from charrnn.errors import ConfigError


def test_check_raises_the_message_as_a_config_error():
    check(True, "never shown")
    with pytest.raises(ConfigError, match=r"^hidden size is wrong$") as info:
        check(False, "hidden size is wrong")
    assert info.value.exit_code == 2


@pytest.mark.parametrize("x,plain,with_numpy", [
    (3, True, True), (-2**70, True, True), (True, False, False), (3.0, False, False),
    (np.int64(3), False, True), (np.uint8(0), False, True), (np.bool_(True), False, False),
    ("3", False, False), (None, False, False),
])
def test_is_int(x, plain, with_numpy):
    assert is_int(x) is plain
    assert is_int(x, numpy=True) is with_numpy


@pytest.mark.parametrize("x,plain,with_numpy", [
    (3, True, True), (0.5, True, True), (-1e308, True, True), (10**308, True, True),
    (10**400, False, False), (-10**400, False, False),  # beyond any float: no OverflowError
    (math.nan, False, False), (math.inf, False, False), (-math.inf, False, False),
    (False, False, False), (np.float32(0.5), False, True), (np.int64(2), False, True),
    (np.float64(np.nan), False, False), (np.float32(np.inf), False, False),
    ("1", False, False), (None, False, False), (1j, False, False),
])
def test_is_number(x, plain, with_numpy):
    assert is_number(x) is plain
    assert is_number(x, numpy=True) is with_numpy


def test_an_integer_too_large_for_a_float_is_refused_like_any_bad_value():
    with pytest.raises(ConfigError, match=r"^dropout must be at least 0 and below 1, not 1000"):
        ModelConfig(dropout=10**400)
    with pytest.raises(ConfigError, match=r"^learning rate must be positive, not 1000"):
        TrainConfig(lr=10**400)
    with pytest.raises(ConfigError, match=r"^hidden size must be an integer from 1 to 16384, "
                                          r"not np\.int64\(8\)$"):
        ModelConfig(hidden_size=np.int64(8))  # a config holds Python numbers only (JSON's)
