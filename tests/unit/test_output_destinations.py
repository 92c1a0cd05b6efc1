"""The pure parts of the object, metric, log, notification and search destinations."""

from __future__ import annotations

from pathlib import Path

import botocore.session
import pytest

from thingcore.destinations.logs import LogGroups, log_file
from thingcore.destinations.metrics import MetricError, MetricSeries, prometheus_name
from thingcore.destinations.notify import protocol_key, redact
from thingcore.destinations.objects import DirectoryBuckets, ObjectError
from thingcore.destinations.search import EmbeddedIndex, document_text, is_aws_endpoint
from thingcore.rules.actions import ACTIONS
from thingcore.rules.actions.unserved import UNSERVED
from thingcore.rules.model import AWS_ACTION_KINDS, RuleError, action_kind


def test_every_aws_action_is_either_served_or_refused_by_name() -> None:
    members = set(botocore.session.get_session().get_service_model("iot").shape_for("Action").members)
    assert set(ACTIONS) | set(UNSERVED) == AWS_ACTION_KINDS
    assert not set(ACTIONS) & set(UNSERVED)
    # the botocore installed may be older or newer than the list: an action it has that thingcore does not
    # know yet is still refused at rule creation with a message that names it
    for kind in sorted(members - AWS_ACTION_KINDS):
        with pytest.raises(RuleError, match=kind):
            action_kind({kind: {}}, "actions[0]")
    assert len(members & AWS_ACTION_KINDS) >= 23  # the actions of botocore 1.43, the oldest we test with


@pytest.mark.parametrize(("namespace", "name", "expected"), [
    ("IoT/Plant", "temp-c", "IoT_Plant_temp_c"), ("9lives", "x", "_9lives_x"), ("a.b", "c:d", "a_b_c:d"),
])
def test_prometheus_names(namespace: str, name: str, expected: str) -> None:
    assert prometheus_name(namespace, name) == expected


def test_metric_series_are_bounded_and_keep_the_latest_value() -> None:
    series = MetricSeries(2)
    series.put("N", "a", "Count", 1.0, None)
    series.put("N", "a", "Count", 5.0, 1700000000.0)  # same series: replaced
    series.put("N", "b", "Count", 2.0, None)
    with pytest.raises(MetricError, match="max_metric_series"):
        series.put("N", "c", "Count", 3.0, None)
    samples = {s.labels["metric"]: (s.value, s.timestamp) for f in series.collect() for s in f.samples}
    assert samples == {"a": (5.0, 1700000000.0), "b": (2.0, None)}


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/abs", "a//b", "a/./b", "", "a\\b"])
def test_object_keys_cannot_leave_their_bucket(tmp_path: Path, key: str) -> None:
    with pytest.raises(ObjectError) as info:
        DirectoryBuckets(tmp_path).put("bucket", key, b"x")
    assert not info.value.retryable
    assert not any(tmp_path.rglob("*"))


def test_objects_are_replaced_whole(tmp_path: Path) -> None:
    store = DirectoryBuckets(tmp_path)
    store.put("b1", "dev/one.json", b"first")
    store.put("b1", "dev/one.json", b"second")
    assert store.get("b1", "dev/one.json") == b"second"
    assert [p.name for p in (tmp_path / "b1" / "dev").iterdir()] == ["one.json"]  # no temporary files left
    with pytest.raises(ObjectError, match="prefix of the key is an object") as info:
        store.put("b1", "dev/one.json/x", b"")
    assert not info.value.retryable


def test_log_groups_are_files_named_by_the_group(tmp_path: Path) -> None:
    groups = LogGroups(None, tmp_path, stdout=False)
    groups._write("/aws/iot/x", [b'{"timestamp":1,"message":"a"}\n', b'{"timestamp":2,"message":"b"}\n'])
    assert log_file(tmp_path, "/aws/iot/x").name == "%2Faws%2Fiot%2Fx.jsonl"
    assert [(e["timestamp"], e["message"]) for e in groups.read("/aws/iot/x")] == [(1, "a"), (2, "b")]


def test_notification_protocol_keys_and_redaction() -> None:
    assert [protocol_key(u) for u in ("mailto://h", "jsons://h", "form://h", "slack://t")] == \
        ["email", "https", "http", "default"]
    assert redact("mailtos://user:secret@smtp.example.com:587?to=a@b") == "mailtos://smtp.example.com:587/..."


def test_embedded_search_index(tmp_path: Path) -> None:
    index = EmbeddedIndex(tmp_path / "search.db")
    index.write([("i", "1", "t", b'{"note":"pump vibration","n":7}', "pump vibration 7", 1.0),
                 ("i", "2", "t", b'{"note":"quiet"}', "quiet", 1.0),
                 ("other", "1", "t", b'{"note":"pump"}', "pump", 1.0)])
    index.write([("i", "1", "t", b'{"note":"pump replaced"}', "pump replaced", 2.0)])
    assert [h["id"] for h in index.search("i", "pump")["hits"]] == ["1"]
    assert index.search("i", "vibration")["total"] == 0  # the replaced text is gone from the index
    assert index.search("i", "quiet OR replaced")["total"] == 2
    assert index.indexes() == [{"index": "i", "documents": 2}, {"index": "other", "documents": 1}]
    with pytest.raises(ValueError, match="invalid query"):
        index.search("i", "AND")
    index.close()
    assert EmbeddedIndex(tmp_path / "search.db").search("i", "pump")["total"] == 1  # durable


def test_document_text_and_aws_endpoints() -> None:
    assert document_text({"a": "x", "b": [1, {"c": "y"}], "d": True, "e": None}) == "x 1 y"
    assert is_aws_endpoint("https://search-x-abc.us-east-1.es.amazonaws.com")
    assert not is_aws_endpoint("http://127.0.0.1:9200")
