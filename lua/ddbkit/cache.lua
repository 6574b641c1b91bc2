-- ddbkit.cache: the Node store package's response cache (compat.md A.1) on
-- the shared table, item for item, so a Node service and ddbkit read each
-- other's entries.
--
--   local cache = ddbkit.cache.new{ client = client }
--   cache:set_with_tags(hash, { body = "..." }, 300, { "user:7" })
--   local v, err = cache:get(hash)          -- nil, nil on a miss
--   local n = cache:invalidate_by_tag("user:7")
--
-- Items (names with the default key-prefix policy):
--   entry  pk = sk = "CACHE#<hash>", value (S: JSON text or "__UNDEFINED__"),
--          ttl (N s; 0 = never), createdAt (N ms); set_with_tags also writes
--          ddbkitTagKeys (L of the tag item pks), which Node ignores.
--   tag    pk = "TAG#<tag>", sk = "CACHE#<hash>", ttl (the entry's), plus
--          gsi1pk = "CACHE#<hash>", gsi1sk = "TAG#<tag>" (ddbkit only).
-- Values are JavaScript's JSON text (store.json_encode, ddbkit.jsjson): a
-- value Node wrote reads back with [] and {} apart and its key order, and
-- is written back byte for byte; the size limit counts the same UTF-8
-- bytes Node counts (Buffer.byteLength(JSON.stringify(value))).
--
-- Tag items of a hash (delete, set_with_tags). The Node package scans the
-- whole table for items with sk = CACHE#<hash>, on every call. ddbkit
-- avoids that Scan for the entries it can vouch for:
--   1. The write of the entry (DeleteItem / PutItem with ReturnValues
--      ALL_OLD, no extra request) returns the old entry. When it carries
--      ddbkitTagKeys, the last writer of the entry was ddbkit's
--      set_with_tags (or ddbkit's set after it: set is an UpdateItem that
--      keeps the list), which removed every other tag item of the hash
--      when it wrote the list (in "ignore" mode: every one it could find);
--      the list is then exactly the hash's tag items (read from the base
--      table, so strongly consistent). Only ddbkit writes that attribute
--      and Node's writes (PutItem) drop it, so it is the mark of an entry
--      ddbkit vouches for. When the removal fails, set_with_tags takes the
--      list off again (see unvouch), so the mark is never a false claim.
--   2. Otherwise (the entry is gone, or Node wrote it: Node's set keeps the
--      tag items ddbkit wrote, Node's setWithTags writes tag items with no
--      gsi1 attributes) what happens is the `node_tags` option of new():
--      "scan" (the default): what Node does, a Scan of the table filtered
--        on sk = CACHE#<hash> (ConsistentRead, paged through the client's
--        guarded cursor: bounded by max_pages, a repeated LastEvaluatedKey
--        is an error). It finds Node's and ddbkit's tag items alike, so no
--        stale mapping survives a delete or a retag in a mixed fleet. Cost:
--        the table's size in 1 MB pages, as Node pays on every call.
--      "ignore": for a table no Node service writes. One Query of gsi1 by
--        gsi1pk finds the tag items ddbkit wrote (eventually consistent: one
--        written a moment ago may be missed); Node's are not found and
--        survive, and a later invalidate_by_tag of such a tag deletes the
--        re-set entry early (over-invalidation, never a stale read).
-- Why "scan" is the default: the cache cannot tell that a table has no
-- Node writers, and a wrong "ignore" in a mixed fleet leaves stale
-- mappings that later delete fresh entries, silently, while a wrong
-- "scan" only costs requests, and only for hashes ddbkit cannot vouch for
-- (a hash set with tags for the first time, or last written by Node). A
-- fleet without Node sets "ignore" and never scans. Request counts,
-- measured in cache_node_spec.lua (3 tags, a table of one Scan page):
--                            ddbkit's entry      Node's entry / new hash
--   delete, "scan"           Delete [+Batch]     Delete + Scan [+Batch]
--   delete, "ignore"         Delete [+Batch]     Delete + Query [+Batch]
--   set_with_tags, "scan"    Put + Batch         Put + Scan + Batch
--   set_with_tags, "ignore"  Put + Batch         Put + Query + Batch
-- Batch = ceil(items / 25) BatchWriteItem, sent when there are items; a
-- Scan is one request per 1 MB page of the whole table. "ignore" finds no
-- tag item Node wrote: they are left. Concurrent writers of one hash can
-- still leave a mapping (see set_with_tags' known race).
-- ALL_OLD costs no extra request or read capacity, but it does carry the
-- old value back over the wire (up to ~400 KB for a large entry).
local store = require "ddbkit.store"
local core = require "ddbkit.core"

local type, pairs, ipairs, error, setmetatable, tostring, floor, ceil, huge =
      type, pairs, ipairs, error, setmetatable, tostring, math.floor, math.ceil, math.huge
local array = core.array

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local DEFAULT_TABLE = "http-client-toolkit"
local DEFAULT_MAX_ENTRY = 399360  -- 390 KiB, the Node default
local BATCH = 25                  -- BatchWriteItem's limit
local TAGS_ATTR = "ddbkitTagKeys"

local OPTIONS = {
  client = store.is_client,
  table_name = store.is_string,
  policy = function(v)
    if v ~= nil and type(v) ~= "string" and type(v) ~= "table" then
      return "a module name, a file path or a table"
    end
  end,
  max_entry_size_bytes = store.is_positive,
  node_tags = function(v)
    if v ~= "scan" and v ~= "ignore" then
      return '"scan" (a table Node services share, the default) or "ignore" (no Node writers)'
    end
  end,
}

--- ddbkit.cache.new{ client, table_name?, policy?, max_entry_size_bytes?, node_tags? } -> cache
-- node_tags: "scan" (default) or "ignore", how tag items of an entry
-- ddbkit cannot vouch for are found (see the header).
function _M.new(opts)
  opts = store.options("ddbkit.cache.new", opts, OPTIONS)
  if opts.client == nil then error("ddbkit.cache.new: opts.client must be a ddbkit.client", 2) end
  return setmetatable({
    client = opts.client,
    runtime = opts.client.runtime,
    table_name = opts.table_name or DEFAULT_TABLE,
    policy = store.policy(opts.policy),
    max_entry_size_bytes = opts.max_entry_size_bytes or DEFAULT_MAX_ENTRY,
    node_tags = opts.node_tags or "scan",
  }, mt)
end

-- The table and the two prefixes for this operation (the policy is asked
-- every time, so a reloaded policy takes effect), or nil, err.
local function names(self)
  local t, err = self.policy.table("cache", self.table_name)
  if not t then return nil, err end
  local cp, terr = self.policy.prefix("cache")
  if not cp then return nil, terr end
  local tp, perr = self.policy.prefix("tag")
  if not tp then return nil, perr end
  return t, cp, tp
end

-- The table and the entry's key for `hash` (checked as the Node package
-- checks it), or nil, err.
local function entry_key(self, hash)
  local perr = store.check_part("hash", hash)
  if perr then return nil, perr end
  local tname, cp = names(self)
  if not tname then return nil, cp end
  return tname, cp .. hash
end

local function now_s(self) return floor(self.runtime.now_ms() / 1000) end

local function check_ttl(ttl_seconds, name)
  if type(ttl_seconds) ~= "number" or ttl_seconds ~= ttl_seconds
     or ttl_seconds == huge or ttl_seconds == -huge then
    error("bad argument #2 to '" .. name .. "' (ttl_seconds must be a finite number, got "
          .. tostring(ttl_seconds) .. ")", 3)
  end
end

-- ttl attribute for ttl_seconds: 0 never, negative already expired (now),
-- else now + ttl_seconds rounded up to whole seconds (never early).
local function ttl_of(self, ttl_seconds)
  if ttl_seconds == 0 then return 0 end
  local now = now_s(self)
  if ttl_seconds < 0 then return now end
  return now + ceil(ttl_seconds)
end

-- Deletes keys (a list of { pk =, sk = }) in batches of 25, then writes
-- puts (a list of items) likewise; the client resends unprocessed items.
local function batch(self, tname, deletes, puts)
  local reqs = {}
  for _, k in ipairs(deletes or {}) do reqs[#reqs + 1] = { DeleteRequest = { Key = k } } end
  for _, it in ipairs(puts or {}) do reqs[#reqs + 1] = { PutRequest = { Item = it } } end
  for i = 1, #reqs, BATCH do
    local chunk = {}
    for j = i, math.min(i + BATCH - 1, #reqs) do chunk[#chunk + 1] = reqs[j] end
    local ok, err = self.client:batch_write_item{ RequestItems = { [tname] = chunk } }
    if not ok then return nil, err end
  end
  return true
end

-- The pks of the tag items of entry key `ck` (tp: the tag prefix): the
-- old entry's list when it has one, else a Scan by sk (node_tags "scan")
-- or one gsi1 Query ("ignore"); see the header.
local function old_tag_keys(self, tname, ck, tp, old)
  local listed = old and old[TAGS_ATTR]
  if type(listed) == "table" then
    local out = {}
    for _, pk in ipairs(listed) do if type(pk) == "string" then out[#out + 1] = pk end end
    return out
  end
  local out = {}
  if self.node_tags == "scan" then
    for it, err in self.client:scan_items{
      TableName = tname, ConsistentRead = true,
      FilterExpression = "sk = :k AND begins_with(pk, :t)",
      ExpressionAttributeValues = { [":k"] = ck, [":t"] = tp },
      ProjectionExpression = "pk, sk",
    } do
      if it == false then return nil, err end
      if it.sk == ck and it.pk ~= ck then out[#out + 1] = it.pk end
    end
    return out
  end
  local items, err = self.client:query_all{
    TableName = tname, IndexName = "gsi1",
    KeyConditionExpression = "gsi1pk = :k",
    ExpressionAttributeValues = { [":k"] = ck },
    ProjectionExpression = "pk, sk",
  }
  if not items then return nil, err end
  for _, it in ipairs(items) do
    -- only tag items of this entry (sk names it), whatever else shares gsi1pk
    if it.sk == ck and it.pk ~= ck then out[#out + 1] = it.pk end
  end
  return out
end

-- Deletes the entry only if it is still the one we read (same ttl and
-- createdAt), so a fresh set racing with us is not lost. A failed
-- condition means someone else already replaced or removed it.
local function delete_seen(self, tname, ck, item)
  local cond, vals = {}, {}
  if item.ttl ~= nil then
    cond[#cond + 1] = "#ttl = :ttl"
    vals[":ttl"] = item.ttl
  end
  if item.createdAt ~= nil then
    cond[#cond + 1] = "createdAt = :c"
    vals[":c"] = item.createdAt
  end
  local params = { TableName = tname, Key = { pk = ck, sk = ck } }
  if #cond > 0 then
    params.ConditionExpression = table.concat(cond, " AND ")
    params.ExpressionAttributeValues = vals
    if item.ttl ~= nil then params.ExpressionAttributeNames = { ["#ttl"] = "ttl" } end
  end
  local ok, err = self.client:delete_item(params)
  if not ok and err.code ~= "ConditionalCheckFailedException" then return nil, err end
  return true
end

--- cache:get(hash) -> value | nil (miss) | nil, err
-- Cost: 1 GetItem, hit or miss. An expired entry (ttl > 0 and now >= ttl)
-- or one whose value is not JSON is a miss and costs 1 more request, a
-- conditional DeleteItem of that entry (its tag items, which share its
-- ttl, are left to DynamoDB's TTL). The read is eventually consistent, as
-- in the Node package. A stored "__UNDEFINED__" reads back as nil.
function _M:get(hash)
  local tname, ck = entry_key(self, hash)
  if not tname then return nil, ck end
  local res, err = self.client:get_item{ TableName = tname, Key = { pk = ck, sk = ck } }
  if not res then return nil, err end
  local item = res.Item
  if not item then return nil end
  local ttl = item.ttl
  if type(ttl) == "number" and ttl > 0 and now_s(self) >= ttl then
    local ok, derr = delete_seen(self, tname, ck, item)
    if not ok then return nil, derr end
    return nil
  end
  local good, value = store.decode_value(item.value)
  if not good then
    local ok, derr = delete_seen(self, tname, ck, item)
    if not ok then return nil, derr end
    return nil
  end
  return value
end

-- The entry item for set / set_with_tags; or false, why when the value is
-- too large to store (not an error: the Node package skips such a value
-- silently, and so do we, but the caller can tell); or nil, err.
local function entry(self, ck, value, ttl_seconds)
  local text, err = store.encode_value(value)
  if not text then return nil, err end
  if #text > self.max_entry_size_bytes then
    return false, "not stored: the value is " .. #text .. " bytes of JSON, over max_entry_size_bytes ("
                  .. self.max_entry_size_bytes .. ")"
  end
  return { pk = ck, sk = ck, value = text, ttl = ttl_of(self, ttl_seconds),
           createdAt = floor(self.runtime.now_ms()) }
end

--- cache:set(hash, value, ttl_seconds) -> true | false, why | nil, err
-- Cost: 1 UpdateItem (none when the serialized value exceeds
-- max_entry_size_bytes: not stored, false and a message naming the size and
-- the limit; Node skips it silently, and nothing is written either way). Tag items of an
-- earlier set_with_tags stay, as in the Node package; an UpdateItem (not a
-- PutItem) so that the entry keeps its ddbkitTagKeys list, which still
-- names exactly those tag items (see the header): a later delete or retag
-- needs no Scan. The item Node reads is the same: pk, sk, value, ttl,
-- createdAt.
function _M:set(hash, value, ttl_seconds)
  check_ttl(ttl_seconds, "set")
  local tname, ck = entry_key(self, hash)
  if not tname then return nil, ck end
  local item, err = entry(self, ck, value, ttl_seconds)
  if not item then return item, err end
  local ok, uerr = self.client:update_item{
    TableName = tname, Key = { pk = ck, sk = ck },
    UpdateExpression = "SET #v = :v, #ttl = :ttl, createdAt = :c",
    ExpressionAttributeNames = { ["#v"] = "value", ["#ttl"] = "ttl" },
    ExpressionAttributeValues = { [":v"] = item.value, [":ttl"] = item.ttl, [":c"] = item.createdAt },
  }
  if not ok then return nil, uerr end
  return true
end

--- cache:delete(hash) -> true | nil, err
-- Deletes the entry and its tag items. Cost: 1 DeleteItem (returning the
-- old entry); when the old entry does not list its tags (Node wrote it,
-- or it is gone), a Scan by sk (node_tags "scan": the table's size in
-- 1 MB pages) or 1 gsi1 Query ("ignore"); then ceil(tags / 25)
-- BatchWriteItem (none when there are none).
function _M:delete(hash)
  local perr = store.check_part("hash", hash)
  if perr then return nil, perr end
  local tname, ck, tp = names(self)
  if not tname then return nil, ck end
  ck = ck .. hash
  local res, err = self.client:delete_item{ TableName = tname, Key = { pk = ck, sk = ck },
                                            ReturnValues = "ALL_OLD" }
  if not res then return nil, err end
  local keys, qerr = old_tag_keys(self, tname, ck, tp, res.Attributes)
  if not keys then return nil, qerr end
  local dels, seen = {}, {}
  for _, pk in ipairs(keys) do
    if not seen[pk] then  -- one batch may not name a key twice
      seen[pk] = true
      dels[#dels + 1] = { pk = pk, sk = ck }
    end
  end
  return batch(self, tname, dels)
end

-- The entry set_with_tags just wrote lists its tags, a claim that they
-- are all of the hash's tag items; when removing the old ones failed, the
-- claim is false, so the list is taken off again (1 UpdateItem, only on
-- that failure, best effort, and only while the entry is still the one
-- written: same createdAt): the next delete or retag then treats the entry
-- as one ddbkit cannot vouch for. Returns nil, err (the first failure).
local function unvouch(self, tname, ck, item, err)
  self.client:update_item{
    TableName = tname, Key = { pk = ck, sk = ck },
    UpdateExpression = "REMOVE " .. TAGS_ATTR,
    ConditionExpression = "createdAt = :c",
    ExpressionAttributeValues = { [":c"] = item.createdAt },
  }
  return nil, err
end

--- cache:set_with_tags(hash, value, ttl_seconds, tags) -> true | false, why | nil, err
-- (false: too large, as cache:set.) Writes the entry, removes the hash's old tag items that are not in
-- `tags`, writes one tag item per tag. Cost: 1 PutItem (returning the old
-- entry); when the old entry did not list its tags (a new hash, or Node
-- wrote it), a Scan by sk (node_tags "scan": the table's size in 1 MB
-- pages) or 1 gsi1 Query ("ignore"); then ceil((stale + new tags) / 25)
-- BatchWriteItem.
-- Known race: two set_with_tags of one hash at the same moment can leave
-- the union of both tag sets (over-invalidation later, never a stale read).
function _M:set_with_tags(hash, value, ttl_seconds, tags)
  check_ttl(ttl_seconds, "set_with_tags")
  if type(tags) ~= "table" then
    error("bad argument #4 to 'set_with_tags' (table expected, got " .. type(tags) .. ")", 2)
  end
  local perr = store.check_part("hash", hash)
  if perr then return nil, perr end
  for _, tag in ipairs(tags) do
    local terr = store.check_part("tag", tag)
    if terr then return nil, terr end
  end
  local tname, ck, tp = names(self)
  if not tname then return nil, ck end
  ck = ck .. hash
  local item, err = entry(self, ck, value, ttl_seconds)
  if not item then return item, err end
  local new, seen = {}, {}
  for _, tag in ipairs(tags) do
    local pk = tp .. tag
    if not seen[pk] then
      seen[pk] = true
      new[#new + 1] = pk
    end
  end
  item[TAGS_ATTR] = array(new)
  local res, perr2 = self.client:put_item{ TableName = tname, Item = item, ReturnValues = "ALL_OLD" }
  if not res then return nil, perr2 end
  local old, qerr = old_tag_keys(self, tname, ck, tp, res.Attributes)
  if not old then return unvouch(self, tname, ck, item, qerr) end
  local dels, puts = {}, {}
  for _, pk in ipairs(old) do
    if not seen[pk] then
      seen[pk] = true  -- also drops duplicates: one batch may not name a key twice
      dels[#dels + 1] = { pk = pk, sk = ck }
    end
  end
  for _, pk in ipairs(new) do
    puts[#puts + 1] = { pk = pk, sk = ck, ttl = item.ttl, gsi1pk = ck, gsi1sk = pk }
  end
  local ok, berr = batch(self, tname, dels, puts)
  if not ok then return unvouch(self, tname, ck, item, berr) end
  return true
end

-- Invalidates every entry named by the tag partitions `tags` (a list).
local function invalidate(self, tags)
  for _, tag in ipairs(tags) do
    local terr = store.check_part("tag", tag)
    if terr then return nil, terr end
  end
  local tname, cp, tp = names(self)
  if not tname then return nil, cp end
  local dels, entries, count, done = {}, {}, 0, {}
  for _, tag in ipairs(tags) do
    local pk = tp .. tag
    if not done[pk] then
      done[pk] = true
      local items, err = self.client:query_all{
        TableName = tname, ConsistentRead = true,
        KeyConditionExpression = "pk = :p",
        ExpressionAttributeValues = { [":p"] = pk },
        ProjectionExpression = "pk, sk",
      }
      if not items then return nil, err end
      for _, it in ipairs(items) do
        dels[#dels + 1] = { pk = it.pk, sk = it.sk }
        if not entries[it.sk] then
          entries[it.sk] = true
          count = count + 1
          dels[#dels + 1] = { pk = it.sk, sk = it.sk }
        end
      end
    end
  end
  local ok, err = batch(self, tname, dels)
  if not ok then return nil, err end
  return count
end

--- cache:invalidate_by_tag(tag) -> count | nil, err
-- Queries TAG#<tag> (strongly consistent), deletes its tag items and each
-- distinct entry they name once; count = the distinct entries named (as in
-- the Node package, an entry already gone still counts). The entries'
-- other tag items are left (they expire with the entry; a later
-- set_with_tags of the hash removes them). Cost: 1 Query per 1 MB page +
-- ceil((tag items + entries) / 25) BatchWriteItem.
function _M:invalidate_by_tag(tag)
  return invalidate(self, { tag })
end

--- cache:invalidate_by_tags(tags) -> count | nil, err
-- The same for several tags; an entry named by more than one counts once.
function _M:invalidate_by_tags(tags)
  if type(tags) ~= "table" then
    error("bad argument #1 to 'invalidate_by_tags' (table expected, got " .. type(tags) .. ")", 2)
  end
  return invalidate(self, tags)
end

--- cache:clear(scope?) -> count | nil, err
-- Removes CACHE#<scope>* entries, or, with no scope, every CACHE# and TAG#
-- item (the Node behaviour). Expensive like the Node package's: a Scan of
-- the whole table plus ceil(matches / 25) BatchWriteItem. count = items
-- deleted.
function _M:clear(scope)
  if scope ~= nil and type(scope) ~= "string" then
    error("bad argument #1 to 'clear' (string expected, got " .. type(scope) .. ")", 2)
  end
  local tname, cp, tp = names(self)
  if not tname then return nil, cp end
  local params = { TableName = tname, ProjectionExpression = "pk, sk" }
  if scope and scope ~= "" then
    params.FilterExpression = "begins_with(pk, :c)"
    params.ExpressionAttributeValues = { [":c"] = cp .. scope }
  else
    params.FilterExpression = "begins_with(pk, :c) OR begins_with(pk, :t)"
    params.ExpressionAttributeValues = { [":c"] = cp, [":t"] = tp }
  end
  local dels, n = {}, 0
  for it, err in self.client:scan_items(params) do
    if it == false then return nil, err end
    dels[#dels + 1] = { pk = it.pk, sk = it.sk }
    if #dels >= BATCH * 40 then  -- bounded memory on a large table
      local ok, berr = batch(self, tname, dels)
      if not ok then return nil, berr end
      n, dels = n + #dels, {}
    end
  end
  local ok, err = batch(self, tname, dels)
  if not ok then return nil, err end
  return n + #dels
end

--- cache:close() -- holds nothing of its own (the client is the caller's).
function _M:close() return true end

return _M
