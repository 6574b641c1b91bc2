-- The ddbkit demo: what the engine does, against a local DynamoDB.
--   lua5.4 scripts/demo.lua ENDPOINT [TABLE_NAME]
local ddbkit = require "ddbkit"

local endpoint = assert(arg[1], "usage: demo.lua ENDPOINT [TABLE_NAME]")
local T = arg[2] or ddbkit.DEFAULT_TABLE_NAME

local client = assert(ddbkit.client{ endpoint = endpoint, region = "us-east-1",
  credentials = { access_key_id = "ddbkitlocal", secret_access_key = "ddbkitlocal" } })

-- Plain tables and lists are printed as trees; ddbkit's value wrappers
-- (null, binary, decimal) by their own tostring; sets with their elements.
local function show(v, indent)
  indent = indent or ""
  if ddbkit.is_set(v) then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = tostring(x) end
    return "set(" .. table.concat(parts, ", ") .. ")"
  end
  if type(v) ~= "table" or (getmetatable(v) and not ddbkit.is_array(v)) then
    return tostring(v)
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do
    out[#out + 1] = indent .. "  " .. tostring(k) .. " = " .. show(v[k], indent .. "  ")
  end
  return "{\n" .. table.concat(out, "\n") .. "\n" .. indent .. "}"
end

local function step(title) print(("\n== %s"):format(title)) end

step("put_item: a player record with every kind of value")
local player = {
  pk = "DEMO#player-7", sk = "PROFILE",
  name = "Ada", level = 42, ratio = 0.75, online = true, guild = ddbkit.null,
  inventory = { "sword", "shield" }, stats = { hp = 100, mp = 30 },
  badges = ddbkit.set("first-blood", "explorer"), avatar = ddbkit.binary("\137PNG\r\n"),
  gold = ddbkit.decimal("12345678901234567890.123456789"),
}
assert(client:put_item{ TableName = T, Item = player })
print("stored " .. player.pk)

step("get_item: the same values come back as plain Lua")
local res = assert(client:get_item{ TableName = T, Key = { pk = player.pk, sk = "PROFILE" } })
print(show(res.Item))

step("conditional put that fails: the old item comes back with the error")
local ok, err = client:put_item{
  TableName = T, Item = { pk = player.pk, sk = "PROFILE", name = "Impostor" },
  ConditionExpression = "attribute_not_exists(pk)",
  ReturnValuesOnConditionCheckFailure = "ALL_OLD",
}
print("result:", ok)
print("error: ", tostring(err))
print("err.item.name = " .. tostring(err.item.name) .. " (no extra read was needed)")

step("query with pagination: 12 events, 5 per page")
for i = 1, 12 do
  assert(client:put_item{ TableName = T,
    Item = { pk = "DEMO#events", sk = ("EVENT#%02d"):format(i), n = i } })
end
local page_no = 0
for page, perr in client:query_pages{ TableName = T, Limit = 5,
    KeyConditionExpression = "pk = :p", ExpressionAttributeValues = { [":p"] = "DEMO#events" } } do
  if not page then error(tostring(perr)) end
  page_no = page_no + 1
  local sks = {}
  for _, item in ipairs(page.Items) do sks[#sks + 1] = item.sk end
  print(("page %d: %s%s"):format(page_no, table.concat(sks, ", "),
    page.LastEvaluatedKey and "  (more...)" or ""))
end

step("client:stats()")
local s = client:stats()
print(("%d requests, %d retries, %d errors, %d bytes out, %d bytes in"):format(
  s.requests, s.retries, s.errors, s.bytes_out, s.bytes_in))
for op, o in pairs(s.operations) do
  print(("  %-12s calls=%d requests=%d errors=%d"):format(op, o.calls, o.requests, o.errors))
end
print(("  latency: p50 %.0f us, p99 %.0f us, max %.0f us"):format(
  s.latency_us.p50, s.latency_us.p99, s.latency_us.max))
client:close()
