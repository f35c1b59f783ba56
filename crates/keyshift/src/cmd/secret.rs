//! `keyshift secret put|get|versions|ls|rm`.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use keyshift_client::{ApiClient, Selector};
use keyshift_core::api::{AddVersion, CreateSecret, SecretInfo};
use keyshift_core::{Label, Policy, SecretKind, SecretValue, VersionNumber};
use serde::Serialize;

use super::policy;
use crate::cli::{GetArgs, LsArgs, Output, PutArgs, RmArgs, VersionsArgs};
use crate::exit;
use crate::output::{self, or_dash, ts, Table};

/// `secret put`: creates the secret or adds a version labelled current.
pub async fn put(client: &ApiClient, args: &PutArgs) -> anyhow::Result<ExitCode> {
    let target = read_target(args)?;
    let value = read_value(args)?;
    let done = match client.get_secret(&args.name).await {
        Ok(info) => add_version(client, args, &info, target, value).await?,
        Err(e) if e.is_not_found() => create(client, args, target, value).await?,
        Err(e) => return Err(e.into()),
    };
    match args.output.output {
        Output::Json => output::print_json(&done)?,
        Output::Text if done.created => println!(
            "created {} ({}), version {}",
            done.name,
            done.kind,
            or_dash(done.version)
        ),
        Output::Text => println!(
            "{}: added version {}, labelled current",
            done.name,
            or_dash(done.version)
        ),
    }
    Ok(exit::code(exit::SUCCESS))
}

/// What `put` did, for `--output json`.
#[derive(Debug, Serialize)]
struct PutDone {
    name: String,
    kind: SecretKind,
    version: Option<VersionNumber>,
    created: bool,
}

async fn create(
    client: &ApiClient,
    args: &PutArgs,
    target: Option<serde_json::Value>,
    value: Option<SecretValue>,
) -> anyhow::Result<PutDone> {
    let kind = args.kind.unwrap_or(SecretKind::Static);
    let req = CreateSecret {
        name: args.name.clone(),
        kind,
        policy: policy::with_flags(Policy::default(), &args.policy)?,
        target: target.unwrap_or(serde_json::Value::Null),
        generate: value.is_none(),
        value,
    };
    let info = client.create_secret(&req).await?;
    Ok(PutDone {
        name: info.name.to_string(),
        kind: info.kind,
        version: info.labels.get(&Label::Current).copied(),
        created: true,
    })
}

async fn add_version(
    client: &ApiClient,
    args: &PutArgs,
    info: &SecretInfo,
    target: Option<serde_json::Value>,
    value: Option<SecretValue>,
) -> anyhow::Result<PutDone> {
    if let Some(kind) = args.kind.filter(|k| *k != info.kind) {
        bail!(
            "{} exists with kind {}, not {kind}; a secret's kind cannot change",
            info.name,
            info.kind
        );
    }
    if target.is_some() {
        bail!(
            "{} exists; --target and --target-file apply only when creating a secret",
            info.name
        );
    }
    if info.kind.rotates() {
        eprintln!(
            "warning: {} is a {} secret: a value put by hand does not change the target; \
             use `keyshift rotate {}` to change the credential everywhere",
            info.name, info.kind, info.name
        );
    }
    let policy = policy::with_flags(info.policy.clone(), &args.policy)?;
    if policy != info.policy {
        client.set_policy(&info.name, &policy).await?;
        eprintln!("{}: policy updated", info.name);
    }
    let req = AddVersion {
        generate: value.is_none(),
        value,
        labels: Some(vec![Label::Current]),
    };
    let added = client.add_version(&info.name, &req).await?;
    Ok(PutDone {
        name: info.name.to_string(),
        kind: info.kind,
        version: Some(added.version),
        created: false,
    })
}

/// The target configuration from `--target` or `--target-file`: a JSON object.
fn read_target(args: &PutArgs) -> anyhow::Result<Option<serde_json::Value>> {
    let (text, source) = match (&args.target, &args.target_file) {
        (Some(t), _) => (t.clone(), "--target".to_owned()),
        (None, Some(f)) => (
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the target file {}", f.display()))?,
            f.display().to_string(),
        ),
        (None, None) => return Ok(None),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("the target configuration in {source} is not valid JSON"))?;
    if !value.is_object() {
        bail!("the target configuration in {source} must be a JSON object");
    }
    Ok(Some(value))
}

/// The value to put: `None` with `--generate`, else from the file or stdin.
fn read_value(args: &PutArgs) -> anyhow::Result<Option<SecretValue>> {
    if args.generate {
        return Ok(None);
    }
    if let Some(path) = &args.from_file {
        return read_value_file(path).map(Some);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("reading the value from stdin; end with Ctrl-D");
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .context("cannot read the value from stdin (it must be UTF-8)")?;
    strip_one_newline(&mut text);
    SecretValue::new(text)
        .context("the value read from stdin")
        .map(Some)
}

fn read_value_file(path: &Path) -> anyhow::Result<SecretValue> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the value from {} (it must be UTF-8)",
            path.display()
        )
    })?;
    SecretValue::new(text).with_context(|| format!("the value in {}", path.display()))
}

/// Removes one trailing `\n` or `\r\n`, in place (no copy of the secret).
fn strip_one_newline(s: &mut String) {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
}

/// `secret get`: the value alone (text) or the version (json).
pub async fn get(client: &ApiClient, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let sel = match (&args.label, args.version) {
        (_, Some(n)) => Selector::Version(VersionNumber(n)),
        (Some(l), None) => Selector::Label(l.clone()),
        (None, None) => Selector::Label(Label::Current),
    };
    let v = client.get_value(&args.name, sel).await?;
    match args.output.output {
        Output::Json => output::print_json(&v)?,
        Output::Text => {
            let mut out = std::io::stdout().lock();
            out.write_all(v.value.expose().as_bytes())?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
    }
    Ok(exit::code(exit::SUCCESS))
}

/// `secret versions`: VERSION STATE LABELS CREATED ROTATION.
pub async fn versions(client: &ApiClient, args: &VersionsArgs) -> anyhow::Result<ExitCode> {
    let list = client.list_versions(&args.name).await?;
    if args.output.output == Output::Json {
        output::print_json(&list)?;
        return Ok(exit::code(exit::SUCCESS));
    }
    let mut t = Table::new(["VERSION", "STATE", "LABELS", "CREATED", "ROTATION"]);
    for v in &list.versions {
        let labels: Vec<&str> = v.labels.iter().map(Label::as_str).collect();
        t.row([
            v.version.to_string(),
            v.state.as_str().to_owned(),
            if labels.is_empty() {
                "-".to_owned()
            } else {
                labels.join(",")
            },
            ts(v.created_at),
            or_dash(v.rotation.as_ref()),
        ]);
    }
    output::print_table(&t, &format!("{} has no versions", list.name))?;
    Ok(exit::code(exit::SUCCESS))
}

/// `secret ls`: NAME KIND CURRENT CREATED.
pub async fn ls(client: &ApiClient, args: &LsArgs) -> anyhow::Result<ExitCode> {
    let list = client.list_secrets(args.prefix.as_deref()).await?;
    if args.output.output == Output::Json {
        output::print_json(&list)?;
        return Ok(exit::code(exit::SUCCESS));
    }
    output::print_table(&secrets_table(&list.secrets), "no secrets")?;
    Ok(exit::code(exit::SUCCESS))
}

fn secrets_table(secrets: &[SecretInfo]) -> Table {
    let mut t = Table::new(["NAME", "KIND", "CURRENT", "CREATED"]);
    for s in secrets {
        t.row([
            s.name.to_string(),
            s.kind.to_string(),
            or_dash(s.labels.get(&Label::Current)),
            ts(s.created_at),
        ]);
    }
    t
}

/// `secret rm`.
pub async fn rm(client: &ApiClient, args: &RmArgs) -> anyhow::Result<ExitCode> {
    if args.force {
        client.delete_secret_forced(&args.name).await?;
    } else {
        client.delete_secret(&args.name).await?;
    }
    println!("deleted {}", args.name);
    Ok(exit::code(exit::SUCCESS))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use clap::Parser as _;
    use keyshift_core::{Strategy, Timestamp};

    use super::*;
    use crate::cli::{Cli, Command, SecretCommand};

    fn put_args(args: &[&str]) -> PutArgs {
        let argv = ["keyshift", "secret", "put"]
            .into_iter()
            .chain(args.iter().copied());
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Secret(SecretCommand::Put(p)) => *p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exactly_one_trailing_newline_is_stripped() {
        for (input, want) in [
            ("pw\n", "pw"),
            ("pw\r\n", "pw"),
            ("pw\n\n", "pw\n"),
            ("pw", "pw"),
            ("\n", ""),
        ] {
            let mut s = input.to_owned();
            strip_one_newline(&mut s);
            assert_eq!(s, want, "{input:?}");
        }
    }

    #[test]
    fn put_takes_the_policy_flags() {
        let p = policy::with_flags(
            Policy::default(),
            &put_args(&["a", "--min-overlap", "5m", "--strategy", "immediate"]).policy,
        )
        .unwrap();
        assert_eq!(p.min_overlap, Duration::from_secs(300));
        assert_eq!(p.strategy, Strategy::Immediate);
    }

    #[test]
    fn target_must_be_a_json_object() {
        let t = read_target(&put_args(&["a", "--target", r#"{"user":"app"}"#])).unwrap();
        assert_eq!(t, Some(serde_json::json!({"user": "app"})));
        assert!(read_target(&put_args(&["a", "--target", "[1]"])).is_err());
        assert!(read_target(&put_args(&["a", "--target", "{nope"])).is_err());
        assert_eq!(read_target(&put_args(&["a"])).unwrap(), None);
    }

    #[test]
    fn secrets_table_shows_current_version_or_dash() {
        let mut labels = BTreeMap::new();
        labels.insert(Label::Current, VersionNumber(3));
        let mk = |name: &str, labels| SecretInfo {
            name: name.parse().unwrap(),
            kind: SecretKind::Redis,
            policy: Policy::default(),
            target: serde_json::Value::Null,
            labels,
            created_at: Timestamp::from_millis(0),
        };
        let t = secrets_table(&[mk("prod/cache", labels), mk("x", BTreeMap::new())]);
        assert_eq!(
            t.render(),
            "NAME         KIND    CURRENT   CREATED\n\
             prod/cache   redis   3         1970-01-01T00:00:00.000Z\n\
             x            redis   -         1970-01-01T00:00:00.000Z\n"
        );
    }
}
