-- ddbkit.lru: a least-recently-used map with a fixed number of entries,
-- each optionally valid until a time the caller gives, for what a process
-- keeps in memory on behalf of a store (finished idempotency records, the
-- jobs a dedupe store owns).
--
--   local lru = require "ddbkit.lru"
--   local recent = lru.new(1000)
--   recent:set(key, value, expires_at)   -- expires_at: nil = never
--   local value = recent:get(key, now)   -- nil: absent, evicted or expired
--
-- Every operation is O(1): a hash map to the nodes of a doubly linked list,
-- most recently used first. Nothing here reads a clock: `now` and
-- `expires_at` are numbers on whatever clock the caller uses. Not for
-- sharing between OS processes (each nginx worker has its own).
local type, error, setmetatable, floor = type, error, setmetatable, math.floor

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

--- lru.new(size) -> an empty map that holds at most `size` entries (an
-- integer >= 1). Raises on a bad size.
function _M.new(size)
  if type(size) ~= "number" or size < 1 or size ~= floor(size) then
    error("ddbkit.lru.new: size must be an integer >= 1", 2)
  end
  local head = {}
  head.prev, head.next = head, head   -- the list's sentinel: head.next is the newest
  return setmetatable({ size = size, n = 0, map = {}, head = head }, mt)
end

local function unlink(node)
  node.prev.next, node.next.prev = node.next, node.prev
end

local function push_front(head, node)
  node.next, node.prev = head.next, head
  head.next.prev = node
  head.next = node
end

local function drop(self, node)
  unlink(node)
  self.map[node.key] = nil
  self.n = self.n - 1
end

--- lru:get(key, now?) -> the value | nil. An entry whose expires_at is
-- before `now` is dropped and reads as absent (without `now`, nothing
-- expires). A hit becomes the most recently used.
function _M:get(key, now)
  local node = self.map[key]
  if not node then return nil end
  if now and node.expires_at and now > node.expires_at then
    drop(self, node)
    return nil
  end
  unlink(node)
  push_front(self.head, node)
  return node.value
end

--- lru:set(key, value, expires_at?) -> nothing. Adds or replaces the entry
-- (most recently used), evicting the least recently used one when full.
-- A nil value deletes.
function _M:set(key, value, expires_at)
  if key == nil then error("ddbkit.lru: set's key must not be nil", 2) end
  if value == nil then return self:delete(key) end
  local node = self.map[key]
  if node then
    unlink(node)
  else
    node = { key = key }
    self.map[key] = node
    self.n = self.n + 1
    if self.n > self.size then drop(self, self.head.prev) end
  end
  node.value, node.expires_at = value, expires_at
  push_front(self.head, node)
end

--- lru:delete(key) -> nothing (absent keys are fine).
function _M:delete(key)
  local node = self.map[key]
  if node then drop(self, node) end
end

--- lru:count() -> the number of entries held (expired ones included until
-- a get finds them).
function _M:count()
  return self.n
end

return _M
