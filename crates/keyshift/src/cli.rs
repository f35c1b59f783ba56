//! The command line, as clap types. Parsing only: `cmd` resolves and runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use keyshift_core::rotation::RotationId;
use keyshift_core::{Label, SecretKind, SecretName, Strategy};

const ABOUT: &str = "keyshift: zero-downtime credential rotation";

const LONG_ABOUT: &str = "\
keyshift: zero-downtime credential rotation.

keyshift stores versioned secrets, rotates them in the systems that enforce
them while old and new stay valid together, and revokes the old credential
only when no consumer uses it any more.

Start a throw-away server and try it:

  keyshift serve --dev                     # prints a root token
  export KEYSHIFT_TOKEN=ks....             # the token it printed
  keyshift secret put demo/api --kind api-key --generate
  keyshift rotate demo/api --wait
  keyshift secret get demo/api";

const AFTER_HELP: &str = "\
Environment:
  KEYSHIFT_ADDR       the server's URL (like --addr)
  KEYSHIFT_TOKEN      the API token (or use --token-file). There is no --token
                      flag: command lines are visible to every user of the
                      machine and end up in shell history
  KEYSHIFT_DATA_DIR   the data directory of `init` and `serve`
  KEYSHIFT_STORE      the store URL of `serve`
  RUST_LOG            log filter, overrides -v (e.g. keyshift=debug)

Exit codes:
  0    success (with --wait: the rotation succeeded)
  1    error: network, API, bad input detected after parsing
  2    usage error: unknown command or flag, missing or invalid argument
  3    rotate --wait: the rotation was rolled back
  4    rotate --wait: the rotation failed and needs an operator
  130  interrupted (Ctrl-C); a rotation being waited for continues on the server";

/// The `keyshift` command line.
#[derive(Debug, Parser)]
#[command(
    name = "keyshift",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = false,
    max_term_width = 100
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes (they may come before or after the
/// subcommand).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// The keyshift server's URL.
    #[arg(
        long,
        env = "KEYSHIFT_ADDR",
        default_value = "http://127.0.0.1:8200",
        value_name = "URL",
        global = true
    )]
    pub addr: String,

    /// Read the API token from this file (its first non-blank line; surrounding
    /// whitespace is ignored). Without it the token comes from the
    /// KEYSHIFT_TOKEN environment variable. There is deliberately no
    /// --token flag: a command line is visible to every user of the machine
    /// (ps, /proc) and lands in shell history.
    #[arg(long, value_name = "PATH", global = true)]
    pub token_file: Option<PathBuf>,

    /// Log to stderr: -v info, -vv debug, -vvv trace. RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// How log lines look: `text` for people, `json` (one object a line,
    /// with the rotation's id and secret on every line a rotation logs) for
    /// log collectors.
    #[arg(
        long,
        value_enum,
        env = "KEYSHIFT_LOG_FORMAT",
        default_value_t = LogFormat::Text,
        value_name = "FORMAT",
        global = true
    )]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--output`, on every command that prints data.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Output format: `text` for people (tables), `json` for scripts.
    #[arg(short, long, value_enum, default_value_t = Output::Text, value_name = "FORMAT")]
    pub output: Output,
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned tables and plain lines.
    Text,
    /// The API's JSON, pretty-printed.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: master key and root token.
    #[command(long_about = "\
Create a data directory: a master key file (mode 0600) that encrypts values
at rest, the SQLite store, and a root token (scope admin on *), which is
printed once. Keep it; it is not stored in clear anywhere.

Example:
  keyshift init --data-dir /var/lib/keyshift")]
    Init(InitArgs),

    /// Run the keyshift server.
    #[command(long_about = "\
Run the keyshift server: the HTTP API, the rotation orchestrator, the
scheduler and the watch hub. Logs go to stderr (info by default; -v for
more). Stops cleanly on Ctrl-C or SIGTERM; rotations resume on restart.

Examples:
  keyshift serve --data-dir /var/lib/keyshift --listen 0.0.0.0:8200
  keyshift serve --dev        # throw-away data dir, prints a root token")]
    Serve(Box<ServeArgs>),

    /// Put, read, list and delete secrets.
    #[command(subcommand)]
    Secret(SecretCommand),

    /// Start a rotation of a secret (and optionally wait for it).
    #[command(long_about = "\
Start a rotation of a secret. Prints the rotation's id (or, with --output
json, the rotation). The server drives the rotation in the background: with
the default `dual` strategy old and new credentials stay valid together
until every consumer has moved, then the old one is revoked.

With --wait, follows the rotation until it ends, showing each phase's
progress on stderr, and exits with a code that says how it ended:
0 succeeded, 1 error, 3 rolled back, 4 failed. Ctrl-C stops waiting (exit
130); the rotation continues on the server.

Examples:
  keyshift rotate prod/cache --wait
  keyshift rotate prod/api-key --emergency 'key posted in a public repo'   # leaked
  keyshift rotate prod/cache --id nightly-2026-11-22     # idempotent retry")]
    Rotate(RotateArgs),

    /// Show, list, roll back and abort rotations.
    #[command(subcommand)]
    Rotation(RotationCommand),

    /// List every secret's next rotation, last rotation and circuit.
    #[command(long_about = "\
List every secret you can read with its schedule, when it next rotates on
its own (by schedule, or for certificates by age), its newest rotation, and
whether its circuit is open after repeated failed rotations.

Example:
  keyshift status")]
    Status(StatusArgs),

    /// List a secret's consumers: the version each holds, migrated,
    /// pending or stale.
    #[command(long_about = "\
List the consumers (applications embedding the SDK) of a secret as the
server last heard from them: the version each holds and its status:
migrated (holds `current`), pending (live, holds another version or none:
it holds a rotation's overlap gate) or stale (not heard from within the
policy's consumer_stale_after: it no longer counts).

Example:
  keyshift consumers prod/orders/db")]
    Consumers(ConsumersArgs),

    /// Rotation health over a period: mean time to rotate, success rate,
    /// overlap utilization, migration velocity, incidents.
    #[command(long_about = "\
Rotation health over a period, from the rotation records of the secrets you
can read:

  mean time to rotate     from a rotation's start to the old credential's
                          revocation, mean
  success rate            succeeded / ended
  overlap utilization     each overlap's length / its min_overlap, mean
                          (1.0: overlaps ended as soon as they could)
  migration velocity      consumers that moved per minute of overlap, mean
  incidents per rotation  rolled back or failed, revoked at max_overlap with
                          consumers left behind, or an emergency rotation

The same figures are on the server's /metrics (docs/metrics.md).

Examples:
  keyshift report                  # the last 7 days
  keyshift report --since 24h --output json
  keyshift report --since 2026-11-01T00:00:00Z")]
    Report(ReportArgs),

    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),

    /// Run real traffic through real rotations and count failed requests.
    #[command(long_about = "\
Run real traffic through real rotations and count the failed requests: zero
is keyshift's promise.

The drill starts a throw-away keyshift server in this process (or uses the
one at --server), creates a throw-away secret, starts --consumers consumers
built on the keyshift SDK that send requests continuously, rotates the
secret --rotations times, and reports total and failed requests (with the
first errors), rotations completed, and propagation latency: from the start
of Promote to each consumer holding the new version.

Kinds:
  api-key  consumers call a small HTTP service that checks their key with
           the SDK's KeyRing; a 401 is a failure
  redis    consumers authenticate as a throw-away ACL user on the local
           Redis (--redis) before every command; WRONGPASS is a failure
  postgres consumers log in to PostgreSQL (--postgres) as the current
           role of a blue-green pair, a fresh login per request, then
           SELECT 1; a refused login is a failure (PostgreSQL must check
           these roles' passwords: see docs/drill.md)
  mariadb  consumers log in to MariaDB (--mariadb) as a throw-away user
           with two passwords during the overlap, a fresh login per
           request; Access denied is a failure
  tls      consumers make a full TLS handshake per request to a service
           serving keyshift's leaf through the SDK's resolver, verify it
           against the CA and check it is not revoked; a failure is any
           refused handshake or revoked leaf

`--strategy immediate` is the control run: it revokes the old credential
with no overlap, so it must show failures; a drill that cannot show a
failure proves nothing.

Exit codes: 0 no failed request and every rotation completed; 5 failed
requests or rotations; 1 the drill itself could not run.

Examples:
  keyshift drill --kind api-key --consumers 20 --rotations 20
  keyshift drill --kind redis --strategy immediate --rotations 3 --output json")]
    Drill(DrillArgs),
}

/// `keyshift init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The data directory to create (master key, store, config).
    #[arg(
        long,
        env = "KEYSHIFT_DATA_DIR",
        default_value = "./keyshift-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Where the secrets and tokens are kept.
    #[command(flatten)]
    pub store: StoreArg,

    /// How to print the root token and what was created.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `--store`, the same on `init` and `serve`.
#[derive(Debug, Clone, Args)]
pub struct StoreArg {
    /// The store: default the SQLite file in the data directory; a
    /// postgres:// URL to share one store between replicas (`init` puts
    /// the root token there). Prefer the KEYSHIFT_STORE variable (or
    /// PGPASSWORD) to a password in this flag: command lines are visible
    /// to every user of the machine.
    #[arg(
        id = "store",
        long = "store",
        env = "KEYSHIFT_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub url: Option<String>,
}

/// `keyshift serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The data directory made by `keyshift init` (master key, SQLite store).
    #[arg(
        long,
        env = "KEYSHIFT_DATA_DIR",
        default_value = "./keyshift-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// The address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8200", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Where the secrets and tokens are kept.
    #[command(flatten)]
    pub store: StoreArg,

    /// Development mode: a throw-away data directory (deleted on exit)
    /// instead of --data-dir, initialised on start, and a root token printed
    /// to stderr, like `vault server -dev`. Never for production.
    #[arg(long)]
    pub dev: bool,

    /// POST every rotation's phase changes to this URL as signed JSON
    /// (repeat for several); each secret's policy may add its own. Needs
    /// --notify-hmac-secret. A token in the URL's query is visible to
    /// every user of the machine: let the receiver check the signature.
    #[arg(long, value_name = "URL", requires = "notify_hmac_secret")]
    pub notify_webhook: Vec<String>,

    /// The secret (in this server's store) whose current value signs the
    /// --notify-webhook requests (HMAC-SHA256, 16 bytes or more).
    #[arg(long, value_name = "SECRET", requires = "notify_webhook")]
    pub notify_hmac_secret: Option<SecretName>,

    /// Publish every rotation's phase changes on the NATS subjects
    /// keyshift.rotation.<phase>, e.g. nats://127.0.0.1:4222.
    #[arg(
        long,
        env = "KEYSHIFT_NOTIFY_NATS",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub notify_nats: Option<String>,

    /// How long this replica's lease on a rotation it drives lasts unless
    /// renewed (every third of it). When a replica dies, another takes its
    /// rotations over once their leases expire, and resumes them.
    #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = parse_lease)]
    pub lease: std::time::Duration,

    /// This replica's id, the owner of its leases (default: `local` on the
    /// embedded store, `<hostname>:<pid>:<random>` on PostgreSQL). Give
    /// each replica its own.
    #[arg(long, env = "KEYSHIFT_REPLICA_ID", value_name = "ID")]
    pub replica_id: Option<String>,
}

/// `keyshift secret ...`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret or add a value to it.
    #[command(long_about = "\
Create a secret, or add a version to an existing one (labelled current).

The value comes from --generate (256 random bits in the kind's format), from
--from-file (taken exactly as it is), or from stdin (one trailing newline is
removed). It is never printed and never belongs on the command line.

When the secret does not exist, it is created with --kind (default static),
the target configuration (--target or --target-file) and the policy flags.
When it exists, the value becomes a new version labelled current, and the
policy flags update its policy. For a rotating kind (api-key, redis) a value
put by hand does not change the target: use `keyshift rotate` for that.

Examples:
  keyshift secret put demo/token --generate
  keyshift secret put prod/cache --kind redis \\
      --target '{\"address\":\"127.0.0.1:6379\",\"user\":\"app\",\"admin_secret\":\"prod/cache-admin\"}' \\
      --from-file ./current-password
  printf %s \"$PW\" | keyshift secret put prod/legacy")]
    Put(Box<PutArgs>),

    /// Print a secret's value.
    #[command(long_about = "\
Print the value of a secret's current version (or of --label / --version)
followed by a newline, for scripts: DB_PASSWORD=$(keyshift secret get prod/db).
With --output json, print the version with its metadata.

Examples:
  keyshift secret get prod/db
  keyshift secret get prod/db --label previous
  keyshift secret get prod/db --version 3 --output json")]
    Get(GetArgs),

    /// List a secret's versions.
    Versions(VersionsArgs),

    /// List secrets.
    #[command(visible_alias = "list")]
    Ls(LsArgs),

    /// Delete a secret and all its versions.
    #[command(visible_alias = "delete")]
    Rm(RmArgs),

    /// Show or change a secret's rotation policy and schedule.
    #[command(long_about = "\
Show a secret's rotation policy, or change the parts named by flags and show
the result. Schedules are in UTC: --every (an interval after the last
rotation) or --cron (five fields), with --jitter spreading secrets on the
same schedule over a window.

Examples:
  keyshift secret policy prod/db
  keyshift secret policy prod/db --every 30d --jitter 2h
  keyshift secret policy prod/cache --cron '0 3 * * 1' --jitter 15m
  keyshift secret policy prod/db --no-schedule
  keyshift secret policy prod/db --circuit-failures 5 --circuit-open 15m")]
    Policy(Box<PolicyArgs>),
}

/// `keyshift secret put`.
#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// The secret's name, e.g. prod/orders/db.
    pub name: SecretName,

    /// The kind, when creating: api-key (checked by keyshift's keyring
    /// verifiers), redis (a Redis ACL user's password) or static (stored
    /// and served, never rotated). Default: static.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<SecretKind>,

    /// Generate the value (256 random bits) instead of reading it.
    #[arg(long, conflicts_with = "from_file")]
    pub generate: bool,

    /// Read the value from this file, exactly as it is (a trailing newline
    /// is kept). Without this and --generate, the value is read from stdin.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,

    /// The target's configuration as JSON, when creating, e.g.
    /// '{"address":"127.0.0.1:6379","user":"app","admin_secret":"prod/cache-admin"}'.
    /// Name secrets in it (admin_secret); never put a password in it.
    #[arg(long, value_name = "JSON", conflicts_with = "target_file")]
    pub target: Option<String>,

    /// Read the target's configuration (JSON) from this file.
    #[arg(long, value_name = "FILE")]
    pub target_file: Option<PathBuf>,

    /// Policy settings, when creating or for an existing secret.
    #[command(flatten)]
    pub policy: PolicyFlags,

    /// How to print what was done.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Flags that change a secret's rotation policy (`secret put`, `secret
/// policy`). Each changes only what it names.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Policy")]
pub struct PolicyFlags {
    /// Default strategy of rotations: dual (old and new valid together
    /// during an overlap), blue-green (two login roles; what dual means for
    /// postgres), canary (dual, given first to a share of consumers and
    /// rolled back on their failure reports) or immediate (no overlap).
    #[arg(long, value_name = "STRATEGY")]
    pub strategy: Option<Strategy>,

    /// The least time old and new stay valid together after Promote, e.g.
    /// 30s, 5m. Default 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub min_overlap: Option<std::time::Duration>,

    /// The most time the overlap may last. Default 24h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_overlap: Option<std::time::Duration>,

    /// Rotate on its own this long after the last rotation started, e.g.
    /// 30d, 12h (at least 1m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with_all = ["cron", "no_schedule"])]
    pub every: Option<std::time::Duration>,

    /// Rotate on its own at each match of a five-field cron expression in
    /// UTC (minute hour day-of-month month day-of-week), e.g. '0 3 * * 1'.
    #[arg(long, value_name = "EXPR", value_parser = parse_cron, conflicts_with = "no_schedule")]
    pub cron: Option<keyshift_core::CronExpr>,

    /// Spread scheduled rotations over this window after their due time
    /// (each secret gets a stable share), so secrets on one schedule do not
    /// rotate at the same instant, e.g. 10m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "no_schedule")]
    pub jitter: Option<std::time::Duration>,

    /// Stop rotating on a schedule (certificates still renew by age).
    #[arg(long)]
    pub no_schedule: bool,

    /// Failed rotations in a row that open the circuit (no rotation starts
    /// on its own while it is open). Default 3; 0 never opens it.
    #[arg(long, value_name = "N")]
    pub circuit_failures: Option<u32>,

    /// How long an open circuit stays open. Default 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub circuit_open: Option<std::time::Duration>,

    /// First wait before retrying a step that failed on a transient error,
    /// doubled each attempt up to 1m. Default 2s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_backoff: Option<std::time::Duration>,

    /// Attempts of one step before it counts as failed. Default 3.
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,

    /// What happens when max-overlap passes while live consumers still hold
    /// the old version: hold (keep the old credential valid, the default)
    /// or revoke (revoke it, naming the stragglers).
    #[arg(long, value_name = "hold|revoke", value_parser = parse_on_timeout)]
    pub on_timeout: Option<keyshift_core::OnTimeout>,

    /// How often the overlap gate is checked after min-overlap. Default 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub monitoring_cycle: Option<std::time::Duration>,

    /// A consumer that announced its heartbeat interval (the SDK does) no
    /// longer holds the overlap gate after this many missed heartbeats.
    /// Default 3.
    #[arg(long, value_name = "N")]
    pub stale_after_missed: Option<u32>,

    /// A consumer that announced no heartbeat interval no longer holds the
    /// overlap gate when not heard from for this long. Default 15s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub consumer_stale_after: Option<std::time::Duration>,

    /// canary: the percentage of consumers (1-100, by a stable hash of
    /// their id) that get the new version first. Default 10.
    #[arg(long, value_name = "PERCENT")]
    pub canary_share: Option<u8>,

    /// canary: how long the share uses the new version before everyone
    /// gets it. Default 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub canary_observation: Option<std::time::Duration>,

    /// canary: failures reported against the new version that are still
    /// tolerated; one more rolls the rotation back. Default 0.
    #[arg(long, value_name = "N")]
    pub canary_max_failures: Option<u64>,

    /// POST every phase change of this secret's rotations to this URL as
    /// signed JSON (repeat for several; added to those already set). Needs
    /// --notify-hmac-secret. See docs/api.md, "Notifications".
    #[arg(
        long,
        value_name = "URL",
        requires = "notify_hmac_secret",
        conflicts_with = "no_notify"
    )]
    pub notify_webhook: Vec<String>,

    /// The secret whose current value signs the --notify-webhook requests
    /// (HMAC-SHA256, 16 bytes or more); you need read access to it.
    #[arg(long, value_name = "SECRET", requires = "notify_webhook")]
    pub notify_hmac_secret: Option<SecretName>,

    /// Remove every notification webhook of this secret.
    #[arg(long)]
    pub no_notify: bool,
}

fn parse_on_timeout(s: &str) -> Result<keyshift_core::OnTimeout, String> {
    match s {
        "hold" => Ok(keyshift_core::OnTimeout::Hold),
        "revoke" => Ok(keyshift_core::OnTimeout::Revoke),
        _ => Err(format!("`{s}`: expected hold or revoke")),
    }
}

/// `keyshift secret policy`.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// The secret's name.
    pub name: SecretName,

    /// What to change; with none, the policy is shown.
    #[command(flatten)]
    pub policy: PolicyFlags,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `keyshift status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `keyshift report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The period's start: a duration back from now (7d, 24h) or an RFC 3339
    /// time.
    #[arg(long, default_value = "7d", value_parser = parse_since, value_name = "D")]
    pub since: Since,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `--since`: how far back, or from when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This long before now.
    Ago(std::time::Duration),
    /// This time.
    At(keyshift_core::Timestamp),
}

fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(Since::Ago(d));
    }
    humantime::parse_rfc3339_weak(s)
        .map(|t| Since::At(keyshift_core::Timestamp::from_system(t)))
        .map_err(|_| {
            format!("`{s}` is neither a duration (7d, 24h) nor a time (2026-11-01T00:00:00Z)")
        })
}

/// `keyshift consumers`.
#[derive(Debug, Clone, Args)]
pub struct ConsumersArgs {
    /// The secret's name.
    pub name: SecretName,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `keyshift secret get`.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The secret's name.
    pub name: SecretName,

    /// Read the version this label points at (current, previous, pending,
    /// or a custom label). Default: current.
    #[arg(long, value_name = "LABEL", conflicts_with = "version")]
    pub label: Option<Label>,

    /// Read this version number.
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,

    /// `text` prints the value alone; `json` the version with metadata.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `keyshift secret versions`.
#[derive(Debug, Clone, Args)]
pub struct VersionsArgs {
    /// The secret's name.
    pub name: SecretName,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `keyshift secret ls`.
#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Only names starting with this, e.g. prod/.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `keyshift secret rm`.
#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// The secret's name.
    pub name: SecretName,

    /// Delete even while an external target (Redis) still accepts one of
    /// its values; those values are then lost for good.
    #[arg(long)]
    pub force: bool,
}

/// `keyshift rotate`.
#[derive(Debug, Clone, Args)]
pub struct RotateArgs {
    /// The secret to rotate.
    pub name: SecretName,

    /// dual (old and new valid together until consumers moved),
    /// blue-green (two login roles; PostgreSQL) or immediate (replace and
    /// revoke at once). Default: the secret's policy.
    #[arg(long, value_name = "STRATEGY", conflicts_with = "emergency")]
    pub strategy: Option<Strategy>,

    /// The credential leaked: rotate with strategy immediate, revoking the
    /// old credential at once with no overlap. Consumers still holding it
    /// fail until they move (downtime accepted). REASON goes to the audit
    /// log. Also starts when the secret's circuit is open.
    #[arg(long, value_name = "REASON")]
    pub emergency: Option<String>,

    /// Start even though the secret's circuit breaker is open (after
    /// repeated failed rotations).
    #[arg(long)]
    pub force: bool,

    /// The rotation's id, which is also its idempotency key: starting a
    /// rotation with an id that exists returns that rotation instead of
    /// starting another. Default: a random id chosen by the server.
    #[arg(long, value_name = "KEY", value_parser = parse_rotation_id)]
    pub id: Option<RotationId>,

    /// Wait until the rotation ends, showing its phases on stderr; the exit
    /// code says how it ended (0 succeeded, 3 rolled back, 4 failed).
    #[arg(long)]
    pub wait: bool,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `keyshift rotation ...`.
#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Show a rotation and its phases.
    #[command(long_about = "\
Show a rotation: its secret, strategy, phase, status and versions, and a
table of its phases (start, end, duration, outcome, attempts, last error).

Example:
  keyshift rotation show r-4f1c2a")]
    Show(ShowArgs),

    /// List rotations, newest first.
    #[command(visible_alias = "list")]
    Ls(RotationLsArgs),

    /// Roll a rotation back: the old credential alone is valid again.
    #[command(long_about = "\
Ask the server to roll a rotation back: the target goes back to accepting
only the old credential, labels are restored, the new version is marked
failed. Possible in every phase before Revoke. The rollback runs in the
background; follow it with `keyshift rotation show ID`.

Example:
  keyshift rotation rollback r-4f1c2a --reason \"orders-api errors\"")]
    Rollback(CancelArgs),

    /// Abort a rotation (a rollback recorded as an abort).
    Abort(CancelArgs),

    /// Force the overlap gate: revoke the old credential now.
    #[command(long_about = "\
Force the overlap gate of a rotation in Overlap: the old credential is
revoked now, even though some live consumers (named in `keyshift rotation
show ID`) have not reported the new version or `min_overlap` has not
passed. Those consumers fail until they move. Recorded in the audit log
(`rotation.advance`) with the stragglers and the reason.

Example:
  keyshift rotation advance r-4f1c2a --reason \"pod-7 is decommissioned\"")]
    Advance(CancelArgs),
}

/// `keyshift rotation show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The rotation's id.
    #[arg(value_parser = parse_rotation_id)]
    pub id: RotationId,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `keyshift rotation ls`.
#[derive(Debug, Clone, Args)]
pub struct RotationLsArgs {
    /// Only rotations of this secret.
    #[arg(long, value_name = "NAME")]
    pub secret: Option<SecretName>,

    /// Only rotations still running.
    #[arg(long)]
    pub active: bool,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `keyshift rotation rollback`, `abort` and `advance`.
#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// The rotation's id.
    #[arg(value_parser = parse_rotation_id)]
    pub id: RotationId,

    /// Why, for the rotation's record and the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `keyshift token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (the only time it is shown).
    #[command(long_about = "\
Create an API token with one grant, a scope on a name pattern, and print it
on stdout. This is the only time the token is shown: the server keeps only a
hash. Store it in a file readable by its user only and pass it with
--token-file, or in KEYSHIFT_TOKEN.

Scopes nest: read (values, versions, rotations, watch) < rotate (also start,
roll back and abort rotations) < admin (also create and delete secrets, put
values, manage tokens). Patterns: * (every name), prod/* (names starting with
prod/), or an exact name.

Example:
  keyshift token create --scope read --pattern 'prod/orders/*' \\
      --description orders-api > orders-api.token")]
    Create(TokenCreateArgs),
}

/// `keyshift token create`.
#[derive(Debug, Clone, Args)]
pub struct TokenCreateArgs {
    /// What the token may do.
    #[arg(long, value_enum, value_name = "SCOPE")]
    pub scope: ScopeArg,

    /// On which secret names: *, a prefix ending in * (prod/*), or an exact
    /// name.
    #[arg(long, value_name = "PATTERN")]
    pub pattern: String,

    /// What the token is for (shown in listings and the audit log).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,

    /// `text` prints the token alone; `json` its id and the token.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// A token's scope on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// Read values, versions and rotations; watch.
    Read,
    /// Also start, roll back and abort rotations.
    Rotate,
    /// Also create and delete secrets, put values, manage tokens.
    Admin,
}

impl From<ScopeArg> for keyshift_core::api::Scope {
    fn from(s: ScopeArg) -> Self {
        use keyshift_core::api::Scope;
        match s {
            ScopeArg::Read => Scope::Read,
            ScopeArg::Rotate => Scope::Rotate,
            ScopeArg::Admin => Scope::Admin,
        }
    }
}

/// Parses with `FromStr`: clap would otherwise pick `From<&str>`, which
/// panics on an invalid id.
fn parse_rotation_id(s: &str) -> Result<RotationId, String> {
    s.parse()
        .map_err(|e: keyshift_core::rotation::RotationIdError| e.to_string())
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 30s, 5m, 1h)"))
}

/// A lease length: at least 3 s (it is renewed every third of it).
fn parse_lease(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d < std::time::Duration::from_secs(3) {
        return Err(format!("{s} is too short for a lease: use 3s or more"));
    }
    Ok(d)
}

fn parse_cron(s: &str) -> Result<keyshift_core::CronExpr, String> {
    s.parse()
        .map_err(|e: keyshift_core::ScheduleError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("keyshift").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn there_is_no_token_flag() {
        let e = parse(&["--token", "ks.a.b", "secret", "ls"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        let e = parse(&["secret", "ls", "--token", "ks.a.b"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        // Nothing anywhere in the tree takes a token value.
        fn walk(cmd: &clap::Command) {
            for a in cmd.get_arguments() {
                assert_ne!(a.get_long(), Some("token"), "in `{}`", cmd.get_name());
            }
            cmd.get_subcommands().for_each(walk);
        }
        walk(&Cli::command());
    }

    #[test]
    fn global_options_work_before_and_after_the_subcommand() {
        let cli = parse(&[
            "--addr",
            "http://h:1",
            "secret",
            "ls",
            "--token-file",
            "/t",
            "-vv",
        ])
        .unwrap();
        assert_eq!(cli.global.addr, "http://h:1");
        assert_eq!(cli.global.token_file, Some(PathBuf::from("/t")));
        assert_eq!(cli.global.verbose, 2);
    }

    #[test]
    fn put_takes_kind_target_and_policy() {
        let cli = parse(&[
            "secret",
            "put",
            "prod/cache",
            "--kind",
            "redis",
            "--target",
            r#"{"address":"127.0.0.1:6379"}"#,
            "--min-overlap",
            "1m 30s",
            "--strategy",
            "immediate",
            "--generate",
        ])
        .unwrap();
        let Command::Secret(SecretCommand::Put(p)) = cli.command else {
            panic!("not put");
        };
        assert_eq!(p.name.as_str(), "prod/cache");
        assert_eq!(p.kind, Some(SecretKind::Redis));
        assert_eq!(
            p.policy.min_overlap,
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(p.policy.strategy, Some(Strategy::Immediate));
        assert!(p.generate);
    }

    #[test]
    fn put_refuses_two_value_sources_and_bad_input() {
        let e = parse(&["secret", "put", "a", "--generate", "--from-file", "f"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let e = parse(&["secret", "put", "a", "--target", "{}", "--target-file", "f"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let e = parse(&["secret", "put", "a/../b"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        let e = parse(&["secret", "put", "a", "--kind", "mysql"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        let e = parse(&["secret", "put", "a", "--min-overlap", "soon"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn get_takes_a_label_or_a_version_not_both() {
        let cli = parse(&["secret", "get", "a", "--label", "previous", "-o", "json"]).unwrap();
        let Command::Secret(SecretCommand::Get(g)) = cli.command else {
            panic!("not get");
        };
        assert_eq!(g.label, Some(Label::Previous));
        assert_eq!(g.output.output, Output::Json);
        let e = parse(&["secret", "get", "a", "--label", "current", "--version", "2"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let cli = parse(&["secret", "get", "a", "--version", "2"]).unwrap();
        let Command::Secret(SecretCommand::Get(g)) = cli.command else {
            panic!("not get");
        };
        assert_eq!(g.version, Some(2));
        assert_eq!(g.output.output, Output::Text);
    }

    #[test]
    fn rotate_parses_strategy_id_and_wait() {
        let cli = parse(&[
            "rotate",
            "prod/cache",
            "--strategy",
            "dual",
            "--id",
            "k-1",
            "--wait",
        ])
        .unwrap();
        let Command::Rotate(r) = cli.command else {
            panic!("not rotate");
        };
        assert_eq!(r.strategy, Some(Strategy::Dual));
        assert_eq!(r.id, Some(RotationId::from("k-1")));
        assert!(r.wait);
        let e = parse(&["rotate", "prod/cache", "--id", "bad id"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        let e = parse(&["rotation", "show", "a/b"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn rotation_and_token_commands_parse() {
        let cli = parse(&["rotation", "ls", "--secret", "prod/db", "--active"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Rotation(RotationCommand::Ls(RotationLsArgs { active: true, .. }))
        ));
        let cli = parse(&["rotation", "rollback", "r-1", "--reason", "errors up"]).unwrap();
        let Command::Rotation(RotationCommand::Rollback(c)) = cli.command else {
            panic!("not rollback");
        };
        assert_eq!(c.reason.as_deref(), Some("errors up"));
        let cli = parse(&[
            "token",
            "create",
            "--scope",
            "rotate",
            "--pattern",
            "prod/*",
        ])
        .unwrap();
        let Command::Token(TokenCommand::Create(t)) = cli.command else {
            panic!("not token create");
        };
        assert_eq!(t.scope, ScopeArg::Rotate);
        let e = parse(&["token", "create", "--scope", "root", "--pattern", "*"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn help_never_shows_the_store_url_from_the_environment() {
        let mut cmd = Cli::command();
        let serve = cmd.find_subcommand_mut("serve").unwrap();
        let store = serve
            .get_arguments()
            .find(|a| a.get_id() == "store")
            .unwrap();
        assert!(store.is_hide_env_values_set());
    }

    #[test]
    fn serve_and_init_have_defaults() {
        let cli = parse(&["serve", "--dev"]).unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("not serve");
        };
        assert!(s.dev);
        assert_eq!(s.listen, "127.0.0.1:8200".parse().unwrap());
        let cli = parse(&["init", "--data-dir", "/tmp/d"]).unwrap();
        let Command::Init(i) = cli.command else {
            panic!("not init");
        };
        assert_eq!(i.data_dir, PathBuf::from("/tmp/d"));
    }

    #[test]
    fn usage_errors_exit_with_two() {
        let e = parse(&["secret", "frobnicate"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(&["--help"]).unwrap_err();
        assert_eq!(e.exit_code(), 0);
    }
}

/// What the drill rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DrillKind {
    /// An API key checked by a service with the SDK's KeyRing.
    ApiKey,
    /// The password of a Redis ACL user.
    Redis,
    /// A PostgreSQL login (blue-green: two login roles in a group role).
    Postgres,
    /// A MariaDB user's password (two passwords at once).
    #[value(name = "mariadb")]
    MariaDb,
    /// A TLS server certificate issued by a keyshift CA.
    Tls,
}

/// `keyshift drill`.
#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    /// What to rotate.
    #[arg(long, value_enum)]
    pub kind: DrillKind,

    /// How many consumers send requests at once (each with its own SDK
    /// client and watch connection).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub consumers: u32,

    /// How many rotations to run during the drill.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub rotations: u32,

    /// The least time the drill runs (e.g. 30s, 2m); rotations are spread
    /// over it. Default: as long as the rotations take.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<std::time::Duration>,

    /// The rotation strategy. Default: the target's default (dual).
    #[arg(long, value_name = "STRATEGY")]
    pub strategy: Option<Strategy>,

    /// The overlap window of each rotation (the secret's min_overlap).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub overlap: std::time::Duration,

    /// Use the keyshift server at this URL (token from KEYSHIFT_TOKEN or
    /// --token-file, with admin scope) instead of starting one in-process.
    /// Repeat for replicas of one keyshift (one store): the consumers are
    /// spread over them, each failing over to the others, and the
    /// rotations start on each in turn. The drill's service and its own
    /// setup use the first.
    #[arg(long, value_name = "URL")]
    pub server: Vec<String>,

    /// The Redis the `redis` kind rotates a user on (admin: its default user).
    #[arg(long, default_value = "redis://127.0.0.1:6379", value_name = "URL")]
    pub redis: String,

    /// The PostgreSQL the `postgres` kind rotates a login on, administered
    /// as `postgres` without a password (no password in this URL).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        value_name = "URL"
    )]
    pub postgres: String,

    /// The MariaDB the `mariadb` kind rotates a user on, administered as
    /// `root` without a password (no password in this URL).
    #[arg(
        long,
        default_value = "mysql://root@127.0.0.1:3306",
        value_name = "URL"
    )]
    pub mariadb: String,

    /// How to print the report.
    #[command(flatten)]
    pub output: OutputArgs,
}
