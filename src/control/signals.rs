//! Signals become control requests: SIGINT/SIGUSR1 pause, SIGTERM stops, and repeated
//! interrupts escalate (second: stop now, killing agent process groups; third: exit).
//! The decision is a pure function; a signal-hook thread feeds it.

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use tokio::sync::mpsc;

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

/// Starts the signal thread; actions arrive on the returned channel.
pub fn watch_signals() -> std::io::Result<mpsc::UnboundedReceiver<(Sig, SignalAction)>> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR1])?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("orch-signals".into())
        .spawn(move || {
            let mut interrupts = 0;
            for raw in signals.forever() {
                let sig = match raw {
                    SIGINT => Sig::Int,
                    SIGTERM => Sig::Term,
                    _ => Sig::Usr1,
                };
                let action = on_signal(sig, interrupts);
                if sig != Sig::Usr1 {
                    interrupts += 1;
                }
                if tx.send((sig, action)).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
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
