//! Rotates the drill's secret the asked number of times, one after the
//! other, spread over `--duration` when given.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use keyshift_core::api::{RotationInfo, StartRotation};
use keyshift_core::rotation::Status;

use super::report::Progress;
use super::setup::{DrillServer, Target};
use crate::cli::DrillArgs;

/// How often a running rotation is polled.
const POLL: Duration = Duration::from_millis(20);
/// The pause between rotations when no duration spreads them.
const GAP: Duration = Duration::from_millis(200);

/// Runs the rotations; returns each one as it ended.
pub async fn rotate(
    args: &DrillArgs,
    server: &DrillServer,
    target: &Target,
    progress: &Progress,
) -> anyhow::Result<Vec<RotationInfo>> {
    let started = Instant::now();
    let slot = args.duration.map(|d| d / args.rotations);
    let mut done = Vec::new();
    // Each rotation has its id before it starts, so starting it again on
    // another replica (the first one did not answer) starts it once.
    let run: u32 = rand::random();
    for k in 0..args.rotations {
        let req = StartRotation {
            id: Some(
                format!("drill-{run:08x}-{}", k + 1)
                    .parse()
                    .context("a drill rotation id")?,
            ),
            strategy: args.strategy,
            ..StartRotation::default()
        };
        let rotation = server
            .on_replicas(k as usize, |api| {
                let (name, req) = (target.name.clone(), req.clone());
                async move { api.rotate(&name, &req).await }
            })
            .await
            .with_context(|| format!("starting rotation {}", k + 1))?;
        let ended = wait(server, &rotation).await?;
        progress.rotation_done(&ended);
        done.push(ended);
        let next = match slot {
            Some(slot) => (slot * (k + 1)).saturating_sub(started.elapsed()),
            None => GAP,
        };
        tokio::time::sleep(next).await;
    }
    Ok(done)
}

async fn wait(server: &DrillServer, rotation: &RotationInfo) -> anyhow::Result<RotationInfo> {
    loop {
        let r = server
            .on_replicas(0, |api| {
                let id = rotation.id.clone();
                async move { api.get_rotation(&id).await }
            })
            .await?;
        if r.status != Status::Running {
            return Ok(r);
        }
        tokio::time::sleep(POLL).await;
    }
}
