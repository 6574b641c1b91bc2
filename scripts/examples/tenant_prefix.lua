-- An example key-prefix policy: every item of this process lives under its
-- tenant ("acme|CACHE#..."), so tenants share one table without seeing each
-- other's entries. The tenant comes from DDBKIT_TENANT, else "default".
-- Same contract as scripts/policies/key_prefix.lua.
local base = dofile((debug.getinfo(1, "S").source:match("^@(.*)/examples/[^/]*$") or "scripts")
                    .. "/policies/key_prefix.lua")
local tenant = os.getenv("DDBKIT_TENANT") or "default"

return {
  name = "tenant-prefix(" .. tenant .. ")",
  prefix = function(kind)
    local p = base.prefix(kind)
    return p and (tenant .. "|" .. p)
  end,
  table_name = base.table_name,
}
