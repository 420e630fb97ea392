//! Progress bars for long runs, fed by results as they arrive (by the
//! pool's own `Progress` for a `map`: `Progress::update_bar`), and
//! spinners for the stretches that have no results to count.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar counting `len` results, labelled `what` ("files",
/// "batches"), drawn on stderr.
///
/// It is hidden, and costs next to nothing, with `quiet` or when stderr is
/// not a terminal: a bar redrawn into a log file or a pipe is only noise.
/// Pass it to `pool::Progress::update_bar` from a
/// `map_with(..).progress(..)` callback, or call [`ProgressBar::inc`] as each
/// result comes in; call [`ProgressBar::finish_and_clear`] at the end.
pub fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    // The template is a constant, so it cannot fail to parse; fall back to
    // the default style rather than panic all the same.
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} {msg} ({eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// A spinner saying what is going on, with the time elapsed, drawn on
/// stderr and turning by itself: for work that yields no results to count,
/// such as the serial comparison runs.
///
/// Hidden with `quiet` or when stderr is not a terminal, like [`bar`].
/// Call [`ProgressBar::finish_and_clear`] when the work is done.
pub fn spinner(what: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    spinner.set_style(style);
    spinner.set_message(what.to_string());
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}

#[cfg(test)]
mod tests {
    #[test]
    fn quiet_bar_is_hidden_and_still_counts() {
        let bar = super::bar(10, "things", true);
        assert!(bar.is_hidden());
        bar.inc(3);
        assert_eq!(bar.position(), 3);
    }

    #[test]
    fn quiet_spinner_is_hidden() {
        assert!(super::spinner("working", true).is_hidden());
    }
}
