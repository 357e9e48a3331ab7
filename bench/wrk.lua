-- wrk script of bench/run.sh. With WRK_POST_BYTES set, every request is a POST of that many bytes
-- (to /echo); otherwise wrk's GET of the URL is kept. With WRK_CLOSE=close every request asks the
-- server to close the connection, so wrk reconnects (and, over TLS, does a full handshake) for each
-- one. At the end it prints one machine-readable line:
-- RESULT requests=N duration_us=D errors=E non2xx=S p50_us=P p99_us=Q
local post_bytes = tonumber(os.getenv("WRK_POST_BYTES") or "")
if post_bytes then
  wrk.method = "POST"
  wrk.body = string.rep("x", post_bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
end
if os.getenv("WRK_CLOSE") == "close" then
  wrk.headers["Connection"] = "close"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
