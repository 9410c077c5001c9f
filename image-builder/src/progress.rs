//! Progress for long steps: a spinner with the step name and figures on a
//! terminal, nothing when stderr is not one (CI logs stay quiet).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports the steps of a long job.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    started: Instant,
    /// Completed steps and how long each took.
    pub steps: Vec<(String, Duration)>,
}

/// The running step, for detail updates.
#[derive(Debug)]
pub struct Step {
    bar: Option<ProgressBar>,
}

impl Step {
    /// Shows a detail such as "42 MiB of 120 MiB".
    pub fn detail(&self, text: &str) {
        if let Some(b) = &self.bar {
            b.set_message(text.to_string());
        }
    }
}

impl Progress {
    /// Progress on stderr if it is a terminal and `quiet` is off.
    pub fn new(quiet: bool) -> Self {
        Progress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            started: Instant::now(),
            steps: Vec::new(),
        }
    }

    /// Runs one named step.
    pub fn step<T, E>(
        &mut self,
        name: &str,
        f: impl FnOnce(&Step) -> Result<T, E>,
    ) -> Result<T, E> {
        let bar = self.enabled.then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(name.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        let t = Instant::now();
        let step = Step { bar };
        let result = f(&step);
        if let Some(b) = step.bar {
            b.finish_and_clear();
            if result.is_ok() {
                eprintln!("  {name} ({:.1} s)", t.elapsed().as_secs_f64());
            }
        }
        self.steps.push((name.to_string(), t.elapsed()));
        result
    }

    /// Time since the job started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
