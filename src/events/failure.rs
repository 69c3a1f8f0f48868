//! A sink that could not write what it must: the run's one signal of a fatal write
//! failure (a full disk, a vanished directory, an audit store that cannot commit).
//!
//! Owns `SinkFailure` and the watch channel that carries the first one to whoever
//! subscribes (`EventBus::failures`, `SinkThread::failures`). Does not decide what the
//! run does about it (the launcher and the orchestrator do).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

/// What a sink failed to write, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkFailure {
    /// The sink's name (`logs`, `audit`, …).
    pub sink: String,
    /// The file it could not write, when there is one.
    pub path: Option<PathBuf>,
    /// The OS (or store) error.
    pub message: String,
}

impl std::fmt::Display for SinkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(path) => write!(f, "failed to write `{}`: {}", path.display(), self.message),
            None => write!(f, "the {} sink failed: {}", self.sink, self.message),
        }
    }
}

impl std::error::Error for SinkFailure {}

impl SinkFailure {
    /// What a sink's error says: the file and OS error when the sink wrapped them with
    /// `write_error`, else the error's text.
    pub fn from_io(sink: &str, err: &io::Error) -> SinkFailure {
        if let Some(inner) = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<SinkFailure>())
        {
            return SinkFailure {
                sink: sink.to_owned(),
                ..inner.clone()
            };
        }
        SinkFailure {
            sink: sink.to_owned(),
            path: None,
            message: err.to_string(),
        }
    }
}

/// An I/O error on `path`, carrying the path so the failure names the file.
pub fn write_error(path: &Path, err: io::Error) -> io::Error {
    if err.get_ref().is_some_and(|inner| inner.is::<SinkFailure>()) {
        return err;
    }
    io::Error::new(
        err.kind(),
        SinkFailure {
            sink: String::new(),
            path: Some(path.to_path_buf()),
            message: err.to_string(),
        },
    )
}

/// Where failures are reported; keeps the first one. Cheap to clone: the sink thread
/// and the audit writer's own thread report into the same channel.
#[derive(Clone, Debug)]
pub struct FailureReporter {
    tx: Arc<watch::Sender<Option<SinkFailure>>>,
}

impl Default for FailureReporter {
    fn default() -> Self {
        FailureReporter {
            tx: Arc::new(watch::channel(None).0),
        }
    }
}

impl FailureReporter {
    /// Records `failure` unless one was recorded before; true if it was the first.
    pub fn report(&self, failure: SinkFailure) -> bool {
        self.tx.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(failure);
            true
        })
    }

    /// A receiver that sees the first failure (at once if it already happened).
    pub fn subscribe(&self) -> watch::Receiver<Option<SinkFailure>> {
        self.tx.subscribe()
    }

    /// The first failure so far.
    pub fn first(&self) -> Option<SinkFailure> {
        self.tx.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_error_names_the_file_and_keeps_its_kind() {
        let err = write_error(Path::new("/r/logs/a.log"), io::Error::from_raw_os_error(28));
        assert_eq!(err.raw_os_error(), None);
        let failure = SinkFailure::from_io("logs", &err);
        assert_eq!(failure.sink, "logs");
        assert!(
            failure
                .to_string()
                .starts_with("failed to write `/r/logs/a.log`: No space left on device"),
            "{failure}"
        );
        let plain = SinkFailure::from_io("audit", &io::Error::other("gone"));
        assert_eq!(plain.to_string(), "the audit sink failed: gone");
    }

    #[test]
    fn the_reporter_keeps_the_first_failure() {
        let reporter = FailureReporter::default();
        let rx = reporter.subscribe();
        let one = SinkFailure {
            sink: "logs".into(),
            path: None,
            message: "one".into(),
        };
        assert!(reporter.report(one.clone()));
        assert!(!reporter.report(SinkFailure {
            message: "two".into(),
            ..one.clone()
        }));
        assert_eq!(rx.borrow().as_ref(), Some(&one));
    }
}
