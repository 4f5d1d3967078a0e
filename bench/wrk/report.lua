-- Shared by the benchmark's wrk scripts (bench/run): numbers the threads (setup) and,
-- at the end, prints one machine-readable line (done). Latencies are in microseconds.
-- `unexpected` is a per-thread counter a scenario script may keep (a 2xx that is not
-- the answer it expects, e.g. a switch that changed nothing).
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local unexpected = 0
  for _, thread in ipairs(threads) do
    unexpected = unexpected + (thread:get("unexpected") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d bytes=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "non2xx=%d connect=%d read=%d write=%d timeout=%d unexpected=%d\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout, unexpected))
end
