-- The Synopsis of every docs/<module>.md page, run as written against
-- DynamoDB Local, so the reference pages cannot drift from the code.
-- The Synopsis is the first ```lua block after the "## Synopsis" heading.
-- The only change, as the pages say: os.getenv("DDBKIT_ENDPOINT") answers
-- the test's DynamoDB Local. A block marked <!-- fragment --> on the line
-- before it (it needs nginx) is only compiled. The two tables `make run`
-- creates are created first when missing, as the store pages assume.
local H = require "test_helper"
local DOC = require "doc_examples"

local DOCS = H.spec_dir() .. "/../../docs/"
local PAGES = { "client", "cache", "dedupe", "ratelimit", "adaptive", "lock",
                "idempotency", "resty" }
-- (docs/cli.md is about a command: its synopsis is shell, not run here.)

-- { text, fragment, line } of the page's Synopsis block, or nil.
local function synopsis(page)
  local text = assert(H.read_file(DOCS .. page .. ".md"), "docs/" .. page .. ".md not found")
  for _, b in ipairs(DOC.blocks(text, "docs/" .. page .. ".md")) do
    if b.lang == "lua" and b.section == "Synopsis" then return b end
  end
  return nil
end

local compile, run = DOC.compile, DOC.run

-- What the synopsis says it prints: the `--> ...` comments, in order. Fields
-- are separated by two or more spaces (print's tabs), a field ending in
-- "..." matches any text starting so, and a trailing "(...)" is a remark.
local function expectations(code)
  local out = {}
  for line in code:gmatch("[^\n]+") do
    local e = line:match("%-%->%s*(.-)%s*$")
    if e then
      e = e:gsub("%s*%b()$", "")
      local fields = {}
      for f in (e .. "  "):gmatch("(.-)%s%s+") do fields[#fields + 1] = f end
      out[#out + 1] = fields
    end
  end
  return out
end

local function matches(fields, printed)
  local got = {}
  for f in (printed .. "\t"):gmatch("(.-)\t") do got[#got + 1] = f end
  if #got ~= #fields then return false end
  for i, f in ipairs(fields) do
    local prefix = f:match("^(.-)%.%.%.$")
    if prefix then
      if got[i]:sub(1, #prefix) ~= prefix then return false end
    elseif got[i] ~= f then
      return false
    end
  end
  return true
end

describe("the docs pages' synopses", function()
  setup(DOC.make_run_tables)

  for _, page in ipairs(PAGES) do
    it("docs/" .. page .. ".md has a Synopsis that runs as written", function()
      local s = synopsis(page)
      assert.truthy(s, "docs/" .. page .. ".md: no ```lua block under ## Synopsis")
      local name = "docs/" .. page .. ".md:" .. s.line
      if s.fragment then
        assert(compile(s.text, name))
        return
      end
      local out = run(s.text, name)
      assert.truthy(#out > 0, name .. " printed nothing")
      -- each promised output appears, in order
      local at = 1
      for _, fields in ipairs(expectations(s.text)) do
        while at <= #out and not matches(fields, out[at]) do at = at + 1 end
        assert.truthy(at <= #out, name .. ": never printed " .. table.concat(fields, "  ")
                      .. "; printed:\n" .. table.concat(out, "\n"))
        at = at + 1
      end
    end)
  end
end)
