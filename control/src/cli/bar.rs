//! A long command's progress bar on standard error, drawn from the job's
//! [`Progress`] (the one the panel's event stream reads). indicatif draws
//! it only on a terminal, so scripts and tests see just the output.

use std::future::Future;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::progress::Progress;

const EVERY: Duration = Duration::from_millis(200);

/// Runs `job`, showing `progress` until it is done.
pub async fn with_bar<T>(progress: &Progress, job: impl Future<Output = T>) -> T {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {msg}")
            .expect("a valid template"),
    );
    let follow = {
        let (bar, progress) = (bar.clone(), progress.clone());
        tokio::spawn(async move {
            loop {
                show(&bar, &progress);
                tokio::time::sleep(EVERY).await;
            }
        })
    };
    let outcome = job.await;
    follow.abort();
    show(&bar, progress);
    bar.finish_and_clear();
    outcome
}

fn show(bar: &ProgressBar, progress: &Progress) {
    let view = progress.view();
    match view.total {
        Some(total) => bar.set_length(total),
        None => bar.unset_length(),
    }
    bar.set_position(view.done);
    bar.set_message(view.line);
}
