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
    for k in 0..args.rotations {
        let req = StartRotation {
            strategy: args.strategy,
            ..StartRotation::default()
        };
        let rotation = server
            .api
            .rotate(&target.name, &req)
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
        let r = server.api.get_rotation(&rotation.id).await?;
        if r.status != Status::Running {
            return Ok(r);
        }
        tokio::time::sleep(POLL).await;
    }
}
