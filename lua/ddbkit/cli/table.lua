-- ddbkit.cli.table: `ddbkit table create|describe|delete|ttl`, provisioning
-- the tables ddbkit uses (the stores never create them).
--
--   local kind = tables.SCHEMAS.store   -- or .idempotency (--schema)
--   tables.run("create", client, table_name, kind, tty, output.new("text"))
--
-- Prints its result on stdout (text, or JSON with --output json); problems are raised as failures
-- (ddbkit.cli.errors.fail).
local core = require "ddbkit.core"
local schema = require "ddbkit.schema"
local fail = require("ddbkit.cli.errors").fail
local escape = require("ddbkit.pretty").escape

local ipairs, tostring = ipairs, tostring
local format, concat = string.format, table.concat

local _M = { _VERSION = "0.1.0" }

local function out(...) io.stdout:write(...) end
local function say(...) io.stderr:write(...) end

-- By --schema: the table's parameters, its TTL attribute and the
-- configuration key naming it by default.
local SCHEMAS = {
  store = { params = schema.TABLE_SCHEMA, ttl = schema.TTL_ATTRIBUTE, config_key = "table" },
  idempotency = { params = schema.IDEMPOTENCY_TABLE_SCHEMA, ttl = schema.IDEMPOTENCY_TTL_ATTRIBUTE,
                  config_key = "idempotency_table" },
}
_M.SCHEMAS = SCHEMAS

local POLL_MS = 250
local WAIT_LIMIT_MS = 10 * 60 * 1000   -- a new table with an index can take minutes on AWS

-- A missing table gets a message about this command, not the stores'.
local function table_fail(client, name, err)
  if err.code == "ResourceNotFoundException" then
    fail(err.code, "table " .. name .. " not found at " .. client:endpoint())
  end
  fail(err.code, err.message)
end

-- A spinner line on stderr while waiting, only when stderr is a terminal
-- (tty; a log file should not fill with carriage returns).
local function progress(label, tty)
  local frames, i, t0 = { "|", "/", "-", "\\" }, 0, core.mono_ms()
  return {
    tick = function(status)
      if not tty then return end
      i = i % #frames + 1
      say(format("\r%s %s: %s (%d s)\27[K", frames[i], escape(label), escape(status),
                 math.floor((core.mono_ms() - t0) / 1000)))
    end,
    done = function() if tty then say("\r\27[K") end end,
  }
end

-- Polls DescribeTable until done(table_description | nil) is true.
local function wait_table(client, name, label, tty, done)
  local p = progress(label, tty)
  local deadline = core.mono_ms() + WAIT_LIMIT_MS
  while true do
    local res, err = client:describe_table{ TableName = name }
    if not res and err.code ~= "ResourceNotFoundException" then
      p.done()
      table_fail(client, name, err)
    end
    local t = res and res.Table
    if done(t) then p.done() return t end
    if core.mono_ms() > deadline then
      p.done()
      fail("Timeout", label .. ": still " .. (t and t.TableStatus or "not visible")
           .. " after " .. math.floor(WAIT_LIMIT_MS / 1000) .. " s")
    end
    p.tick(t and t.TableStatus or "waiting")
    client.runtime.sleep(POLL_MS)
  end
end

-- The description is the server's: a field of the wrong type reads as
-- missing (maps and lists as {}, numbers as nil), so describe and the TTL line
-- never raise.
local function map(v) return type(v) == "table" and v or {} end
local function num(v) return type(v) == "number" and v == v and v or nil end

-- Enables TTL on attr unless it is on already; returns the status line.
local function ensure_ttl(client, name, attr)
  local res, err = client:describe_time_to_live{ TableName = name }
  if not res then table_fail(client, name, err) end
  local d = map(res.TimeToLiveDescription)
  local status = tostring(d.TimeToLiveStatus or "DISABLED")
  if status == "ENABLED" or status == "ENABLING" then
    if d.AttributeName ~= attr then
      fail("TTLMismatch", "TTL of table " .. name .. " is on " .. tostring(d.AttributeName)
           .. ", not " .. attr .. " (DynamoDB needs it disabled before it can move)")
    end
    return "TTL " .. status .. " on " .. attr .. " (unchanged)"
  end
  if status == "DISABLING" then
    fail("TTLBusy", "TTL of table " .. name .. " is being disabled; try again in an hour")
  end
  local ok, uerr = client:update_time_to_live{ TableName = name,
    TimeToLiveSpecification = { AttributeName = attr, Enabled = true } }
  if not ok then table_fail(client, name, uerr) end
  return "TTL enabled on " .. attr
end

local function table_create(client, name, kind, tty, o)
  local res, err = client:create_table(schema.create_table_params(kind.params, name))
  if not res then
    if err.code == "ResourceInUseException" then
      fail(err.code, "table " .. name .. " already exists at " .. client:endpoint())
    end
    table_fail(client, name, err)
  end
  wait_table(client, name, "creating " .. name, tty,
             function(t) return t and t.TableStatus == "ACTIVE" end)
  local ttl = ensure_ttl(client, name, kind.ttl)
  if o.json then return o:value{ table = name, status = "ACTIVE", ttl = ttl } end
  out("created table ", escape(name), " (ACTIVE); ", escape(ttl), "\n")
end

local function table_delete(client, name, _, tty, o)
  local res, err = client:delete_table{ TableName = name }
  if not res then table_fail(client, name, err) end
  wait_table(client, name, "deleting " .. name, tty, function(t) return t == nil end)
  if o.json then return o:value{ table = name, deleted = true } end
  out("deleted table ", escape(name), "\n")
end

local function table_ttl(client, name, kind, _, o)
  local ttl = ensure_ttl(client, name, kind.ttl)
  if o.json then return o:value{ table = name, ttl = ttl } end
  out(escape(name), ": ", escape(ttl), "\n")
end

-- Rows of what DynamoDB said (names, statuses): escaped, since a server
-- can put terminal escape sequences in any of them.
local function print_rows(rows)
  local w, shown = 0, {}
  for i, r in ipairs(rows) do
    shown[i] = { escape(r[1]), escape(r[2]) }
    w = math.max(w, #shown[i][1])
  end
  for _, r in ipairs(shown) do out(r[1], (" "):rep(w - #r[1] + 2), r[2], "\n") end
end

local function size_text(bytes)
  local units, n, u = { "bytes", "KiB", "MiB", "GiB", "TiB" }, bytes or 0, 1
  while n >= 1024 and u < #units do n, u = n / 1024, u + 1 end
  return u == 1 and format("%d bytes", n) or format("%.1f %s", n, units[u])
end

-- "pk (S) HASH, sk (S) RANGE"
local function keys_text(key_schema, types)
  local parts = {}
  for i, k in ipairs(map(key_schema)) do
    k = map(k)
    parts[i] = format("%s (%s) %s", tostring(k.AttributeName),
                      tostring(types[k.AttributeName] or "?"), tostring(k.KeyType))
  end
  return concat(parts, ", ")
end

local function table_describe(client, name, _, _, o)
  local res, err = client:describe_table{ TableName = name }
  if not res then table_fail(client, name, err) end
  if o.json then   -- DynamoDB's own description, for scripts that know its fields
    local ttl, terr = client:describe_time_to_live{ TableName = name }
    if not ttl then table_fail(client, name, terr) end
    return o:value{ Table = res.Table, TimeToLiveDescription = ttl.TimeToLiveDescription }
  end
  local t = map(res.Table)
  local types = {}
  for _, a in ipairs(map(t.AttributeDefinitions)) do
    a = map(a)
    if a.AttributeName ~= nil then types[a.AttributeName] = a.AttributeType end
  end
  local billing = map(t.BillingModeSummary).BillingMode or "PROVISIONED"
  local created = num(t.CreationDateTime)
  local rows = {
    { "table", t.TableName }, { "status", t.TableStatus }, { "endpoint", client:endpoint() },
    { "arn", t.TableArn or "-" },
    { "created", created and os.date("!%Y-%m-%d %H:%M:%S UTC", math.floor(created)) or "-" },
    { "billing", billing }, { "keys", keys_text(t.KeySchema, types) },
  }
  for _, g in ipairs(map(t.GlobalSecondaryIndexes)) do
    g = map(g)
    rows[#rows + 1] = { "index " .. tostring(g.IndexName), format("%s; projection %s; %s",
      keys_text(g.KeySchema, types), tostring(map(g.Projection).ProjectionType or "?"),
      tostring(g.IndexStatus or "?")) }
  end
  rows[#rows + 1] = { "items", format("%.0f (approximate, refreshed every ~6 hours)",
                                      num(t.ItemCount) or 0) }
  rows[#rows + 1] = { "size", size_text(num(t.TableSizeBytes)) .. " (approximate)" }
  local ttl, terr = client:describe_time_to_live{ TableName = name }
  local d = ttl and map(ttl.TimeToLiveDescription) or {}
  rows[#rows + 1] = { "ttl", ttl and (tostring(d.TimeToLiveStatus or "DISABLED")
    .. (d.AttributeName and " on " .. tostring(d.AttributeName) or ""))
    or ("unknown: " .. tostring(terr)) }
  print_rows(rows)
end

local ACTIONS = { create = table_create, describe = table_describe, delete = table_delete,
                  ttl = table_ttl }

--- tables.run(action, client, name, kind, tty, o): runs one action on the
-- table name of kind (one of SCHEMAS); tty: whether stderr is a terminal,
-- to show a spinner while waiting; o: the ddbkit.cli.output to print with.
function _M.run(action, client, name, kind, tty, o)
  ACTIONS[action](client, name, kind, tty, o)
end

--- tables.confirm_delete(name, yes, tty_in): raises unless the deletion of
-- name is confirmed: by --yes (yes), else on a terminal (tty_in: stdin is
-- one) by typing the table's name. Without either nothing is deleted.
function _M.confirm_delete(name, yes, tty_in)
  if yes then return end
  if not tty_in then
    fail("NotConfirmed", "not deleting table " .. name .. ": standard input is not a terminal "
         .. "to confirm on; add --yes to delete it")
  end
  say("This deletes table ", escape(name), " and every item in it.\n",
      "Type the table name to confirm: ")
  local line = io.stdin:read("l")
  if line ~= name then
    fail("NotConfirmed", "not deleting table " .. name .. ": the name typed did not match")
  end
end

return _M
