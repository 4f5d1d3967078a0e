-- POST /sessions/{name}/usage: the CLI's result message, each with a uuid no other
-- request of the run uses (<prefix>-<thread>-<n>), so every post is counted and writes
-- the session's metadata.json. Thread t of T posts to s<(n*T + t) mod count>,
-- zero-padded to five digits, so no two requests in flight name the same session.
-- Anything but 200 with "counted":true is counted as unexpected.
-- Usage: wrk -t T -s bench/wrk/usage.lua URL -- <count> <T> <prefix>
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

function init(args)
  count = tonumber(args[1]) or 100
  stride = tonumber(args[2]) or 2
  prefix = (args[3] or "u") .. "-" .. (thread_id or 0) .. "-"
  n = 0
  unexpected = 0
end

function request()
  local i = (n * stride + (thread_id or 0)) % count
  n = n + 1
  return wrk.format("POST", string.format("/sessions/s%05d/usage", i),
    { ["Content-Type"] = "application/json" },
    '{"type":"result","subtype":"success","is_error":false,"num_turns":1,' ..
    '"total_cost_usd":0.0001,"usage":{"input_tokens":10,"output_tokens":20,' ..
    '"cache_read_input_tokens":30,"cache_creation_input_tokens":40},' ..
    '"uuid":"' .. prefix .. n .. '"}')
end

function response(status, headers, body)
  if status ~= 200 or not body:find('"counted":true', 1, true) then
    unexpected = unexpected + 1
  end
end
