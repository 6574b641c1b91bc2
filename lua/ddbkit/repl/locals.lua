-- ddbkit.repl.locals: makes the top-level locals of one REPL input last for
-- the next input. Each input is its own chunk, so `local x = 1` would be
-- gone at the next prompt; every README example starts with `local`, and a
-- pasted example should leave its names behind. The REPL runs its inputs in
-- one environment table, and this rewrites the input's top-level local
-- statements into assignments to it:
--
--   local x = 1                 ->        x = 1
--   local a, b <const> = f()    ->        a, b = f()
--   local c                     ->        c = nil
--   local function f() end      ->        function f() end
--
-- Only at the top level of the chunk: a local inside a function, a do
-- block, a loop or an if stays a local (its scope is the block, as
-- written). Strings and comments are skipped by a small lexer, so
-- "local x" in a string is text. A `<close>` variable is left a local: its
-- point is to be closed at the end of the input. The rewrite replaces the
-- word `local` (and `<const>`) in place, so line numbers in error messages
-- stay the input's.
local sub, find, match = string.sub, string.find, string.match

local _M = { _VERSION = "0.1.0" }

local OPENS = { ["function"] = true, ["do"] = true, ["if"] = true, ["repeat"] = true }
local CLOSES = { ["end"] = true, ["until"] = true }

-- The end of a long bracket opened at i ("[", "=" * level, "["), or nil
-- when s has no such opening there; false when it is not closed.
local function long_bracket(s, i)
  local eqs = match(s, "^%[(=*)%[", i)
  if not eqs then return nil end
  local _, e = find(s, "]" .. eqs .. "]", i + #eqs + 2, true)
  return e or false
end

-- The end of the quoted string opening at i, or false when unterminated.
local function quoted(s, i)
  local q, j = sub(s, i, i), i + 1
  while j <= #s do
    local c = sub(s, j, j)
    if c == "\\" then
      j = j + 2
    elseif c == q then
      return j
    elseif c == "\n" then
      return false
    else
      j = j + 1
    end
  end
  return false
end

--- locals.tokens(s) -> { { text, from, to }, ... } (names, numbers and
-- symbols; strings and comments skipped) | nil when a string or comment is
-- not closed (an unfinished input: nothing to rewrite yet).
function _M.tokens(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = sub(s, i, i)
    if find(c, "^%s") then
      i = i + 1
    elseif sub(s, i, i + 1) == "--" then
      local e = long_bracket(s, i + 2)
      if e == false then return nil end
      if e then
        i = e + 1
      else
        local nl = find(s, "\n", i, true)
        i = nl and nl + 1 or n + 1
      end
    elseif c == '"' or c == "'" then
      local e = quoted(s, i)
      if not e then return nil end
      i = e + 1
    elseif c == "[" and long_bracket(s, i) ~= nil then
      local e = long_bracket(s, i)
      if not e then return nil end
      i = e + 1
    elseif find(c, "^[%a_]") then
      local e = select(2, find(s, "^[%w_]*", i + 1))
      out[#out + 1] = { sub(s, i, e), i, e }
      i = e + 1
    elseif find(s, "^%.?%d", i) then
      -- A number: digits, letters, dots, and a sign after an exponent mark.
      local j = i + 1
      while j <= n do
        local d = sub(s, j, j)
        if find(d, "^[%w_.]") then
          j = j + 1
        elseif (d == "+" or d == "-") and find(sub(s, j - 1, j - 1), "^[eEpP]") then
          j = j + 1
        else
          break
        end
      end
      out[#out + 1] = { sub(s, i, j - 1), i, j - 1 }
      i = j
    else
      out[#out + 1] = { c, i, i }
      i = i + 1
    end
  end
  return out
end

local function is_name(t) return t ~= nil and find(t[1], "^[%a_][%w_]*$") ~= nil end

-- The edits of one top-level `local` statement starting at tokens[k]:
-- returns the edits ({ from, to, replacement }) or nil to leave it.
local function edits_of(toks, k)
  local nxt = toks[k + 1]
  if nxt and nxt[1] == "function" then return { { toks[k][2], toks[k][3], "" } } end
  local edits = { { toks[k][2], toks[k][3], "" } }
  local j, last = k + 1, nil
  while true do
    local name = toks[j]
    if not is_name(name) then return nil end   -- not a local statement we understand
    last, j = name, j + 1
    if toks[j] and toks[j][1] == "<" then
      local attrib, close = toks[j + 1], toks[j + 2]
      if not (is_name(attrib) and close and close[1] == ">") then return nil end
      if attrib[1] ~= "const" then return nil end   -- <close>: stays a local
      edits[#edits + 1] = { toks[j][2], close[3], "" }
      last, j = close, j + 3
    end
    if not toks[j] or toks[j][1] ~= "," then break end
    j = j + 1
  end
  if not toks[j] or toks[j][1] ~= "=" then
    edits[#edits + 1] = { last[3] + 1, last[3], " = nil" }
  end
  return edits
end

--- locals.rewrite(input) -> the input with its top-level locals turned
-- into assignments (the input unchanged when it has none, or cannot be
-- read: an unfinished string or comment).
function _M.rewrite(input)
  local toks = _M.tokens(input)
  if not toks then return input end
  local edits, depth = {}, 0
  for k, t in ipairs(toks) do
    local w = t[1]
    if OPENS[w] then
      depth = depth + 1
    elseif CLOSES[w] then
      depth = depth - 1
    elseif w == "local" and depth == 0 then
      for _, e in ipairs(edits_of(toks, k) or {}) do edits[#edits + 1] = e end
    end
  end
  if #edits == 0 then return input end
  -- Applied from the end, so earlier positions stay valid. A span removed
  -- leaves its line breaks ("<\nconst>" may span lines), so every line
  -- keeps its number.
  table.sort(edits, function(a, b) return a[1] > b[1] end)
  local out = input
  for _, e in ipairs(edits) do
    local breaks = sub(out, e[1], e[2]):gsub("[^\n]", "")
    out = sub(out, 1, e[1] - 1) .. e[3] .. breaks .. sub(out, e[2] + 1)
  end
  return out
end

return _M
