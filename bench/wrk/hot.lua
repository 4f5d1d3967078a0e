-- The bot's hot path: the current session, that session's persona, and its launch spec,
-- in turn (a launch spec is a read: the service writes nothing for it).
-- Usage: wrk -s bench/wrk/hot.lua URL -- <current session name>
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

function init(args)
  local name = args[1] or "s00000"
  paths = {
    "/sessions/active",
    "/sessions/" .. name .. "/persona",
    "/sessions/" .. name .. "/launch",
  }
  n = 0
end

function request()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
