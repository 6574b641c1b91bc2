-- Every docs/*.md page's Synopsis runs as written against DynamoDB Local.
-- Each page's first ```lua block under "## Synopsis" is the synopsis; the
-- one thing changed before running it is the endpoint: the documented
-- local address "http://127.0.0.1:8000" becomes DDBKIT_TEST_ENDPOINT (see
-- docs/README.md). A block preceded by the line "<!-- fragment -->" is a
-- piece of a larger program (needs nginx) and is not run here.
-- Each synopsis creates its own table when missing. A `print(...)` line
-- ending with a comment `-- WORD ...` promises WORD (up to a space, `:`, `,`
-- or `;`) among what it prints;
-- the test checks every such promise, so the comments cannot drift.
local H = require "test_helper"

local ROOT = os.getenv("DDBKIT_ROOT") or "."
local DOCUMENTED = "http://127.0.0.1:8000"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The synopsis block of a page's text, nil when it has none, or false
-- when it is marked as a fragment.
local function synopsis(text)
  local at = text:find("\n## Synopsis\n", 1, true)
  if not at then return nil end
  local rest = text:sub(at)
  local s, e = rest:find("\n```lua\n", 1, true)
  if not s then return nil end
  local before = rest:sub(1, s)
  if before:find("<!-- fragment -->", 1, true) then return false end
  local close = rest:find("\n```\n", e, true)
  assert(close, "unterminated ```lua block")
  return rest:sub(e + 1, close)
end

local PAGES = { "cache", "dedupe", "ratelimit", "adaptive" }

describe("docs synopses", function()
  for _, page in ipairs(PAGES) do
    local path = ROOT .. "/docs/" .. page .. ".md"
    it(page .. ".md runs as written", function()
      local text = assert(read(path), "cannot read " .. path)
      local code = synopsis(text)
      assert.is_string(code, path .. " has no runnable Synopsis block")
      assert.truthy(code:find(DOCUMENTED, 1, true),
                    path .. ": the synopsis must use the documented endpoint " .. DOCUMENTED)
      local src = code:gsub(DOCUMENTED:gsub("%p", "%%%0"), (H.endpoint:gsub("%%", "%%%%")))
      local out = {}
      local env = setmetatable({ print = function(...)
        local parts = {}
        for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
        out[#out + 1] = table.concat(parts, "\t")
      end }, { __index = _G })
      local chunk = assert(load(src, "=" .. page .. ".md synopsis", "t", env))
      local ok, err = pcall(chunk)
      assert(ok, page .. ".md synopsis raised: " .. tostring(err))
      local printed = table.concat(out, "\n")
      local promises = 0
      for word in code:gmatch("print%b()[^\n]-%-%-%s*([^%s:,;]+)") do
        promises = promises + 1
        assert.truthy(printed:find(word, 1, true),
                      page .. ".md synopsis should print " .. word .. ", printed:\n" .. printed)
      end
      assert.is_true(#out > 0, page .. ".md synopsis printed nothing")
      assert.is_true(promises > 0, page .. ".md synopsis promises no output")
    end)
  end
end)
