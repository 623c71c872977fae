-- wrk: the same chat completion request with one Idempotency-Key, so every request
-- after the first is answered by replay (the backstop-replay contestant).
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.headers["Idempotency-Key"] = "bench-replay"
