-- PUT /sessions/active, each request to a session other than the current one, so every
-- switch really writes: thread t of T asks for s<(n*T + t + 1) mod count>, zero-padded
-- to five digits, so no two requests in flight name the same session and none names the
-- populated current one (s00000) first. A switch that answers anything but 200 with
-- "changed":true is counted as unexpected.
-- Usage: wrk -t T -s bench/wrk/switch.lua URL -- <count> <T>
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

function init(args)
  count = tonumber(args[1]) or 100
  stride = tonumber(args[2]) or 2
  n = 0
  unexpected = 0
end

function request()
  local i = (n * stride + (thread_id or 0) + 1) % count
  n = n + 1
  return wrk.format("PUT", "/sessions/active", { ["Content-Type"] = "application/json" },
    string.format('{"name":"s%05d"}', i))
end

function response(status, headers, body)
  if status ~= 200 or not body:find('"changed":true', 1, true) then
    unexpected = unexpected + 1
  end
end
