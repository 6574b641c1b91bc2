-- ddbkit.cli.config: the configuration of the `ddbkit` command and the
-- client built from it. Each value comes from the first of: a flag, the
-- environment, the config file, a default; each remembers where it came
-- from, for `ddbkit config` to show.
--
--   local cfg = config.resolve(opts)   -- opts: the parsed command line's
--   local client = config.connect(cfg)
--
-- Problems are raised as failures (ddbkit.cli.errors.fail).
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"
local fail = require("ddbkit.cli.errors").fail

local ipairs, tonumber = ipairs, tonumber

local _M = { _VERSION = "0.1.0" }

local function positive_integer(v)
  local n = math.tointeger(tonumber(v))
  if not n or n < 1 then return "a positive integer" end
end

-- The keys, in the order `ddbkit config` shows them: the flag setting each,
-- its environment variables (first set wins), its default. policy and
-- strategy default to what the stores load when given none.
local KEYS = {
  { key = "endpoint", flag = "endpoint",
    env = { "DDBKIT_ENDPOINT", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL" } },
  { key = "region", flag = "region",
    env = { "DDBKIT_REGION", "AWS_REGION", "AWS_DEFAULT_REGION" } },
  { key = "profile", flag = "profile", env = { "DDBKIT_PROFILE", "AWS_PROFILE" } },
  { key = "table", flag = "table", env = { "DDBKIT_TABLE" }, default = schema.DEFAULT_TABLE_NAME },
  { key = "idempotency_table", env = { "DDBKIT_IDEMPOTENCY_TABLE" },
    default = schema.IDEMPOTENCY_TABLE_NAME },
  { key = "policy", env = { "DDBKIT_POLICY" }, default = "policies.key_prefix" },
  { key = "strategy", env = { "DDBKIT_STRATEGY" }, default = "strategies.adaptive" },
  { key = "history_size", env = { "DDBKIT_HISTORY_SIZE" }, default = "1000",
    check = positive_integer },
}
local KNOWN = {}
for _, k in ipairs(KEYS) do KNOWN[k.key] = k end
_M.KEYS = KEYS

--- config.getenv(name): the variable's value, nil when unset or empty:
-- an empty variable counts as not set, for every key and the commands.
function _M.getenv(name)
  local v = os.getenv(name)
  if v ~= nil and v ~= "" then return v end
end
local getenv = _M.getenv

-- An XDG base directory: the variable if it holds an absolute path (the
-- spec says to ignore relative ones), else fallback under $HOME.
local function xdg_dir(var, fallback)
  local v = getenv(var)
  if v and v:sub(1, 1) == "/" then return v end
  local home = getenv("HOME")
  return home and home .. "/" .. fallback
end

-- The config file to read and whether the user named it (DDBKIT_CONFIG):
-- only a named file must exist.
local function config_file()
  local named = getenv("DDBKIT_CONFIG")
  if named then return named, true end
  local dir = xdg_dir("XDG_CONFIG_HOME", ".config")
  return dir and dir .. "/ddbkit/config", false
end

-- Reads a config file: { key = { value, where = "path:line" } }, or {}
-- when it is absent and optional. Fails on anything it cannot read, so a
-- typo never silently falls back to a default.
local function read_config(path, named)
  local f, ferr = io.open(path, "r")
  if not f then
    if named then fail("ConfigError", "cannot read DDBKIT_CONFIG: " .. ferr) end
    return {}, false
  end
  local values, n = {}, 0
  for line in f:lines() do
    n = n + 1
    if not line:match("^%s*$") and not line:match("^%s*#") then
      local k, v = line:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
      local where = path .. ":" .. n
      if not k then f:close() fail("ConfigError", where .. ": expected 'key = value'") end
      if not KNOWN[k] then f:close() fail("ConfigError", where .. ": unknown key '" .. k .. "'") end
      values[k] = { v:match('^"(.*)"$') or v, where = where }
    end
  end
  f:close()
  return values, true
end

-- The value of one key and where it came from.
local function resolve_key(k, opts, file)
  if k.flag and opts[k.flag] then return opts[k.flag], "flag --" .. k.flag end
  for _, var in ipairs(k.env) do
    local v = getenv(var)
    if v then return v, "env " .. var end
  end
  local f = file[k.key]
  if f then return f[1], "file " .. f.where end
  if k.default then return k.default, "default" end
end

--- config.resolve(opts) -> { value = {}, source = {}, file, file_found,
-- history_file }: the configuration for the parsed options.
function _M.resolve(opts)
  local path, named = config_file()
  local file, found = {}, false
  if path then file, found = read_config(path, named) end
  local cfg = { value = {}, source = {}, file = path, file_found = found }
  for _, k in ipairs(KEYS) do
    local v, src = resolve_key(k, opts, file)
    local want = v and k.check and k.check(v)
    if want then fail("ConfigError", k.key .. " (" .. src .. ") must be " .. want) end
    cfg.value[k.key], cfg.source[k.key] = v, src
  end
  local state = xdg_dir("XDG_STATE_HOME", ".local/state")
  cfg.history_file = state and state .. "/ddbkit/history"
  return cfg
end

-- The client -------------------------------------------------------------------

-- DynamoDB Local accepts any signature; these let a machine without AWS
-- credentials use it (letters and digits only, as it requires).
local LOCAL_KEYS = { access_key_id = "ddbkitlocal", secret_access_key = "ddbkitlocal" }

local function is_loopback(url)
  local host = url and (url:match("^%a+://%[([^%]]+)%]") or url:match("^%a+://([^:/]+)"))
  return host == "localhost" or host == "::1" or (host or ""):match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- What came from AWS_* variables is left for the engine to read itself, so
-- its rules hold unchanged: an AWS_PROFILE, unlike an explicit profile,
-- does not override AWS_ACCESS_KEY_ID.
local function client_options(cfg)
  local o = {}
  for _, k in ipairs({ "endpoint", "region", "profile" }) do
    local src = cfg.source[k]
    if src and not src:match("^env AWS_") then o[k] = cfg.value[k] end
  end
  return o
end

--- config.new_client(cfg) -> client | nil, err, and whether it signs with
-- the placeholder keys. Only reads the environment and credential files:
-- no request is made.
function _M.new_client(cfg)
  local o = client_options(cfg)
  local client, err = ddbkit.client(o)
  -- Nothing configured but EC2's default metadata address as the chain's
  -- last resort: a local endpoint gets the placeholder keys rather than a
  -- probe of IMDS. An IMDS endpoint the user named is used.
  local nothing = not client and err.code == "MissingCredentials"
                  or client and client:credentials().provider == "imds"
                     and not os.getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT")
  if nothing and is_loopback(cfg.value.endpoint) then
    o.credentials = LOCAL_KEYS
    client, err = ddbkit.client(o)
    return client, err, client ~= nil
  end
  return client, err, false
end

--- config.connect(cfg) -> client: new_client, failing when there is none.
function _M.connect(cfg)
  local client, err = _M.new_client(cfg)
  if not client then fail(err.code, err.message) end
  return client
end

return _M
