-- The default key-prefix policy: the Node store package's layout, exactly,
-- so a Node service and ddbkit see each other's items on one table.
--
-- Contract (what a replacement must provide):
--   policy.name                      a string used in error messages
--   policy.prefix(kind) -> string    the key prefix for one kind of item;
--     kind is one of "cache", "tag", "dedupe", "ratelimit",
--     "ratelimit_slot", "cooldown", "ratelimit_native", "adaptive_native" (ddbkit's native
--     rate-limit / adaptive layouts; needed only where they are used). Non-empty valid UTF-8, no control
--     characters, at most 512 bytes (a key part of up to 512 bytes follows,
--     and DynamoDB's sort keys hold 1024).
--   policy.table_name(store, configured) -> string   (optional)
--     the table a store ("cache", "dedupe", "rate_limit",
--     "adaptive_rate_limit") uses; `configured` is the store's table_name.
--     Any other name must be a DynamoDB table name (3 to 255 of letters,
--     digits, "_", "-", ".").
-- Both must be pure (same answer for the same arguments): a store keeps
-- the answers it got, so a policy is re-read only by reloading it.
-- A policy that raises or returns anything else makes the store fail with
-- code "PolicyError" naming this script, before anything is written.
local PREFIX = {
  cache = "CACHE#",
  tag = "TAG#",
  dedupe = "DEDUPE#",
  ratelimit = "RATELIMIT#",
  ratelimit_slot = "RATELIMIT_SLOT#",
  cooldown = "COOLDOWN#",
  ratelimit_native = "RLN#",   -- ddbkit only: ratelimit's native layout
  adaptive_native = "ARLN#",   -- ddbkit only: adaptive's native layout
}

return {
  name = "node-layout",
  prefix = function(kind) return PREFIX[kind] end,
  table_name = function(_, configured) return configured end,
}
