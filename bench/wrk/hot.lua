-- The bot's hot path: the current session, then that session's persona, alternating.
-- Usage: wrk -s bench/wrk/hot.lua URL -- <current session name>
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

function init(args)
  local name = args[1] or "s00000"
  paths = { "/sessions/active", "/sessions/" .. name .. "/persona" }
  n = 0
end

function request()
  n = n + 1
  return wrk.format("GET", paths[(n % 2) + 1])
end
