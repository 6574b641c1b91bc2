-- The Synopsis of every docs/<module>.md page, run as written against
-- DynamoDB Local, so the reference pages cannot drift from the code.
-- The Synopsis is the first ```lua block after the "## Synopsis" heading.
-- The only change, as the pages say: os.getenv("DDBKIT_ENDPOINT") answers
-- the test's DynamoDB Local. A block marked <!-- fragment --> on the line
-- before it (it needs nginx) is only compiled. The two tables `make run`
-- creates are created first when missing, as the store pages assume.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"

local DOCS = H.spec_dir() .. "/../../docs/"
local PAGES = { "client", "cache", "dedupe", "ratelimit", "adaptive", "lock",
                "idempotency", "resty" }
-- (docs/cli.md is about a command: its synopsis is shell, not run here.)

-- { text, fragment, line } of the page's Synopsis block, or nil.
local function synopsis(page)
  local text = assert(H.read_file(DOCS .. page .. ".md"), "docs/" .. page .. ".md not found")
  local in_syn, cur, prev, n = false, nil, "", 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if cur then
      if line:match("^```%s*$") then return cur end
      cur.text = cur.text .. line .. "\n"
    elseif line:match("^## ") then
      in_syn = line:match("^## Synopsis%s*$") ~= nil
    elseif in_syn and line:match("^```lua%s*$") then
      cur = { text = "", fragment = prev:match("^<!%-%- fragment %-%->%s*$") ~= nil, line = n }
    end
    if line:match("%S") then prev = line end
  end
  return nil
end

local function compile(code, name, env)
  if setfenv then
    local f, err = loadstring(code, "=" .. name)
    if f and env then setfenv(f, env) end
    return f, err
  end
  return load(code, "=" .. name, "t", env)
end

local function run(code, name)
  local printed = {}
  local env = setmetatable({}, { __index = _G })
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    printed[#printed + 1] = table.concat(parts, "\t")
  end
  env.os = setmetatable({ getenv = function(k)
    if k == "DDBKIT_ENDPOINT" then return H.endpoint end
    return os.getenv(k)
  end }, { __index = os })
  local f, err = compile(code, name, env)
  assert(f, err)
  f()
  return printed
end

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

local function ensure_table(client, name, table_schema)
  local ok, err = client:create_table(schema.create_table_params(table_schema, name))
  if not ok then assert(err.code == "ResourceInUseException", tostring(err)) end
  assert(client:wait_for_table(name, 30000))
end

describe("the docs pages' synopses", function()
  setup(function()
    local c = H.client()
    ensure_table(c, ddbkit.DEFAULT_TABLE_NAME, ddbkit.TABLE_SCHEMA)
    ensure_table(c, ddbkit.IDEMPOTENCY_TABLE_NAME, ddbkit.IDEMPOTENCY_TABLE_SCHEMA)
    c:close()
  end)

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
