"""Search-quality evaluation: metric functions against hand-computed values, truth files, CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lookalike
from lookalike.errors import BadRequest, NotFound
from lookalike.query.evaluate import (average_precision_at_k, dcg_at_k, evaluate, evaluate_file, ndcg_at_k,
                                precision_at_k, read_truth, recall_at_k, score_rankings)

from conftest import read_jsonl


# -- metric functions ------------------------------------------------------------------------
def test_binary_metrics_match_hand_computed_values():
    # ranking a x b y, relevant {a, b, c}: hits at ranks 1 and 3
    grades = np.array([[1, 0, 1, 0]])
    assert precision_at_k(grades, 4)[0] == pytest.approx(0.5)
    assert precision_at_k(grades, 1)[0] == pytest.approx(1.0)
    assert recall_at_k(grades, np.array([3]), 4)[0] == pytest.approx(2 / 3)
    assert average_precision_at_k(grades, np.array([3]), 4)[0] == pytest.approx((1 + 2 / 3) / 3)
    assert dcg_at_k(grades, 4)[0] == pytest.approx(1 + 0.5)
    ideal = np.array([[1, 1, 1]])
    assert ndcg_at_k(grades, ideal, 4)[0] == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))


def test_graded_ndcg_and_sklearn_agree():
    # relevant {a: 3, b: 1}, ranking b a: DCG = 1 + 3/log2(3), ideal = 3 + 1/log2(3)
    got = score_rankings([["b", "a"]], [{"a": 3, "b": 1}], k=2)
    assert got["ndcg@2"] == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))
    assert got["precision@2"] == pytest.approx(1.0)
    assert got["map@2"] == pytest.approx(1.0)
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    true = rng.integers(0, 4, (20, 15)).astype(float)
    scores = rng.normal(size=(20, 15))
    ids = [f"i{j}" for j in range(15)]
    rankings = [[ids[j] for j in np.argsort(-row)] for row in scores]
    truths = [{ids[j]: t[j] for j in range(15) if t[j] > 0} for t in true]
    ours = score_rankings(rankings, truths, k=5)["ndcg@5"]
    assert ours == pytest.approx(sk.ndcg_score(true, scores, k=5), abs=1e-9)


def test_average_precision_edge_cases():
    # nothing relevant: every metric is 0, no division warnings
    with np.errstate(all="raise"):
        got = score_rankings([["a", "b"]], [{}], k=2)
    assert got == {"map@2": 0.0, "ndcg@2": 0.0, "precision@2": 0.0, "recall@2": 0.0}
    # more relevant ids than k: AP normalises by k, recall by all of them
    got = score_rankings([["a", "b"]], [{"a": 1, "b": 1, "c": 1, "d": 1}], k=2)
    assert got["map@2"] == pytest.approx(1.0)
    assert got["recall@2"] == pytest.approx(0.5)
    # a short ranking counts missing ranks as misses; means over queries
    got = score_rankings([["a"], ["x", "b"]], [{"a": 1}, {"b": 1}], k=2)
    assert got["precision@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert got["map@2"] == pytest.approx((1.0 + 0.5) / 2)


# -- truth files -------------------------------------------------------------------------------
def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


@pytest.mark.parametrize("line, message", [
    ('{"query": {"id": "a"}, "relevant": ["b"]', "not valid JSON"),
    ('["a"]', "expected an object"),
    ('{"query": {"id": "a"}}', "needs both"),
    ('{"query": "a", "relevant": ["b"]}', "'query' must be an object"),
    ('{"query": {"id": "a"}, "relevant": "b"}', "'relevant' must be"),
    ('{"query": {"id": "a"}, "relevant": [1]}', "must list record ids"),
    ('{"query": {"id": "a"}, "relevant": {"b": -1}}', "grade of 'b'"),
    ('{"query": {"id": "a"}, "relevant": ["b"], "colour": 1}', "unknown key(s) colour"),
])
def test_bad_truth_lines_name_the_line(tmp_path, line, message):
    path = write_lines(tmp_path / "truth.jsonl", [{"query": {"id": "a"}, "relevant": ["b"]}, "", line])
    with pytest.raises(BadRequest) as info:
        read_truth(path)
    assert "truth line 3" in info.value.message and message in info.value.message


def test_empty_or_missing_truth_file(tmp_path):
    with pytest.raises(BadRequest, match="no queries"):
        read_truth(write_lines(tmp_path / "empty.jsonl", ["", "  "]))
    with pytest.raises(BadRequest, match="cannot read truth file"):
        read_truth(tmp_path / "absent.jsonl")


# -- against a collection ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def patterns(pattern_db_dir):
    with lookalike.connect(pattern_db_dir, read_only=True) as database:
        yield database.collection("patterns")


def pattern_truth(catalog: Path) -> list[dict]:
    rows = read_jsonl(catalog)
    return [{"query": {"id": r["_id"]}, "relevant": [o["_id"] for o in rows if o["pattern"] == r["pattern"]]}
            for r in rows]


def test_evaluate_collection_by_pattern(patterns, pattern_catalog):
    truth = pattern_truth(pattern_catalog)
    result = evaluate(patterns, truth, k=5)
    assert result["queries"] == len(truth) == 24
    m = result["metrics"]
    assert set(m) == {"map@5", "ndcg@5", "precision@5", "recall@5"}
    assert m["precision@5"] > 0.9  # striped finds striped, dotted finds dotted (chance: 11 of 23)
    assert 0 < m["recall@5"] <= 5 / 11 + 1e-9  # 11 other items share the pattern; 5 hits at most
    # the per-query numbers are the search's own ranking, scored independently
    first = result["per_query"][0]
    hits = [h["_id"] for h in patterns.search({"id": truth[0]["query"]["id"]}, k=5)["hits"]]
    relevant = set(truth[0]["relevant"]) - {truth[0]["query"]["id"]}
    assert first["metrics"]["precision@5"] == pytest.approx(sum(h in relevant for h in hits) / 5)
    # the Python API method gives the same numbers
    assert patterns.evaluate(truth, k=5)["metrics"] == pytest.approx(m)
    # the complementary truth (relevant = the other pattern) takes exactly the remaining share of hits
    wrong = [{"query": t["query"], "relevant": [i for i in (r["_id"] for r in read_jsonl(pattern_catalog))
                                                if i not in t["relevant"]]} for t in truth]
    assert evaluate(patterns, wrong, k=5)["metrics"]["precision@5"] == pytest.approx(1 - m["precision@5"])


def test_truth_lines_carry_search_parameters(patterns, tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [
        {"query": {"id": "stripes-red-square"}, "relevant": ["dots-red-square", "dots-red-circle"],
         "filter": {"color": "red"}},
    ])
    result = evaluate_file(patterns, path, k=2)
    # only red records are searched: the two red dotted ones fill the top 2 (the red striped circle competes)
    assert result["metrics"]["recall@2"] >= 0.5
    hits = patterns.search({"id": "stripes-red-square"}, k=2, filter={"color": "red"})["hits"]
    expected = sum(h["_id"] in ("dots-red-square", "dots-red-circle") for h in hits) / 2
    assert result["metrics"]["precision@2"] == pytest.approx(expected)


def test_search_errors_name_the_truth_line(patterns, tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [{"query": {"id": "stripes-red-square"}, "relevant": ["x"]},
                                              {"query": {"id": "no-such-record"}, "relevant": ["x"]}])
    with pytest.raises(NotFound, match="truth line 2: record 'no-such-record' not found"):
        evaluate_file(patterns, path)
    bad_filter = write_lines(tmp_path / "f.jsonl", [{"query": {"id": "stripes-red-square"}, "relevant": ["x"],
                                                     "filter": {"price": {"$near": 3}}}])
    with pytest.raises(BadRequest, match="truth line 1: .*\\$near"):
        evaluate_file(patterns, bad_filter)
    with pytest.raises(BadRequest, match="'k'"):
        evaluate(patterns, [], k=0)


def test_cli_eval(pattern_db_dir, pattern_catalog, tmp_path):
    truth = write_lines(tmp_path / "truth.jsonl", pattern_truth(pattern_catalog))
    cmd = [sys.executable, "-m", "lookalike.cli", "eval", "-c", "patterns", "--truth", str(truth), "-k", "5",
           "--data", str(pattern_db_dir)]
    proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["queries"] == 24 and body["metrics"]["precision@5"] > 0.9
    bad = write_lines(tmp_path / "bad.jsonl", ['{"query": {"id": "x"}}'])
    proc = subprocess.run([*cmd[:-6], "--truth", str(bad), "--data", str(pattern_db_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "truth line 1" in proc.stderr
