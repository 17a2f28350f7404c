"""Property-based bad inputs (hypothesis): generated malformed files and values through the real CLI.

Each property builds an input that is broken in one generated way, runs the command in-process and
asserts what every bad input must get: a non-zero exit, no traceback, exactly one ``Error:`` line, no
change to any input file and no output left behind. The number of examples is fixed (``EXAMPLES``
per property) so the suite's time is bounded; the total is printed by ``test_attack_count``.
"""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli_helpers import assert_one_line_error, run_cli

EXAMPLES = 25
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
PROPERTIES = 7

VALID_ANN = {
    "version": "1.3",
    "classes": ["Diving", "HighJump"],
    "database": {
        "v1": {"subset": "test", "duration": 30.0, "annotations": [{"segment": [2.0, 5.0], "label": "Diving"}]},
        "v2": {"subset": "test", "duration": 20.0, "annotations": [{"segment": [1.0, 4.0], "label": "HighJump"}]},
    },
}
VALID_RESULTS = {"results": {"v1": [{"label": "Diving", "score": 0.9, "segment": [2.0, 5.0]}]}}

not_a_number = st.one_of(st.text(max_size=5), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))
bad_time = st.one_of(
    not_a_number, st.just(float("nan")), st.just(float("inf")), st.floats(max_value=-0.01, allow_nan=False)
)
bad_name = st.one_of(
    st.just(""),
    st.just(".."),
    st.just("../../x"),
    st.just("/abs/path"),
    st.text(min_size=1, max_size=6).map(lambda s: "a/" + s),
    st.text(min_size=1, max_size=4).map(lambda s: "." + s),
    st.sampled_from(["a\x00b", "a\nb", "C:evil"]),
)


def _ann_mutations():
    """(description, function(dict) -> dict) pairs; each makes VALID_ANN invalid."""

    def set_in(path, value):
        def f(d):
            node = d
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
            return d

        return f

    def rename_video(name):
        def f(d):
            d["database"][name] = d["database"].pop("v1")
            return d

        return f

    return st.one_of(
        bad_time.map(lambda v: set_in(["database", "v1", "duration"], v)),
        bad_time.map(lambda v: set_in(["database", "v1", "annotations", 0, "segment"], [v, 5.0])),
        st.floats(min_value=31.0, max_value=1e6).map(lambda v: set_in(["database", "v1", "annotations", 0, "segment"], [v, v + 1])),
        st.floats(min_value=0.0, max_value=1.9).map(lambda v: set_in(["database", "v1", "annotations", 0, "segment"], [3.0, v])),
        st.text(max_size=8).filter(lambda s: s not in ("Diving", "HighJump")).map(
            lambda v: set_in(["database", "v1", "annotations", 0, "label"], v)
        ),
        not_a_number.map(lambda v: set_in(["database"], v)),
        st.one_of(st.integers(), st.text(max_size=3)).map(lambda v: set_in(["database", "v1"], v)),
        bad_name.map(rename_video),
        st.sampled_from([["Diving", "Diving"], "Diving", [1, 2]]).map(lambda v: set_in(["classes"], v)),
    )  # fmt: skip


def _write(path, data):
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(json.dumps(data))
    return path


def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _expect_clean_failure(args, folder, must_not_exist=()):
    before = _snapshot(folder)
    assert_one_line_error(run_cli(args))
    assert _snapshot(folder) == before, "an input file changed or an output was left behind"
    for p in must_not_exist:
        assert not p.exists(), p


@FUZZ
@given(mutate=_ann_mutations())
def test_malformed_annotations(tmp_path_factory, mutate):
    d = tmp_path_factory.mktemp("ann")
    ann = _write(d / "annotations.json", mutate(json.loads(json.dumps(VALID_ANN))))
    res = _write(d / "results.json", VALID_RESULTS)
    _expect_clean_failure(["score", ann, res], d)


@FUZZ
@given(
    text=st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    cut=st.integers(min_value=1, max_value=60),
    junk=st.binary(min_size=1, max_size=8).map(lambda b: b"\xff" + b),
)
def test_truncated_or_non_utf8_json(tmp_path_factory, text, cut, junk):
    d = tmp_path_factory.mktemp("trunc")
    whole = json.dumps(VALID_ANN).encode()
    ann = _write(d / "annotations.json", whole[: len(whole) - cut] + text[:0])
    res = _write(d / "results.json", VALID_RESULTS)
    _expect_clean_failure(["score", ann, res], d)
    ann.write_bytes(whole[:10] + junk + whole[10:])
    _expect_clean_failure(["score", ann, res], d)


@FUZZ
@given(
    entry=st.one_of(
        st.fixed_dictionaries({"label": st.just("Diving"), "score": not_a_number, "segment": st.just([1.0, 2.0])}),
        st.fixed_dictionaries({"label": st.just("Diving"), "score": st.just(0.5), "segment": bad_time.map(lambda v: [v, 2.0])}),
        st.fixed_dictionaries({"label": st.just("Diving"), "score": st.just(0.5), "segment": st.lists(st.floats(0, 9), max_size=1)}),
        st.fixed_dictionaries({"score": st.just(0.5), "segment": st.just([1.0, 2.0])}),
        not_a_number,
    )
)  # fmt: skip
def test_malformed_results(tmp_path_factory, entry):
    d = tmp_path_factory.mktemp("res")
    ann = _write(d / "annotations.json", VALID_ANN)
    res = _write(d / "results.json", {"results": {"v1": [entry]}})
    _expect_clean_failure(["score", ann, res], d)


META = {"backbone": "clip", "dim": 32, "fps": 4.0, "snippet_length": 1, "snippet_stride": 1}


@FUZZ
@given(
    key=st.sampled_from(sorted(META)),
    value=st.one_of(
        st.just(float("nan")),
        st.just(float("inf")),
        st.just(0),
        st.integers(max_value=-1),
        st.booleans(),
        st.text(max_size=4),
        st.none(),
        st.just("DELETE"),
    ),
)
def test_malformed_meta_json(tmp_path_factory, tiny_clip_path, key, value):
    if key == "backbone" and isinstance(value, str) and value != "DELETE":
        value = 3  # any string is a valid backbone name
    if value == "DELETE" and key not in ("backbone", "dim"):
        value = 0  # fps and snippet sizes have defaults: leaving them out is valid
    d = tmp_path_factory.mktemp("meta")
    np.save(d / "v.npy", np.zeros((8, 32), np.float32))
    meta = dict(META)
    if value == "DELETE":
        del meta[key]
    else:
        meta[key] = value
    (d / "meta.json").write_text(json.dumps(meta))
    _expect_clean_failure(["online", d / "v.npy", "--clip", tiny_clip_path, "--classes", "a,b"], d)


@FUZZ
@given(
    kind=st.sampled_from(["nan", "ndim", "dim", "empty", "pickle", "bytes", "truncated"]),
    n=st.integers(min_value=1, max_value=20),
)
def test_malformed_feature_files(tmp_path_factory, tiny_clip_path, kind, n):
    d = tmp_path_factory.mktemp("feat")
    path = d / "v.npy"
    x = np.random.default_rng(n).normal(size=(n, 32)).astype(np.float32)
    if kind == "nan":
        x[n // 2, 0] = math.nan
        np.save(path, x)
    elif kind == "ndim":
        np.save(path, x[None])
    elif kind == "dim":
        np.save(path, x[:, :31])
    elif kind == "empty":
        np.save(path, x[:0])
    elif kind == "pickle":
        np.save(path, np.array([x, x[:1]], dtype=object), allow_pickle=True)
    elif kind == "bytes":
        path.write_bytes(bytes(range(n)) * 3)
    else:
        np.save(path, x)
        path.write_bytes(path.read_bytes()[: 64 + n])
    (d / "meta.json").write_text(json.dumps(META))
    _expect_clean_failure(["online", path, "--clip", tiny_clip_path, "--classes", "a,b"], d)


KEYS = {
    "data.batch_size": "int",
    "data.num_segments": "int",
    "cbp.dropout": "unit",
    "cbp.topk_ratio": "int",
    "cbp.num_heads": "int",
    "infer.theta_loc": "units",
    "infer.nms_sigma": "pos",
    "train.rounds": "int",
    "train.schedule": "choice",
    "pseudo.delta_h": "unit",
    "optim.lr": "pos",
    "optim.alternate_lr": "nonneg",
    "eval.tiou": "units",
}
bad_value = {
    "int": st.one_of(st.integers(max_value=0).map(str), st.text(alphabet="abc.", min_size=1, max_size=3), st.just("1.5")),
    "unit": st.one_of(st.floats(min_value=1.01, max_value=1e9).map(repr), st.floats(max_value=-1e-3).map(repr), st.just("x"), st.just(".nan")),
    "units": st.one_of(st.just("[]"), st.just("[a]"), st.just("[0.5, 2]"), st.just("{a: 1}"), st.just("[-1]")),
    "pos": st.one_of(st.just("0"), st.floats(max_value=0.0).map(repr), st.just("abc"), st.just(".inf")),
    "nonneg": st.one_of(st.floats(max_value=-1e-9).map(repr), st.just("abc"), st.just(".inf"), st.just(".nan")),
    "choice": st.text(alphabet="xyz-", min_size=1, max_size=6),
}  # fmt: skip


@FUZZ
@given(data=st.data())
def test_bad_set_values(tmp_path_factory, tiny_dataset, data):
    key = data.draw(st.sampled_from(sorted(KEYS)))
    value = data.draw(bad_value[KEYS[key]])
    d = tmp_path_factory.mktemp("set")
    out = d / "run"
    _expect_clean_failure(["warmup", tiny_dataset, "-o", out, "--set", f"{key}={value}"], d, [out])


@FUZZ
@given(
    text=st.one_of(
        st.just("- just\n- a list\n"),
        st.just("cbp: [1, 2]\n"),
        st.just("cbp:\n  hidden_dim: {a: 1}\n"),
        st.text(alphabet=":{}[]-\n a", min_size=1, max_size=30).filter(lambda t: ":" in t or "[" in t or "{" in t),
        st.dictionaries(st.text(alphabet="xyzq", min_size=1, max_size=4), st.integers(), min_size=1).map(json.dumps),
    )
)
def test_bad_config_files(tmp_path_factory, tiny_dataset, text):
    import yaml

    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = "malformed"
    if parsed is None or parsed == {}:
        return  # an empty config is a valid one
    d = tmp_path_factory.mktemp("cfg")
    cfg = d / "c.yaml"
    cfg.write_text(text)
    out = d / "run"
    _expect_clean_failure(["warmup", tiny_dataset, "-o", out, "--config", cfg], d, [out])


def test_attack_count():
    """How many generated attacks one run of this module tries (reported in the closing note)."""
    assert EXAMPLES * PROPERTIES == 175
