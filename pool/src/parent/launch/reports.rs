//! What a pool waiting in `build` for its Slurm job says about it: the
//! job's state and Slurm's reason, to the user's
//! [`on_waiting`](super::slurm::SlurmWorkers::on_waiting) and as a tracing
//! event, at once, on every change, and every `report_every`.

use std::time::{Duration, Instant};

use super::slurm::{JobId, JobState, SlurmWaiting, SlurmWorkers};
use crate::error::Result;

/// What the waiting job's reports last said, so that a change is reported
/// at once and a standstill every `report_every`.
#[derive(Default)]
pub(crate) struct WaitReports {
    last: Option<(Instant, String, String)>,
}

impl WaitReports {
    pub(crate) fn report(
        &mut self,
        slurm: &SlurmWorkers,
        job: JobId,
        polled: &Result<JobState>,
        waited: Duration,
    ) {
        let (state, reason) = match polled {
            // Slurm says "None" for no reason.
            Ok(JobState::Pending { reason }) if reason == "None" => {
                ("PENDING".to_string(), String::new())
            }
            Ok(JobState::Pending { reason }) => ("PENDING".to_string(), reason.clone()),
            Ok(JobState::Active { state }) => (state.clone(), String::new()),
            // The wait ends with an error that says so.
            Ok(JobState::Ended { .. }) => return,
            Err(err) => (format!("unknown ({err})"), String::new()),
        };
        let due = match &self.last {
            None => true,
            Some((at, last_state, last_reason)) => {
                at.elapsed() >= slurm.report_every || *last_state != state || *last_reason != reason
            }
        };
        if !due {
            return;
        }
        tracing::info!(target: "pool::slurm", job, %state, %reason, ?waited, "waiting for the Slurm job's first worker");
        if let Some(report) = &slurm.on_waiting {
            (report.0)(&SlurmWaiting {
                job,
                state: state.clone(),
                reason: reason.clone(),
                waited,
            });
        }
        self.last = Some((Instant::now(), state, reason));
    }
}
