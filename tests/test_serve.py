"""``llmrec serve`` against a real server: uvicorn on 127.0.0.1 in a subprocess (toy weights with
the real tokenizer, a 28-item shop), talked to with httpx."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support import Server

from llmrec.serve.keys import KeyStore

N_ITEMS = 28
NEW_TITLE = "The Quantum Llama Saga, Part Nine"


@pytest.fixture(scope="module")
def server(toy_model: Path, shop: Path, keys: dict, tmp_path_factory):
    s = Server(toy_model, shop, keys, tmp_path_factory.mktemp("serve"), "--max-batch", "8", "--max-wait-ms", "300")
    yield s
    s.stop()


# 1. keys

def test_a_key_is_shown_once_and_stored_only_as_a_salted_hash(keys: dict):
    text = keys["path"].read_text()
    assert all(keys[s] not in text for s in ("read", "feedback", "admin"))
    assert oct(keys["path"].stat().st_mode & 0o777) == "0o600"
    store = KeyStore.read(keys["path"])
    assert store.check(keys["read"], "read") == 200 and store.check(keys["read"], "admin") == 403
    assert store.check(keys["admin"], "feedback") == 200  # admin may do everything
    assert store.check(keys["read"] + "x", "read") == 401 and store.check(None, "read") == 401


def test_without_keys_the_server_refuses_to_start_unless_loopback_and_insecure(capsys):
    from llmrec.cli import main

    assert main(["serve", "--port", "1"]) == 2
    assert "no --keys file" in capsys.readouterr().err
    assert main(["serve", "--insecure-no-auth", "--host", "0.0.0.0"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_keys_add_prints_the_key_once(tmp_path: Path, capsys):
    from llmrec.cli import main

    assert main(["serve", "keys", "add", "--keys", str(tmp_path / "k.json"), "--scope", "feedback"]) == 0
    key = capsys.readouterr().out.strip()
    assert KeyStore.read(tmp_path / "k.json").check(key, "feedback") == 200


@pytest.mark.slow
def test_auth_none_wrong_and_right_scope(server: Server, keys: dict):
    body = {"history": ["i1", "i2"], "target": "i3"}
    assert server.post("/v1/predict", body, None).status_code == 401
    assert server.post("/v1/predict", body, "llmrec_not-a-key").status_code == 401
    assert server.post("/v1/predict", body, keys["feedback"]).status_code == 403
    assert server.post("/v1/items", {"items": [{"item_id": "x", "title": "X"}]}, keys["read"]).status_code == 403
    ok = server.post("/v1/predict", body, keys["read"])
    assert ok.status_code == 200 and 0 <= ok.json()["p_yes"] <= 1
    assert ok.headers["x-request-id"] == ok.json()["request_id"]
    assert httpx.get(server.url + "/healthz").json() == {"status": "alive"}
    # the key is checked before the body is read: no key, no parsing
    assert httpx.post(server.url + "/v1/predict", content=b"{broken").status_code == 401
    missing = httpx.get(server.url + "/no/such/path")
    assert missing.status_code == 404 and missing.json()["request_id"] == missing.headers["x-request-id"]
    assert "/v1/recommend" in httpx.get(server.url + "/openapi.json").json()["paths"]


# 2. validation: 4xx naming the field, never a 500

@pytest.mark.slow
@pytest.mark.parametrize("path, body, status, field", [
    ("/v1/recommend", {"history": ["i1"], "k": 0}, 422, "k"),
    ("/v1/recommend", {"history": ["i1"], "k": 101}, 422, "k"),
    ("/v1/recommend", {"history": ["i1"], "user": "u1"}, 422, None),
    ("/v1/recommend", {}, 422, None),
    ("/v1/recommend", {"history": ["i1"], "colour": "red"}, 422, "colour"),
    ("/v1/recommend", {"history": [True]}, 422, "history.0"),
    ("/v1/recommend", {"history": [{"id": 1}]}, 422, "history.0"),
    ("/v1/recommend", {"history": ["i1"] * 501}, 422, "history"),
    ("/v1/recommend", {"history": ["i1"], "mode": "psychic"}, 422, "mode"),
    ("/v1/recommend", {"history": ["i1"], "guide_weight": -1}, 422, "guide_weight"),
    ("/v1/recommend", {"user": "nobody"}, 404, None),
    ("/v1/recommend", {"history": ["i1"], "mode": "rerank"}, 422, None),  # this model has no collaborative guide
    ("/v1/predict", {"history": ["i1"]}, 422, "target"),
    ("/v1/predict", {"history": ["i1"], "target": "i2", "unknown_items": "maybe"}, 422, "unknown_items"),
    ("/v1/predict", {"history": ["Not A Product"], "target": "i2", "unknown_items": "error"}, 422, None),
    ("/v1/rank", {"history": ["i1"], "candidates": []}, 422, "candidates"),
    ("/v1/rank", {"history": ["i1"], "candidates": ["i2", "no such item"]}, 422, None),
    ("/v1/rank", {"history": ["i1"], "candidates": ["i2", "i2"]}, 422, None),
    ("/v1/explain", {"history": ["i1"], "item": "no such item"}, 422, None),
    ("/v1/feedback", {"user": "u1", "item": "i1", "event": "stare"}, 422, "event"),
    ("/v1/feedback", {"user": "u1", "item": "no such item", "event": "click"}, 422, None),
    ("/v1/feedback", {"user": "u1", "item": "i1", "event": "click", "timestamp": -5}, 422, "timestamp"),
    ("/v1/feedback", {"user": "u1", "item": "i1", "event": "click", "timestamp": 1e300}, 422, "timestamp"),
    ("/v1/feedback", {"user": "u1", "item": "i1", "event": "click", "context": {"a": "\ud800"}}, 422, "context"),
    ("/v1/feedback", {"user": "u1", "item": "i1", "event": "click", "context": {"a": "x" * 5000}}, 422, "context"),
])  # fmt: skip
def test_bad_requests_get_a_4xx_naming_the_field(server: Server, keys: dict, path, body, status, field):
    r = httpx.post(server.url + path, content=json.dumps(body).encode("utf-8", "surrogatepass"),
                   headers={"Authorization": f"Bearer {keys['admin']}", "content-type": "application/json"})  # fmt: skip
    assert r.status_code == status, r.text
    assert r.json()["error"] and r.json()["request_id"] == r.headers["x-request-id"]
    if field is not None:
        assert r.json()["field"] == field


@pytest.mark.slow
def test_bodies_that_are_not_json_or_too_big(server: Server, keys: dict):
    headers = {"Authorization": f"Bearer {keys['read']}", "content-type": "application/json"}
    for content in (b"{not json", b"[1, 2]", b"\xff\xfe", b"null", b""):
        r = httpx.post(server.url + "/v1/predict", content=content, headers=headers)
        assert r.status_code == 422, (content, r.text)
    big = json.dumps({"history": ["x" * 400] * 3000, "target": "i1"}).encode()
    assert httpx.post(server.url + "/v1/predict", content=big, headers=headers).status_code == 413


# 3. history items outside the catalogue

@pytest.mark.slow
def test_unknown_history_items_are_read_as_text_and_counted(server: Server, keys: dict):
    body = {"history": ["i1", "Product number 3 (2019)", "i4"], "target": "i2"}
    r = server.post("/v1/predict", body, keys["read"]).json()
    assert r["unknown_history"] == 1 and r["target"]["item_id"] == "i2"
    dropped = server.post("/v1/predict", {**body, "unknown_items": "drop"}, keys["read"]).json()
    assert dropped["unknown_history"] == 1 and dropped["p_yes"] != r["p_yes"]  # the text was in the prompt
    free = server.post("/v1/predict", {"history": ["i1"], "target": "A film nobody indexed"}, keys["read"]).json()
    assert free["target"] == {"item_id": None, "title": "A film nobody indexed", "in_catalogue": False}
    rec = server.post("/v1/recommend", {"history": ["i1", "Some unknown thing"], "k": 5}, keys["read"]).json()
    assert rec["unknown_history"] == 1 and all(i["item_id"].startswith("i") for i in rec["items"])


# 4. micro-batching: concurrent answers equal one-by-one answers

@pytest.mark.slow
def test_concurrent_requests_equal_sequential_answers(server: Server, keys: dict):
    predicts = [{"history": [f"i{j}" for j in range(n % 5 + 1)], "target": f"i{10 + n}"} for n in range(8)]
    recs = [{"history": [f"i{n}", f"i{n + 3}"], "k": 5} for n in range(8)]
    alone_p = [server.post("/v1/predict", b, keys["read"]).json()["p_yes"] for b in predicts]
    alone_r = [server.post("/v1/recommend", b, keys["read"]).json()["items"] for b in recs]
    before = batch_sizes(server)
    with ThreadPoolExecutor(16) as pool:
        together_p = list(pool.map(lambda b: server.post("/v1/predict", b, keys["read"]).json()["p_yes"], predicts))
        together_r = list(pool.map(lambda b: server.post("/v1/recommend", b, keys["read"]).json()["items"], recs))
    assert together_p == pytest.approx(alone_p, abs=1e-5)
    assert [[i["item_id"] for i in r] for r in together_r] == [[i["item_id"] for i in r] for r in alone_r]
    for a, b in zip(together_r, alone_r):
        assert [i["score"] for i in a] == pytest.approx([i["score"] for i in b], abs=1e-4)
    after = batch_sizes(server)
    assert after["count"] - before["count"] < 16  # some calls answered several requests
    assert after["sum"] - before["sum"] == 16


def batch_sizes(server: Server) -> dict:
    text = httpx.get(server.url + "/metrics").text
    out = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        for what in out:
            if line.startswith(f"llmrec_batch_size_{what}{{task=\"predict\"}}") or line.startswith(
                    f"llmrec_batch_size_{what}{{task=\"recommend\"}}"):  # fmt: skip
                out[what] += float(line.split()[-1])
    return out


@pytest.mark.slow
def test_metrics_count_requests_and_errors(server: Server, keys: dict):
    def count(text: str, prefix: str) -> float:
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))

    before = httpx.get(server.url + "/metrics").text
    server.post("/v1/predict", {"history": ["i1"], "target": "i2"}, keys["read"])
    server.post("/v1/predict", {"history": ["i1"]}, keys["read"])
    after = httpx.get(server.url + "/metrics").text
    ok = 'llmrec_requests_total{endpoint="/v1/predict",status="200"}'
    bad = 'llmrec_errors_total{endpoint="/v1/predict",status="422"}'
    assert count(after, ok) == count(before, ok) + 1 and count(after, bad) == count(before, bad) + 1
    assert count(after, 'llmrec_request_seconds_count{endpoint="/v1/predict"}') >= 2
    assert count(after, "llmrec_model_load_seconds") > 0 and "llmrec_queue_depth" in after


# 5. new items at run time

@pytest.mark.slow
def test_a_new_item_becomes_recommendable(server: Server, keys: dict):
    candidates = [f"i{n}" for n in range(25)]
    assert server.post("/v1/rank", {"history": ["i1"], "candidates": [*candidates, "new1"]}, keys["read"]).status_code == 422
    added = server.post("/v1/items", {"items": [{"item_id": "new1", "title": NEW_TITLE}]}, keys["admin"])
    assert added.status_code == 200 and added.json()["catalogue_items"] == N_ITEMS + 1
    ranked = server.post("/v1/rank", {"history": ["i1"], "candidates": [*candidates, "new1"]}, keys["read"]).json()
    assert "new1" in [i["item_id"] for i in ranked["items"]]  # > 20 candidates: scored through the token trie
    p = server.post("/v1/predict", {"history": ["i1"], "target": NEW_TITLE}, keys["read"]).json()
    assert p["target"]["item_id"] == "new1"
    again = server.post("/v1/items", {"items": [{"item_id": "new1", "title": "Other"}]}, keys["admin"])
    assert again.status_code == 422


# 6. logs: request ids, no user id, history or key

@pytest.mark.slow
def test_logs_hold_request_ids_and_no_user_history_or_key(server: Server, keys: dict):
    r = server.post("/v1/feedback", {"user": "secret-user-42", "item": "Product number 7", "event": "click"},
                    keys["feedback"])  # fmt: skip
    assert r.status_code == 200
    server.post("/v1/predict", {"history": ["Product number 5"], "target": "Secret Title"}, keys["read"])
    deadline = time.time() + 10
    while r.headers["x-request-id"] not in (text := server.log.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    assert r.headers["x-request-id"] in text
    for secret in ("secret-user-42", "Product number 5", "Secret Title", keys["feedback"], keys["read"]):
        assert secret not in text
