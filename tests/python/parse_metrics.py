"""Parses a backstop scrape with prometheus_client's text parser (a real Prometheus
text-format parser) and checks SPEC §4's (and §9's) families, types and labels.

Usage: parse_metrics.py SCRAPE_FILE. Run by tests/metrics_exposition.rs.
"""

import sys

from prometheus_client.parser import text_string_to_metric_families

GEN_AI = {"gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"}
# name as exposed → (type, label names); prometheus_client strips `_total` off counters.
EXPECTED = {
    "backstop_requests": ("counter", {"upstream", "endpoint", "status"}),
    "backstop_request_duration_seconds": ("histogram", {"upstream", "endpoint"}),
    "backstop_upstream_attempts": ("counter", {"upstream", "endpoint", "outcome"}),
    "backstop_upstream_attempt_duration_seconds": ("histogram", {"upstream", "endpoint"}),
    "backstop_retries": ("counter", {"upstream", "reason"}),
    "backstop_retries_suppressed": ("counter", {"upstream", "reason"}),
    "backstop_backoff_seconds": ("histogram", {"upstream"}),
    "backstop_in_flight_requests": ("gauge", {"upstream"}),
    "backstop_websocket_sessions": ("gauge", {"upstream"}),
    "backstop_consecutive_failures": ("gauge", {"upstream"}),
    "backstop_circuit_state": ("gauge", {"upstream"}),
    "backstop_rate_limit_wait_seconds": ("histogram", {"upstream"}),
    "backstop_failure_records": ("counter", set()),
    "backstop_failure_records_dropped": ("counter", set()),
    "backstop_failure_log_errors": ("counter", set()),
    # SPEC §6: the request journal (0 without [journal]).
    "backstop_journal_records": ("counter", set()),
    "backstop_journal_records_dropped": ("counter", set()),
    "backstop_journal_errors": ("counter", set()),
    # SPEC §6: replay (0 without [replay]).
    "backstop_replays": ("counter", {"upstream", "reason"}),
    "backstop_replay_joins": ("counter", {"upstream"}),
    "gen_ai_client_token_usage": ("histogram", GEN_AI | {"gen_ai_token_type"}),
    "gen_ai_client_operation_duration_seconds": ("histogram", GEN_AI | {"error_type"}),
    "gen_ai_client_operation_time_to_first_chunk_seconds": ("histogram", GEN_AI | {"error_type"}),
    "backstop_build_info": ("gauge", {"version"}),
    # SPEC §9: client connections and the retry-buffer budget.
    "backstop_connections_refused": ("counter", set()),
    "backstop_retry_buffer_bytes": ("gauge", set()),
    "backstop_retry_buffer_exhausted": ("counter", set()),
}

with open(sys.argv[1], encoding="utf-8") as f:
    text = f.read()

families = {f.name: f for f in text_string_to_metric_families(text)}
assert set(families) == set(EXPECTED), sorted(set(families) ^ set(EXPECTED))
for name, (kind, labels) in EXPECTED.items():
    family = families[name]
    assert family.type == kind, (name, family.type, kind)
    assert family.samples, name
    for sample in family.samples:
        got = set(sample.labels) - {"le"}
        assert got == labels, (name, sample)

requests = sum(s.value for s in families["backstop_requests"].samples if s.name.endswith("_total"))
assert requests >= 4, requests
tokens = [s for s in families["gen_ai_client_token_usage"].samples
          if s.name.endswith("_count") and s.labels["gen_ai_request_model"] == "gpt-4o"]
assert sum(s.value for s in tokens) >= 2, tokens
print(f"parsed {len(families)} families, {sum(len(f.samples) for f in families.values())} samples")
print("ALL OK")
