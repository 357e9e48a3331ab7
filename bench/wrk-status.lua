-- wrk script of bench/globallimit.sh for runs where refusals are expected (a rate limit below the
-- offered load): it tallies the answers by status in response(), which makes wrk parse every
-- response into Lua (slower for wrk, so the other runs use bench/wrk.lua). At the end it prints one
-- machine-readable line, bench/wrk.lua's fields followed by the tally:
-- RESULT requests=N duration_us=D errors=E non2xx=S p50_us=P p99_us=Q s2xx=A s429=B sother=C
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {} -- global: done() reads it from each thread with thread:get
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local s2xx, s429, other = 0, 0, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      if status >= 200 and status < 300 then
        s2xx = s2xx + n
      elseif status == 429 then
        s429 = s429 + n
      else
        other = other + n
      end
    end
  end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d non2xx=%d p50_us=%d p99_us=%d s2xx=%d s429=%d sother=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), s2xx, s429, other))
end
