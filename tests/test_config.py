"""The settings' validators (what counts as an integer or a number, the error they raise) and
the limits the configs and the command line share."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import diagnostics
from charrnn.cli import main
from charrnn.config import (
    MAX_BATCH_SIZE,
    MAX_HIDDEN_SIZE,
    MAX_LAYERS,
    MAX_SEED,
    MAX_SEQ_LEN,
    MAX_VOCAB_SIZE,
    ModelConfig,
    TrainConfig,
    check,
    is_int,
    is_number,
    plain,
)
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


def test_plain_makes_json_ready_data():
    value = {"a": (np.float32(1.5), np.int64(2), np.str_("s")),
             3: [math.nan, np.float64(np.inf), -math.inf, None, "x", True, {"b": ()}]}
    assert plain(value) == {"a": [1.5, 2, "s"], "3": [None, None, None, None, "x", True, {"b": []}]}
    assert json.dumps(plain(value), allow_nan=False)  # strict JSON: no NaN
    kept = plain(value, keep_non_finite=True)["3"]
    assert math.isnan(kept[0]) and kept[1:] == [math.inf, -math.inf, None, "x", True, {"b": []}]
    assert type(plain(np.int64(2))) is int and type(plain(np.float32(0.5))) is float
    assert diagnostics.plain is plain  # what inspect --json and eval --json print through


def test_an_integer_too_large_for_a_float_is_refused_like_any_bad_value():
    with pytest.raises(ConfigError, match=r"^dropout must be at least 0 and below 1, not 1000"):
        ModelConfig(dropout=10**400)
    with pytest.raises(ConfigError, match=r"^lr must be a positive number, not 1000"):
        TrainConfig(lr=10**400)
    with pytest.raises(ConfigError, match=r"^hidden_size must be an integer from 1 to 16384, "
                                          r"not np\.int64\(8\)$"):
        ModelConfig(hidden_size=np.int64(8))  # a config holds Python numbers only (JSON's)


@pytest.mark.parametrize("option,cls,field,limit,message", [
    ("--hidden-size", ModelConfig, "hidden_size", MAX_HIDDEN_SIZE,
     f"hidden_size must be an integer from 1 to {MAX_HIDDEN_SIZE}, not"),
    ("--num-layers", ModelConfig, "num_layers", MAX_LAYERS,
     f"num_layers must be an integer from 1 to {MAX_LAYERS}, not"),
    ("--seq-len", TrainConfig, "seq_len", MAX_SEQ_LEN,
     f"seq_len must be an integer from 1 to {MAX_SEQ_LEN:,}, not"),
    ("--batch-size", TrainConfig, "batch_size", MAX_BATCH_SIZE,
     f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE:,}, not"),
    ("--seed", TrainConfig, "seed", MAX_SEED, "seed must be a non-negative integer, not"),
])
def test_the_command_line_takes_exactly_the_configs_range(tmp_path, option, cls, field, limit,
                                                          message):
    assert getattr(cls(**{field: limit}), field) == limit
    with pytest.raises(ConfigError, match=f"^{message} {limit + 1}$"):
        cls(**{field: limit + 1})
    r = CliRunner().invoke(main, ["train", str(tmp_path / "none.txt"), option, str(limit + 1)])
    assert r.exit_code == 2
    assert f"Invalid value for '{option}': {limit + 1} is not in the range " in r.output
    assert f"<=x<={limit}." in r.output


def test_limits_named_once():
    assert (MAX_VOCAB_SIZE, MAX_HIDDEN_SIZE, MAX_LAYERS, MAX_SEED) == (1_114_112, 16384, 64,
                                                                       2**63 - 1)
    ModelConfig(vocab_size=MAX_VOCAB_SIZE)
    with pytest.raises(ConfigError, match="^vocab_size must be an integer from 1 to 1114112, "):
        ModelConfig(vocab_size=MAX_VOCAB_SIZE + 1)
