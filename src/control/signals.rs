//! Signals become control requests: SIGINT/SIGUSR1 pause, SIGTERM stops, and repeated
//! interrupts escalate (second: stop now, killing agent process groups; third: exit).
//! The decision is a pure function; a signal-hook thread feeds it to the dispatcher.

use crate::orchestrator::RunLink;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sig {
    Int,
    Term,
    Usr1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalAction {
    Pause,
    Stop,
    Exit,
}

/// `interrupts` counts earlier SIGINT/SIGTERM of this run.
pub fn on_signal(sig: Sig, interrupts: u32) -> SignalAction {
    match (sig, interrupts) {
        (Sig::Usr1, _) => SignalAction::Pause,
        (Sig::Int, 0) => SignalAction::Pause,
        (Sig::Term, 0) | (_, 1) => SignalAction::Stop,
        _ => SignalAction::Exit,
    }
}

/// Starts the signal thread: pause and stop go to the run's dispatcher; the third
/// interrupt exits here and now (130), whatever the dispatcher or the sinks are doing.
pub fn watch_signals(link: RunLink) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR1])?;
    std::thread::Builder::new()
        .name("orch-signals".into())
        .spawn(move || {
            let mut interrupts = 0;
            for raw in signals.forever() {
                let (sig, name) = match raw {
                    SIGINT => (Sig::Int, "SIGINT"),
                    SIGTERM => (Sig::Term, "SIGTERM"),
                    _ => (Sig::Usr1, "SIGUSR1"),
                };
                let action = on_signal(sig, interrupts);
                if sig != Sig::Usr1 {
                    interrupts += 1;
                }
                if action == SignalAction::Exit {
                    eprintln!("{name} again: exiting now");
                    std::process::exit(130);
                }
                link.signal(action, name);
            }
        })?;
    Ok(())
}

/// Resolves at the first SIGINT or SIGTERM (for commands that only need to end
/// cleanly, like `orch-audit events --follow`). Never resolves if signals cannot be
/// watched.
pub async fn interrupted() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let watched = Signals::new([SIGINT, SIGTERM]).and_then(|mut signals| {
        std::thread::Builder::new()
            .name("orch-interrupt".into())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    let _ = tx.send(());
                }
            })
    });
    match watched {
        Ok(_) => {
            let _ = rx.await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupts_escalate_pause_stop_exit() {
        assert_eq!(on_signal(Sig::Int, 0), SignalAction::Pause);
        assert_eq!(on_signal(Sig::Int, 1), SignalAction::Stop);
        assert_eq!(on_signal(Sig::Int, 2), SignalAction::Exit);
        assert_eq!(on_signal(Sig::Term, 0), SignalAction::Stop);
        assert_eq!(on_signal(Sig::Term, 1), SignalAction::Stop);
        assert_eq!(on_signal(Sig::Term, 2), SignalAction::Exit);
        assert_eq!(
            on_signal(Sig::Usr1, 5),
            SignalAction::Pause,
            "SIGUSR1 always means pause"
        );
    }
}
