-- Drives the `ddbkit` command (build/ddbkit) as a person does, for
-- cli_spec.lua and repl_spec.lua: the subcommands through a shell
-- (cli(): exit status, stdout and stderr apart, a clean environment), the
-- REPL through a pseudo-terminal (new_repl(): tmux send-keys and
-- capture-pane). Waits are bounded polls, never fixed sleeps.
local H = require "test_helper"
local read_file, write_file = H.read_file, H.write_file

local q = H.shell_quote

-- Runs a shell command (LD_PRELOAD stripped) and returns its stdout.
local function sh(cmd)
  local p = assert(io.popen("env -u LD_PRELOAD " .. cmd))
  local out = p:read("*a")
  p:close()
  return out
end



-- Removes a directory made by H.mktemp_dir (mktemp -d: ".../tmp.XXXXXXXXXX").
local function rm_rf(dir)
  if dir and dir:match("^/.*/tmp%.[%w]+$") then sh("rm -rf " .. q(dir)) end
end

local function pause() sh("sleep 0.05") end

local ROOT = (sh("sh -c " .. q("cd " .. q(H.spec_dir() .. "/../..") .. " && pwd -P")):gsub("\n$", ""))
-- The sanitized flavour of the suite drives the sanitized build of the
-- command, so its C code is checked there too.
local function binary()
  local preload = os.getenv("LD_PRELOAD") or ""
  local asan = ROOT .. "/build/ddbkit-asan"
  local f = preload:find("asan", 1, true) and io.open(asan, "r")
  if f then
    f:close()
    return asan
  end
  return ROOT .. "/build/ddbkit"
end
local BIN = binary()
local HARNESS = ROOT .. "/tests/harness/ddb_local.sh"
local PATH = os.getenv("PATH") or "/usr/local/bin:/usr/bin:/bin"

local function lines_of(s)
  local t = {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do t[#t + 1] = line end
  if t[#t] == "" then t[#t] = nil end
  return t
end

local function contains(haystack, needle, what)
  assert(haystack:find(needle, 1, true),
         (what or "output") .. " should contain " .. string.format("%q", needle)
         .. ", got:\n" .. haystack)
end

local function lacks(haystack, needle, what)
  assert(not haystack:find(needle, 1, true),
         (what or "output") .. " should not contain " .. string.format("%q", needle)
         .. ", got:\n" .. haystack)
end

-- Subcommands ---------------------------------------------------------------

-- The words of a command line, each quoted for the shell.
local function words(...)
  local t = {}
  for i, w in ipairs({ ... }) do t[i] = q(w) end
  return table.concat(t, " ")
end

-- "env -i NAME=value ...": the clean environment of a run in home.
local function clean_env(home, extra)
  local env = { "env -i", "PATH=" .. q(PATH), "HOME=" .. q(home),
                "XDG_CONFIG_HOME=" .. q(home .. "/config"),
                "XDG_STATE_HOME=" .. q(home .. "/state") }
  for k, v in pairs(extra or {}) do env[#env + 1] = k .. "=" .. q(v) end
  return table.concat(env, " ")
end

-- Runs `ddbkit <args>` (args: already quoted) in home with a clean
-- environment plus o.env (NAME = value), stdin o.stdin (else /dev/null),
-- bounded by o.timeout seconds. Returns { out, err, status, cmd }.
local function cli(home, args, o)
  o = o or {}
  local errfile = home .. "/stderr"
  local stdin = "/dev/null"
  if o.stdin then
    stdin = home .. "/stdin"
    write_file(stdin, o.stdin)
  end
  local cmd = string.format("timeout -k 5 %d %s %s %s 2>%s <%s; echo \"EXIT:$?\"",
                            o.timeout or 60, clean_env(home, o.env), q(BIN), args,
                            q(errfile), q(stdin))
  local all = sh(cmd)
  local out, status = all:match("^(.-)EXIT:(%d+)\n$")
  assert(out, "no exit status from: " .. cmd .. "\n" .. all)
  return { out = out, err = read_file(errfile) or "", status = tonumber(status), cmd = cmd }
end

local function show(r)
  return string.format("\n$ %s\nexit %d\n--- stdout\n%s--- stderr\n%s", r.cmd, r.status, r.out, r.err)
end

local function exits(r, status)
  assert(r.status == status, "exit status should be " .. status .. show(r))
end

-- A clear error: nothing on stdout, one line "ddbkit: ..." on stderr, no
-- traceback, the given non-zero status.
local function one_line_error(r, status, needle)
  exits(r, status)
  assert(r.out == "", "stdout should be empty" .. show(r))
  local l = lines_of(r.err)
  assert(#l == 1 and r.err:sub(-1) == "\n", "stderr should be one line" .. show(r))
  assert(l[1]:match("^ddbkit: "), "the error should start with 'ddbkit: '" .. show(r))
  lacks(r.err, "traceback", "stderr")
  assert(not r.err:match("%.lua:%d+:"), "no Lua position in the error" .. show(r))
  if needle then contains(r.err, needle, "stderr") end
end

-- A loopback port DynamoDB Local can bind (tests/harness/free_port.sh).
local function free_port()
  local out = sh(q(ROOT .. "/tests/harness/free_port.sh"))
  return assert(tonumber(out:match("%d+")), "no free port")
end

-- The REPL through tmux --------------------------------------------------------

local PROMPT, CONTINUE = "ddbkit>", "    ...>"   -- as capture-pane shows them (trailing space trimmed)

local function is_prompt(line)
  return line:sub(1, #PROMPT) == PROMPT or line:sub(1, #CONTINUE) == CONTINUE
end

local function count_prompts(screen)
  local n = 0
  for _, line in ipairs(lines_of(screen)) do
    if is_prompt(line) then n = n + 1 end
  end
  return n
end

local Repl = {}
Repl.__index = Repl

-- A REPL in a private tmux server (its socket in dir, so nothing is left
-- in the user's tmux directory); dir is its HOME. r:close() (kills the
-- server, removes dir) is safe whether or not r:start() got far.
local function new_repl(dir)
  dir = dir or H.mktemp_dir()
  return setmetatable({ dir = dir, sock = dir .. "/tmux.sock", conf = dir .. "/tmux.conf",
                        name = H.unique("ddbkit-cli") }, Repl)
end

function Repl:tmux(args)
  return sh(string.format("timeout -k 2 20 env LC_ALL=C.UTF-8 tmux -f %s -S %s %s 2>&1",
                          q(self.conf), q(self.sock), args))
end

-- extra: more arguments for ddbkit (already quoted), e.g. "--table t".
function Repl:start(extra)
  local d = self.dir
  -- remain-on-exit: the pane, and the EXIT line, stay after ddbkit ends.
  write_file(self.conf, "set -g remain-on-exit on\nset -g history-limit 10000\n")
  -- set -m: ddbkit runs as the terminal's foreground process group, as
  -- under an interactive shell, so Ctrl-C reaches it and not this script.
  -- A UTF-8 locale, as a person's terminal has.
  write_file(d .. "/launch", table.concat({
    "#!/bin/bash",
    "set -m",
    string.format('env -i PATH=%s TERM="$TERM" LC_ALL=C.UTF-8 HOME=%s XDG_CONFIG_HOME=%s XDG_STATE_HOME=%s %s '
                  .. '--endpoint %s %s', q(PATH), q(d), q(d .. "/config"), q(d .. "/state"),
                  q(BIN), q(H.endpoint), extra or ""),
    'echo "EXIT:$?"',
    "",
  }, "\n"))
  sh("chmod +x " .. q(d .. "/launch"))
  local out = self:tmux(string.format("new-session -d -s %s -x 120 -y 40 %s",
                                      q(self.name), q(d .. "/launch")))
  assert(out == "", "tmux new-session: " .. out)
  self.started = true
  self:wait(function(s) return count_prompts(s) >= 1 end, "the first prompt")
end

function Repl:close()
  if self.started then self:tmux("kill-server") end
  rm_rf(self.dir)
end

-- The whole screen, scrollback included; with escapes (colours) if asked.
function Repl:screen(escapes)
  return self:tmux("capture-pane -p -S - " .. (escapes and "-e " or "") .. "-t " .. q(self.name))
end

-- Polls the screen until pred(screen) is true (up to `seconds`); returns
-- the screen, or fails showing it.
function Repl:wait(pred, what, seconds)
  local screen
  for _ = 1, (seconds or 15) * 20 do
    screen = self:screen()
    if pred(screen) then return screen end
    pause()
  end
  error("timed out waiting for " .. what .. "; the screen:\n" .. screen, 2)
end

function Repl:type(text)
  if text == "" then return end
  local out = self:tmux("send-keys -t " .. q(self.name) .. " -l " .. q(text))
  assert(out == "", "tmux send-keys: " .. out)
end

function Repl:key(k)
  local out = self:tmux("send-keys -t " .. q(self.name) .. " " .. k)
  assert(out == "", "tmux send-keys: " .. out)
end

-- The last non-empty line of the screen.
local function last_line(screen)
  local l = lines_of(screen)
  for i = #l, 1, -1 do
    if l[i]:match("%S") then return l[i] end
  end
  return ""
end

-- Types line and Enter, waits for the next prompt (main or continuation),
-- and returns what was printed in between and the new prompt's line.
function Repl:run(line)
  local before = count_prompts(self:screen())
  self:type(line)
  self:key("Enter")
  local screen = self:wait(function(s) return count_prompts(s) > before end,
                           "a prompt after " .. string.format("%q", line))
  local l, out, n = lines_of(screen), {}, 0
  local i = 1
  while i <= #l do   -- to the line typed (prompt number `before`)
    if is_prompt(l[i]) then n = n + 1 end
    i = i + 1
    if n == before then break end
  end
  while i <= #l and not is_prompt(l[i]) do
    out[#out + 1] = l[i]
    i = i + 1
  end
  return table.concat(out, "\n"), l[i] or ""
end

return {
  H = H, q = q, sh = sh, rm_rf = rm_rf, ROOT = ROOT, BIN = BIN, HARNESS = HARNESS, PATH = PATH,
  lines_of = lines_of, contains = contains, lacks = lacks, words = words, clean_env = clean_env,
  cli = cli, show = show, exits = exits, one_line_error = one_line_error, free_port = free_port,
  PROMPT = PROMPT, CONTINUE = CONTINUE, count_prompts = count_prompts, new_repl = new_repl,
  last_line = last_line, Repl = Repl,
}
