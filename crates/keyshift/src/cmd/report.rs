//! `keyshift report`: rotation health over a period.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use keyshift_client::ApiClient;
use keyshift_core::report::HealthReport;
use keyshift_core::Timestamp;

use crate::cli::{Output, ReportArgs, Since};
use crate::exit;
use crate::output::{self, or_dash};

/// `report [--since D]`.
pub async fn report(client: &ApiClient, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let since = match args.since {
        Since::At(t) => t,
        Since::Ago(d) => Timestamp::from_system(SystemTime::now()).saturating_sub(d),
    };
    let report = client.report(Some(since)).await?;
    if args.output.output == Output::Json {
        output::print_json(&report)?;
    } else {
        std::io::stdout()
            .lock()
            .write_all(text(&report).as_bytes())?;
    }
    Ok(exit::code(exit::SUCCESS))
}

/// The report for people: one figure a line, `-` where there is none.
fn text(r: &HealthReport) -> String {
    let since = r
        .since
        .map_or_else(|| "the first rotation".to_owned(), |t| t.to_string());
    let mttr = r
        .mean_time_to_rotate_s
        .map(|s| output::duration(Duration::from_secs_f64(s)));
    let rate = r.success_rate.map(|x| format!("{:.1}%", x * 100.0));
    let util = r
        .overlap_utilization
        .map(|x| format!("{x:.2} (overlap used / allocated)"));
    let velocity = r
        .migration_velocity_per_min
        .map(|x| format!("{x:.1} consumers/min"));
    let incidents = r
        .incidents_per_rotation
        .map(|x| format!("{x:.2} ({} in all)", r.incidents));
    format!(
        "Rotations since {since}: {} ({} succeeded, {} rolled back, {} failed, {} running)\n\
         mean time to rotate     {}\n\
         success rate            {}\n\
         overlap utilization     {}\n\
         migration velocity      {}\n\
         incidents per rotation  {}\n",
        r.rotations,
        r.succeeded,
        r.rolled_back,
        r.failed,
        r.running,
        or_dash(mttr),
        or_dash(rate),
        or_dash(util),
        or_dash(velocity),
        or_dash(incidents),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_report_shows_dashes() {
        let r = HealthReport::of(&[], None, Timestamp::from_millis(0));
        let t = text(&r);
        assert!(
            t.starts_with("Rotations since the first rotation: 0 "),
            "{t}"
        );
        assert!(t.contains("success rate            -\n"), "{t}");
    }
}
