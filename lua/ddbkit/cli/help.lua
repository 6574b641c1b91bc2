-- ddbkit.cli.help: the texts of `ddbkit --help` and `ddbkit COMMAND --help`,
-- by command ("main" for the command itself). Kept apart from the code so
-- that a change of wording touches one file; the options they list are
-- the ones ddbkit.cli's OPTIONS and COMMANDS accept.
-- The options every command takes, at the end of each command's text.
local CONNECTION_HELP = [[
Connection options (every command):
  --endpoint URL   the DynamoDB endpoint, e.g. http://127.0.0.1:8000
                   (default: https://dynamodb.<region>.amazonaws.com)
  --region R       the AWS region (default: the profile's region; us-east-1
                   when only an endpoint is given)
  --profile P      the AWS profile to take credentials and region from
  --debug          show tracebacks with errors (also DDBKIT_DEBUG=1)
  -o, --output FORMAT
                   text (default) or json (not for the REPL): results as
                   JSON, errors as one JSON line {"code":...,"message":...}
                   on stderr (see 'ddbkit help output')
  -h, --help       this help
]]

local HELP = {}

HELP.main = [[
usage: ddbkit [COMMAND] [OPTIONS]
       ddbkit -e EXPR [OPTIONS]
       ddbkit help [TOPIC]

Drive ddbkit (DynamoDB for Lua) from a Lua 5.4 prompt or a script, provision
its tables, and run a local DynamoDB to try it without AWS.

Commands:
  repl                  an interactive Lua prompt with the client and every
                        store ready (the default command)
  -e EXPR               evaluate EXPR (Lua) with the REPL's globals and print
                        its values as the REPL does (JSON with -o json); an
                        error, raised or returned (nil, err), exits 1
  run SCRIPT [ARGS]     run a Lua script in the same environment
  scan                  print every item of the table (--table), page by page
  query PK              print the items whose partition key is PK
  get PK [SK]           print one item
  table ACTION          create | describe | delete | ttl the store table or
                        the idempotency table
  local ACTION          start | stop | status the local DynamoDB of the test
                        harness
  config                print the resolved configuration, secrets masked
  help [TOPIC]          this help, or a command's ('ddbkit help table'), or
                        'ddbkit help output' for the JSON output

]] .. CONNECTION_HELP .. [[
  --version        print the version of ddbkit and of Lua

Configuration: each value comes from the first of: a flag; the environment;
the config file; a default. Environment variables, first set wins:
  endpoint           DDBKIT_ENDPOINT, AWS_ENDPOINT_URL_DYNAMODB,
                     AWS_ENDPOINT_URL
  region             DDBKIT_REGION, AWS_REGION, AWS_DEFAULT_REGION
  profile            DDBKIT_PROFILE, AWS_PROFILE
  table              DDBKIT_TABLE (default http-client-toolkit; flag --table)
  idempotency_table  DDBKIT_IDEMPOTENCY_TABLE (default idempotency-cache)
  policy             DDBKIT_POLICY (key-prefix policy: a module name or a
                     file path; default policies.key_prefix)
  strategy           DDBKIT_STRATEGY (adaptive rate-limit strategy; default
                     strategies.adaptive)
  history_size       DDBKIT_HISTORY_SIZE (REPL history lines; default 1000)
The config file is $DDBKIT_CONFIG, else $XDG_CONFIG_HOME/ddbkit/config, else
~/.config/ddbkit/config: lines "key = value" with the keys above; lines
starting with # are comments.
Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
else the profile in ~/.aws/credentials and ~/.aws/config (static keys). With
an endpoint on 127.0.0.1 or localhost and no credentials anywhere, ddbkit
signs with placeholder keys, which DynamoDB Local accepts.

Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted.
Run 'ddbkit COMMAND --help' for a command's options.
]]

HELP.repl = [[
usage: ddbkit [repl] [--table NAME] [connection options]

An interactive Lua 5.4 prompt. Ready as globals:
  ddbkit       the ddbkit module
  client       a ddbkit.client for the configured endpoint and region
  cache, dedupe, rate_limit, adaptive
               the stores on the store table (ddbkit.create_stores), with
               the configured key-prefix policy and adaptive strategy
  locks(name, opts?)
               a ddbkit.lock on the item pk = sk = "LOCK#"..name of the store
               table; opts are ddbkit.lock.new's (max_clock_skew_ms, ...)
  idem         ddbkit.idempotency on the idempotency table
  reload()     re-read the policy and strategy scripts and re-create the
               stores (also :reload)
Nothing is sent to DynamoDB until you use them.

Expressions print their values (tables indented, DynamoDB items as Lua
values, errors in red with their code); an incomplete statement continues
on the next line. `local x = ...` keeps x for the next inputs.
Commands: :help, :stats, :reload, :time EXPR, :lock NAME, :limit RESOURCE,
:idem KEY, :cache HASH (the last four read ddbkit's own records; --output
json), :quit. From a pipe: no banner; exit status 1 if any input failed.
Keys: Tab completes globals, fields after '.', methods after ':'; Ctrl-C
drops the current input or stops a running one; Ctrl-D exits.
History: $XDG_STATE_HOME/ddbkit/history (else ~/.local/state/ddbkit/history).

Options:
  --table NAME     the store table (default http-client-toolkit)
]] .. "\n" .. CONNECTION_HELP

HELP.run = [[
usage: ddbkit run [--table NAME] [connection options] SCRIPT [ARGS...]

Runs the Lua script SCRIPT ("-" reads it from standard input) with the REPL's
globals (see 'ddbkit repl --help'). The script gets its arguments as ... and
in the global arg, as the lua command gives them: arg[0] is SCRIPT, arg[1]
the first argument. Everything after SCRIPT goes to the script.
An error in the script prints one line on stderr, "ddbkit: " and its
message (with --debug, the script's traceback after it), and exits with
status 1 (130 when interrupted by Ctrl-C).

Options:
  --table NAME     the store table (default http-client-toolkit)
]] .. "\n" .. CONNECTION_HELP

HELP.table = [[
usage: ddbkit table create|describe|delete|ttl [--table NAME] [--schema KIND]
                    [--yes] [connection options]

Provisions the tables ddbkit uses (the stores never create them).
  create      create the table, wait until it is ACTIVE, enable TTL
  describe    print its status, keys, indexes, size, item count and TTL
  delete      delete the table and wait until it is gone; asks to type the
              table's name when standard input is a terminal, else needs
              --yes (without it nothing is deleted, exit status 1)
  ttl         enable TTL on the schema's attribute if it is not, and print
              the TTL status

Options:
  --schema KIND    store (default): HASH pk, RANGE sk, index gsi1 (gsi1pk,
                   gsi1sk), on-demand, TTL on "ttl" -- the Node store
                   package's table;
                   idempotency: HASH cacheKey, on-demand, TTL on "expiresAt"
  --table NAME     the table (--name N is the same); default: for store,
                   the configured table (else http-client-toolkit); for
                   idempotency, the configured idempotency_table (else
                   idempotency-cache)
  --yes            delete without asking (for scripts)
  With -o json: create, delete and ttl print one JSON object; describe
  prints {"Table":...,"TimeToLiveDescription":...} as DynamoDB returns them.
]] .. "\n" .. CONNECTION_HELP

HELP["local"] = [[
usage: ddbkit local start|stop|status [--port P]

The local DynamoDB of ddbkit's test harness (DynamoDB Local, in memory,
bound to 127.0.0.1), for trying ddbkit without AWS.
  start       start it, wait until it answers, print its endpoint URL
  stop        stop the one started here on that port
  status      print running or stopped (exit status 0 or 1)
Then: ddbkit --endpoint http://127.0.0.1:P

Options:
  --port P         the port (default $DDB_LOCAL_PORT, else 8000)
  --debug          show tracebacks with errors (also DDBKIT_DEBUG=1)
  -h, --help       this help
  --endpoint, --region and --profile are accepted, as by every command, and
  not used.
]]

HELP.config = [[
usage: ddbkit config [--table NAME] [connection options]

Prints the resolved configuration: each value and where it came from (a
flag, an environment variable, the config file and line, or a default),
the config and history files, and where the credentials come from, with
secrets masked. Sends nothing to DynamoDB. See 'ddbkit --help' for the
sources and the config file's format.

Options:
  --table NAME     the store table (default http-client-toolkit)

]] .. CONNECTION_HELP

HELP.scan = [[
usage: ddbkit scan [--table NAME] [--index NAME] [--limit N] [connection options]

Prints every item of the table (or of its index), as it reads each page:
one item per line, as the REPL prints it, or with -o json one JSON object
per line (NDJSON), flushed page by page.

Options:
  --table NAME     the table (default: the configured table, else
                   http-client-toolkit)
  --index NAME     scan this secondary index instead
  --limit N        stop after N items
]] .. "\n" .. CONNECTION_HELP

HELP.query = [[
usage: ddbkit query PK [--table NAME] [--index NAME] [--limit N] [connection options]

Prints the items whose partition key (the table's, or the index's with
--index) is the string PK, in sort-key order, page by page: one item per
line, or with -o json one JSON object per line (NDJSON). Asks DynamoDB for
the key's name first (DescribeTable).

Options:
  --table NAME     the table (default: the configured table, else
                   http-client-toolkit)
  --index NAME     query this secondary index
  --limit N        stop after N items
]] .. "\n" .. CONNECTION_HELP

HELP.get = [[
usage: ddbkit get PK [SK] [--table NAME] [connection options]

Prints the item whose partition key is the string PK (and sort key the
string SK, which a table with a sort key needs), or with -o json the item
as one JSON object. No such item: exit status 1 (code NotFound).

Options:
  --table NAME     the table (default: the configured table, else
                   http-client-toolkit)
]] .. "\n" .. CONNECTION_HELP

HELP.help = [[
usage: ddbkit help [TOPIC]

Prints the help of ddbkit, or of TOPIC: a command (repl, run, table, local,
config, scan, query, get) or output (the JSON output). Same as
'ddbkit TOPIC --help'.
]]

HELP.output = [[
--output json (-o json): output for scripts, as the AWS CLI's.

  -e EXPR          each value on its own line as JSON
  get              the item, one JSON object
  scan, query      NDJSON: one item per line, written page by page
  table ACTION     one JSON object (describe: DynamoDB's description)
  config           one JSON object, key -> value
Errors: nothing on stdout; one line {"code":"...","message":"..."} on
stderr; exit status 1 (2 for a usage error, code UsageError; 130 when
interrupted, code Interrupted).

Items and values are written as plain JSON:
  string, boolean   as they are
  number            a JSON number when a double holds it exactly (every
                    float; integers within +-2^53), else a string of its
                    digits, e.g. "9007199254740993"
  decimal           (DynamoDB numbers a double cannot hold) a string of
                    its digits, e.g. "3.14159265358979323846"
  binary            a string: the bytes in base64 (RFC 4648, padded)
  set               an array of its elements (converted as above), sorted
  null              null;  lists: arrays;  maps: objects
  anything else     (a function, a client) its REPL text, as a string
]]

return HELP
