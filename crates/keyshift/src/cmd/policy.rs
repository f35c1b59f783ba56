//! `keyshift secret policy`: show or change a secret's rotation policy.

use std::process::ExitCode;

use anyhow::Context as _;
use keyshift_client::ApiClient;
use keyshift_core::{NotifyWebhook, Policy, Schedule, SecretName, When};

use crate::cli::{Output, PolicyArgs, PolicyFlags};
use crate::exit;
use crate::output::{self, Table};

/// `secret policy NAME [flags]`: with flags, changes what they name;
/// prints the (new) policy.
pub async fn policy(client: &ApiClient, args: &PolicyArgs) -> anyhow::Result<ExitCode> {
    let info = client.get_secret(&args.name).await?;
    let policy = with_flags(info.policy.clone(), &args.policy)?;
    if policy != info.policy {
        client.set_policy(&info.name, &policy).await?;
        if args.output.output == Output::Text {
            eprintln!("{}: policy updated", info.name);
        }
    }
    match args.output.output {
        Output::Json => output::print_json(&policy)?,
        Output::Text => print!("{}", table(&policy).render()),
    }
    Ok(exit::code(exit::SUCCESS))
}

/// `policy` with the changes `flags` name, checked.
///
/// # Errors
///
/// When the result is not a valid policy (the reason says which flags).
pub fn with_flags(mut policy: Policy, flags: &PolicyFlags) -> anyhow::Result<Policy> {
    if let Some(s) = flags.strategy {
        policy.strategy = s;
    }
    if let Some(d) = flags.min_overlap {
        policy.min_overlap = d;
        if flags.max_overlap.is_none() {
            // Keep the policy valid when only the minimum was given.
            policy.max_overlap = policy.max_overlap.max(d);
        }
    }
    if let Some(d) = flags.max_overlap {
        policy.max_overlap = d;
    }
    let jitter = flags
        .jitter
        .or_else(|| policy.schedule.as_ref().map(|s| s.jitter))
        .unwrap_or_default();
    let when = match (flags.every, &flags.cron) {
        (Some(d), _) => Some(When::Every(d)),
        (None, Some(c)) => Some(When::Cron(c.clone())),
        (None, None) => policy.schedule.take().map(|s| s.when),
    };
    policy.schedule = match when {
        _ if flags.no_schedule => None,
        Some(when) => Some(Schedule { when, jitter }),
        None if flags.jitter.is_some() => {
            anyhow::bail!("--jitter needs a schedule: give --every or --cron as well")
        }
        None => None,
    };
    if let Some(n) = flags.circuit_failures {
        policy.circuit_failures = n;
    }
    if let Some(d) = flags.circuit_open {
        policy.circuit_open = d;
    }
    if let Some(d) = flags.retry_backoff {
        policy.retry_backoff = d;
    }
    if let Some(n) = flags.max_attempts {
        policy.max_attempts = n;
    }
    if let Some(o) = flags.on_timeout {
        policy.on_timeout = o;
    }
    if let Some(d) = flags.monitoring_cycle {
        policy.monitoring_cycle = d;
    }
    if let Some(n) = flags.stale_after_missed {
        policy.stale_after_missed = n;
    }
    if let Some(d) = flags.consumer_stale_after {
        policy.consumer_stale_after = d;
    }
    if let Some(n) = flags.canary_share {
        policy.canary_share = n;
    }
    if let Some(d) = flags.canary_observation {
        policy.canary_observation = d;
    }
    if let Some(n) = flags.canary_max_failures {
        policy.canary_max_failures = n;
    }
    if flags.no_notify {
        policy.notify.clear();
    }
    for hook in webhooks(&flags.notify_webhook, flags.notify_hmac_secret.as_ref()) {
        if !policy.notify.contains(&hook) {
            policy.notify.push(hook);
        }
    }
    policy.validate().context("invalid policy")?;
    Ok(policy)
}

/// The webhooks `urls`, each signed with `hmac_secret` (clap makes the
/// two flags come together).
pub fn webhooks(urls: &[String], hmac_secret: Option<&SecretName>) -> Vec<NotifyWebhook> {
    let Some(key) = hmac_secret else {
        return Vec::new();
    };
    urls.iter()
        .map(|url| NotifyWebhook {
            url: url.clone(),
            hmac_secret: key.clone(),
        })
        .collect()
}

fn human(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The schedule in words: `every 30days, jitter 2h` or `cron '0 3 * * 1'
/// (UTC)`.
pub fn describe(schedule: Option<&Schedule>) -> String {
    let Some(s) = schedule else {
        return "-".to_owned();
    };
    let when = match &s.when {
        When::Every(d) => format!("every {}", human(*d)),
        When::Cron(c) => format!("cron '{c}' (UTC)"),
    };
    if s.jitter.is_zero() {
        when
    } else {
        format!("{when}, jitter {}", human(s.jitter))
    }
}

/// `url (signed with NAME), ...` or `-`.
fn notify_list(hooks: &[NotifyWebhook]) -> String {
    if hooks.is_empty() {
        return "-".to_owned();
    }
    hooks
        .iter()
        .map(|h| format!("{} (signed with {})", h.shown(), h.hmac_secret))
        .collect::<Vec<_>>()
        .join(", ")
}

fn table(p: &Policy) -> Table {
    let mut t = Table::new(["SETTING", "VALUE"]);
    let on_timeout = serde_json::to_value(p.on_timeout)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    for (k, v) in [
        ("strategy", p.strategy.to_string()),
        ("schedule", describe(p.schedule.as_ref())),
        ("min_overlap", human(p.min_overlap)),
        ("max_overlap", human(p.max_overlap)),
        ("on_timeout", on_timeout),
        ("monitoring_cycle", human(p.monitoring_cycle)),
        ("stale_after_missed", p.stale_after_missed.to_string()),
        ("consumer_stale_after", human(p.consumer_stale_after)),
        ("rollback_on_failure", p.rollback_on_failure.to_string()),
        ("max_attempts", p.max_attempts.to_string()),
        ("retry_backoff", human(p.retry_backoff)),
        ("circuit_failures", p.circuit_failures.to_string()),
        ("circuit_open", human(p.circuit_open)),
        ("canary_share", format!("{}%", p.canary_share)),
        ("canary_observation", human(p.canary_observation)),
        ("canary_max_failures", p.canary_max_failures.to_string()),
        ("notify", notify_list(&p.notify)),
    ] {
        t.row([k.to_owned(), v]);
    }
    t
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;
    use keyshift_core::Strategy;

    use super::*;
    use crate::cli::{Cli, Command, SecretCommand};

    fn flags(args: &[&str]) -> Result<PolicyFlags, clap::Error> {
        let argv = ["keyshift", "secret", "policy", "a"]
            .into_iter()
            .chain(args.iter().copied());
        match Cli::try_parse_from(argv)?.command {
            Command::Secret(SecretCommand::Policy(p)) => Ok(p.policy),
            other => panic!("{other:?}"),
        }
    }

    fn apply(p: Policy, args: &[&str]) -> anyhow::Result<Policy> {
        with_flags(p, &flags(args).unwrap())
    }

    #[test]
    fn flags_change_only_what_they_name() {
        let p = apply(Policy::default(), &["--min-overlap", "5m"]).unwrap();
        assert_eq!(p.min_overlap, Duration::from_secs(300));
        assert_eq!(p.strategy, Policy::default().strategy);
        let p = apply(Policy::default(), &["--min-overlap", "48h"]).unwrap();
        assert!(p.validate().is_ok(), "max_overlap follows a larger minimum");
        let p = apply(Policy::default(), &["--strategy", "immediate"]).unwrap();
        assert_eq!(p.strategy, Strategy::Immediate);
        assert_eq!(p.min_overlap, Policy::default().min_overlap);
        assert_eq!(apply(Policy::default(), &[]).unwrap(), Policy::default());
    }

    #[test]
    fn notify_webhooks_are_added_listed_and_removed() {
        let add = |p, url| {
            apply(
                p,
                &["--notify-webhook", url, "--notify-hmac-secret", "ops/k"],
            )
        };
        let p = add(Policy::default(), "https://a.example/x?token=t").unwrap();
        let p = add(p, "https://b.example/y").unwrap();
        // The same one again is not added twice.
        let p = add(p, "https://b.example/y").unwrap();
        assert_eq!(
            notify_list(&p.notify),
            "https://a.example/x (signed with ops/k), https://b.example/y (signed with ops/k)"
        );
        assert!(add(Policy::default(), "ftp://a/x").is_err());
        assert!(
            flags(&["--notify-webhook", "https://a/x"]).is_err(),
            "needs a key"
        );
        let p = apply(p, &["--no-notify"]).unwrap();
        assert!(p.notify.is_empty());
        assert_eq!(notify_list(&p.notify), "-");
    }

    #[test]
    fn schedules_are_set_changed_and_removed() {
        let p = apply(Policy::default(), &["--every", "30d", "--jitter", "2h"]).unwrap();
        assert_eq!(describe(p.schedule.as_ref()), "every 30days, jitter 2h");
        // --jitter alone keeps the schedule; --cron replaces the interval
        // and keeps the jitter.
        let p = apply(p, &["--jitter", "1h"]).unwrap();
        assert_eq!(describe(p.schedule.as_ref()), "every 30days, jitter 1h");
        let p = apply(p, &["--cron", "0 3 * * 1"]).unwrap();
        assert_eq!(
            describe(p.schedule.as_ref()),
            "cron '0 3 * * 1' (UTC), jitter 1h"
        );
        let p = apply(p, &["--no-schedule"]).unwrap();
        assert_eq!(p.schedule, None);
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        let e = apply(Policy::default(), &["--jitter", "5m"]).unwrap_err();
        assert!(e.to_string().contains("--every or --cron"), "{e}");
        let e = apply(Policy::default(), &["--every", "1h", "--jitter", "2h"]).unwrap_err();
        assert!(
            format!("{e:#}").contains("shorter than the interval"),
            "{e:#}"
        );
        let e = flags(&["--cron", "0 3 * *"]).unwrap_err();
        assert!(e.to_string().contains("five"), "{e}");
        assert!(flags(&["--every", "1h", "--cron", "* * * * *"]).is_err());
        assert!(flags(&["--every", "1h", "--no-schedule"]).is_err());
    }

    #[test]
    fn canary_settings_are_set_and_checked() {
        let p = apply(
            Policy::default(),
            &[
                "--strategy",
                "canary",
                "--canary-share",
                "20",
                "--canary-observation",
                "10m",
                "--canary-max-failures",
                "2",
            ],
        )
        .unwrap();
        assert_eq!(p.strategy, Strategy::Canary);
        assert_eq!(p.canary_share, 20);
        assert_eq!(p.canary_observation, Duration::from_secs(600));
        assert_eq!(p.canary_max_failures, 2);
        let p = apply(
            Policy::default(),
            &[
                "--on-timeout",
                "revoke",
                "--monitoring-cycle",
                "5s",
                "--consumer-stale-after",
                "1m",
            ],
        )
        .unwrap();
        assert_eq!(p.on_timeout, keyshift_core::OnTimeout::Revoke);
        assert_eq!(p.monitoring_cycle, Duration::from_secs(5));
        assert_eq!(p.consumer_stale_after, Duration::from_secs(60));
        assert!(flags(&["--on-timeout", "later"]).is_err());
        let e = apply(Policy::default(), &["--canary-share", "0"]).unwrap_err();
        assert!(format!("{e:#}").contains("canary_share"), "{e:#}");
        assert!(flags(&["--canary-share", "300"]).is_err(), "not a u8");
    }
}
