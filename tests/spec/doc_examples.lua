-- Running the examples of a Markdown page (README.md, docs/*.md) as they
-- are written: readme_spec.lua and docs_synopsis_spec.lua share this.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"

local M = {}

-- The fenced blocks of `text`, in order: { lang, text, fragment, line,
-- section }. fragment: the line before it is <!-- fragment -->; section:
-- the "## " heading it is under.
function M.blocks(text, where)
  local out, cur, prev, section = {}, nil, "", nil
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if cur then
      if line:match("^```%s*$") then
        out[#out + 1] = cur
        cur = nil
      else
        cur.text = cur.text .. line .. "\n"
      end
    else
      section = line:match("^## (.-)%s*$") or section
      local lang = line:match("^```(%w*)%s*$")
      if lang then
        cur = { lang = lang, text = "", fragment = prev:match("^<!%-%- fragment %-%->%s*$") ~= nil,
                line = n, section = section }
      end
      if line:match("%S") then prev = line end
    end
  end
  assert(cur == nil, (where or "the page") .. ": a fenced block is not closed")
  return out
end

-- code compiled as chunk `name`, its globals in env (Lua 5.4 and LuaJIT).
function M.compile(code, name, env)
  if setfenv then
    local f, err = loadstring(code, "=" .. name)
    if f and env then setfenv(f, env) end
    return f, err
  end
  return load(code, "=" .. name, "t", env)
end

-- Runs `code` where print is captured and os.getenv("DDBKIT_ENDPOINT") is
-- the test's DynamoDB Local; returns the printed lines.
function M.run(code, name)
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
  local f, err = M.compile(code, name, env)
  assert(f, err)
  f()
  return printed
end

-- The two tables `make run` creates, created when missing (the pages'
-- examples assume them).
function M.make_run_tables()
  local c = H.client()
  for _, t in ipairs({ { ddbkit.DEFAULT_TABLE_NAME, ddbkit.TABLE_SCHEMA },
                       { ddbkit.IDEMPOTENCY_TABLE_NAME, ddbkit.IDEMPOTENCY_TABLE_SCHEMA } }) do
    local ok, err = c:create_table(schema.create_table_params(t[2], t[1]))
    if not ok then assert(err.code == "ResourceInUseException", tostring(err)) end
    assert(c:wait_for_table(t[1], 30000))
  end
  c:close()
end

return M
