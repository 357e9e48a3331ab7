-- wrk script of bench/cache.sh's weir-miss runs: every request asks for a URL not asked before,
-- PATH?r=PREFIX-THREAD-N, so that the cache misses, calls the backend and stores the answer as a new
-- entry. WRK_MISS_PREFIX must differ between the wrk runs against one weir (bench/cache.sh passes the
-- round and the run). At the end it prints bench/wrk.lua's machine-readable line:
-- RESULT requests=N duration_us=D errors=E non2xx=S p50_us=P p99_us=Q
local prefix = os.getenv("WRK_MISS_PREFIX") or tostring(os.time())
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local base
local n = 0

function init(args)
  base = wrk.path .. "?r=" .. prefix .. "-" .. tostring(tid or 0) .. "-"
end

function request()
  n = n + 1
  return wrk.format(nil, base .. n)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
