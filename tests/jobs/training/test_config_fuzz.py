"""Property tests of the recipe loader: random bytes, random TOML values at real and made-up keys, random
--cfg-options and stored-config dicts give a Config or a ConfigError that names the file; nothing else escapes."""
from __future__ import annotations

import datetime as dt
import json
import math
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.recipes.config import Config, ConfigError, config_dict, config_from_dict, load_config

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
RECIPE = "tsn_r18_synthetic_rgb"
VALID = config_dict(load_config(RECIPE))


def leaf_paths(d: dict, prefix=()) -> list[tuple[str, ...]]:
    out = []
    for k, v in d.items():
        out += leaf_paths(v, prefix + (k,)) if isinstance(v, dict) else [prefix + (k,)]
    return out


PATHS = leaf_paths(VALID)


def toml_value(v) -> str:
    """A value as TOML text (enough of TOML for the values generated here; None is the recipes' "none")."""
    if v is None:
        return '"none"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")   # JSON escapes are TOML escapes
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_document(d: dict) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in d.items())


KEYS = st.sampled_from(sorted({p[-1] for p in PATHS} | {p[0] for p in PATHS})) | st.text(string.ascii_lowercase + "_",
                                                                                       min_size=1, max_size=6)
SCALARS = st.one_of(
    st.booleans(), st.integers(-2**63, 2**63 - 1), st.sampled_from([-1, 0, 1, 2, 3, 8, 25, 224, 256]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), st.dates(), st.times(), st.datetimes())
WORDS_SEEN = st.sampled_from(["none", "RGB", "Flow", "frames", "video", "center", "ten", "three", "multiscale", "fixed",
                              "short_side", "resnet18", "resnet50", "imagenet", "skip", "raise", "prob", "bce", "dali",
                              "img_{:05}.jpg", "{}_{:05d}.jpg", "{}", "", "top_k_accuracy"])
VALUES = st.recursive(SCALARS | WORDS_SEEN,
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=3),
                      max_leaves=8)


def like(value) -> st.SearchStrategy:
    """Values of the same TOML type as `value`: they pass the type checks and reach each section's own checks."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-3, 400) | st.integers(-2**63, 2**63 - 1)
    if isinstance(value, float):
        return st.floats(-3, 3) | st.floats(allow_nan=True, allow_infinity=True)
    if isinstance(value, list):
        return st.lists(like(value[0]) if value else SCALARS, max_size=5)
    return WORDS_SEEN | st.text(max_size=6)         # strings, and None (written "none")


@st.composite
def mutated_recipe(draw) -> dict:
    """The valid synthetic recipe with a few values replaced (at real keys mostly, sometimes new keys)."""
    data = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        node = data
        for k in path[:-1]:
            node = node[k]
        choice = draw(st.integers(0, 5))
        if choice == 0:                     # a made-up key
            node[draw(KEYS)] = draw(VALUES)
        elif choice == 1:                   # any value at a real key
            node[path[-1]] = draw(VALUES)
        else:                               # a value of the right type at a real key
            node[path[-1]] = draw(like(node[path[-1]]))
    return data


def check(path, call):
    try:
        cfg = call()
    except ConfigError as err:
        assert str(err).startswith(f"{path}: ") or str(err).startswith(f"{path}:"), str(err)
        return None
    assert isinstance(cfg, Config)
    return cfg


@FUZZ
@given(content=st.binary(max_size=200))
def test_random_bytes(tmp_path, content):
    path = tmp_path / "recipe.toml"
    path.write_bytes(content)
    check(path, lambda: load_config(str(path)))


@FUZZ
@given(data=mutated_recipe())
def test_random_toml_values(tmp_path, data):
    path = tmp_path / "recipe.toml"
    path.write_text(toml_document(data), encoding="utf-8")
    check(path, lambda: load_config(str(path)))


@FUZZ
@given(data=st.dictionaries(KEYS, VALUES, max_size=4) | mutated_recipe())
def test_random_stored_config_dicts(data):
    check("ckpt.pth (stored config)", lambda: config_from_dict(data, source="ckpt.pth (stored config)"))


WORDS = st.text(string.ascii_letters + string.digits + "._=[]{}\"', -#", max_size=24)


@FUZZ
@given(items=st.lists(WORDS | st.builds(lambda p, v: ".".join(p) + "=" + toml_value(v), st.sampled_from(PATHS),
                                        SCALARS), max_size=3))
def test_random_cfg_options(items):
    """An override's own syntax error names the option; every other error names the recipe file."""
    try:
        cfg = load_config(RECIPE, items)
    except ConfigError as err:
        message = str(err)
        assert message.startswith("--cfg-options ") or f"{RECIPE}.toml: " in message, message
        return
    assert isinstance(cfg, Config)


def test_recipe_not_utf8_or_not_a_table(tmp_path):
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^{latin1}: not UTF-8 text \(byte 0xe9 at offset 11\)$"):
        load_config(str(latin1))
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=rf"^{listed}: expected a table of sections, got list$"):
        load_config(str(listed))
    based = tmp_path / "based.toml"
    based.write_text("base = 3\n")
    with pytest.raises(ConfigError, match=rf"^{based}: base: expected a file name, got 3$"):
        load_config(str(based))
    with pytest.raises(ConfigError, match=r"^--cfg-options 'optim\.lr': expected key=value$"):
        load_config(RECIPE, ["optim.lr"])
