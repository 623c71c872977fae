"""Sends exactly N POSTs (the bench's chat completion) to 127.0.0.1:PORT over C
keep-alive connections and checks every answer is 200. Used by bench/callgrind, where
the request count, not the time, has to be fixed. With IDEMPOTENCY_KEY set, every request
carries that Idempotency-Key (with `[replay]`, all but the first are replays). With
PROMPT_BYTES=n the user message is n bytes of prose (a line break every ~80 bytes, a
quoted word now and then), to price what grows with the prompt (the journal's body scan
and hash)."""
import http.client
import json
import os
import sys
import threading

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
if os.environ.get("PROMPT_BYTES"):
    _line = 'Summarise the "quarterly" report below in three short bullet points, please.\n'
    _n = int(os.environ["PROMPT_BYTES"])
    _prompt = (_line * (_n // len(_line) + 1))[:_n]
    BODY = json.dumps({"model": "gpt-4o-mini",
                       "messages": [{"role": "user", "content": _prompt}]}).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
if os.environ.get("IDEMPOTENCY_KEY"):
    HEADERS["Idempotency-Key"] = os.environ["IDEMPOTENCY_KEY"]


def main():
    port, total, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    failures = []

    def run(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(n):
            c.request("POST", "/v1/chat/completions", body=BODY, headers=HEADERS)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                failures.append(r.status)
        c.close()

    share = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
    threads = [threading.Thread(target=run, args=(n,)) for n in share]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"keepalive_posts: {len(failures)} of {total} requests failed: {failures[:5]}")


if __name__ == "__main__":
    main()
