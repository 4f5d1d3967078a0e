-- POST /sessions with a name no other request of the run uses (a 409 would count as an
-- error): <prefix>-<thread>-<n>. Anything but 201 is counted as unexpected.
-- Usage: wrk -s bench/wrk/create.lua URL -- <prefix>
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

function init(args)
  prefix = (args[1] or "b") .. "-" .. (thread_id or 0) .. "-"
  n = 0
  unexpected = 0
end

function request()
  n = n + 1
  return wrk.format("POST", "/sessions", { ["Content-Type"] = "application/json" },
    '{"name":"' .. prefix .. n .. '"}')
end

function response(status, headers, body)
  if status ~= 201 then
    unexpected = unexpected + 1
  end
end
