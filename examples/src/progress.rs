//! Progress bars for long runs, fed by results as they arrive.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar counting `len` results, labelled `what` ("files",
/// "batches"), drawn on stderr.
///
/// It is hidden, and costs next to nothing, with `quiet` or when stderr is
/// not a terminal: a bar redrawn into a log file or a pipe is only noise.
/// Call [`ProgressBar::inc`] as each result comes in and
/// [`ProgressBar::finish_and_clear`] at the end.
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

#[cfg(test)]
mod tests {
    #[test]
    fn quiet_bar_is_hidden_and_still_counts() {
        let bar = super::bar(10, "things", true);
        assert!(bar.is_hidden());
        bar.inc(3);
        assert_eq!(bar.position(), 3);
    }
}
