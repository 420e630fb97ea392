//! `Pool::map_with` in every combination of its options (automatic or
//! chosen chunk size × progress or not × stop at or keep failures), over
//! real workers, with and without failing inputs: each returns what its
//! failure mode promises, a chosen chunk size is kept, and progress is
//! reported well formed whatever the chunking.

use std::time::Duration;

use integration_tests::{line, scenario_output};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn every_combination_of_map_options_works() {
    let out = scenario_output(env!("CARGO_BIN_EXE_pool_maps"), "options", LIMIT);
    for chunks in ["auto", "whole"] {
        for progress in ["quiet", "progress"] {
            let label = |set: &str, keep: &str| format!("{set} {chunks} {progress} {keep}");
            assert_eq!(
                line(&out, &label("mixed", "stop")),
                "stopped TaskFailed at_a_failing_input=true"
            );
            assert_eq!(
                line(&out, &label("mixed", "keep")),
                "kept right=true failed=10"
            );
            assert_eq!(
                line(&out, &label("clean", "keep")),
                "kept right=true failed=0"
            );
            let clean = line(&out, &label("clean", "stop"));
            if chunks == "whole" {
                // One chunk of every input: one worker ran them all.
                assert_eq!(clean, "ok right=true workers=1");
            } else {
                assert!(clean.starts_with("ok right=true workers="), "{clean}");
            }
            if progress == "progress" {
                let report =
                    |set: &str, keep: &str| line(&out, &format!("{} progress", label(set, keep)));
                assert_eq!(report("mixed", "keep"), "well_formed=true last=70/10/70");
                assert_eq!(report("clean", "keep"), "well_formed=true last=60/0/60");
                assert_eq!(report("clean", "stop"), "well_formed=true last=60/0/60");
                // A call that stops reports the failure it stops at last.
                let stop = report("mixed", "stop");
                let (well_formed, last) = stop.split_once(" last=").expect(stop);
                assert_eq!(well_formed, "well_formed=true");
                let failed: usize = last
                    .split('/')
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .expect(stop);
                assert!(failed >= 1, "{stop}");
            }
        }
    }
}
