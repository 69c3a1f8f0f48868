//! `launch status`: the board of a run, printed once, as JSON, or (`--watch`) as a
//! terminal UI that redraws when the run changes and takes `p`, `r`, `s`, `q`.
//!
//! A running run answers through its control socket (`status`, then `watch`, which
//! pushes each change, so an idle board sleeps); any other run is read from its audit
//! store.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::audit::AuditTarget;
use crate::audit::reader::AuditReader;
use crate::audit::report::load_report;
use crate::board::model::Board;
use crate::board::render::{render, to_text};
use crate::cli::StatusArgs;
use crate::config::resolve::project_root;
use crate::control::client::send_to_run;
use crate::control::protocol::{ControlCommand, ControlRequest};
use crate::control::socket_dir::recorded;
use crate::events::wire::millis;
use crate::launcher::error::LaunchError;
use crate::launcher::run_claim::{RunLiveness, liveness};
use crate::paths::{RunPaths, default_audit_path, list_sessions};

const KEYS: &str = "p pause · r resume · s stop · q quit";

pub fn status(args: &StatusArgs, cwd: &Path) -> Result<ExitCode, LaunchError> {
    let root = project_root(args.project_root.as_deref(), cwd)?;
    let session = match &args.session {
        Some(session) => session.clone(),
        None => list_sessions(&root)
            .into_iter()
            .next()
            .ok_or_else(|| LaunchError::NoRun {
                root: root.display().to_string(),
            })?,
    };
    let paths = RunPaths::new(&root, &session);
    let board = load(&paths)?;
    if args.json || !args.watch {
        let text = if args.json {
            let mut json = serde_json::to_string(&board).unwrap_or_default();
            json.push('\n');
            json
        } else {
            let width = ratatui::crossterm::terminal::size()
                .ok()
                .filter(|_| std::io::stdout().is_terminal())
                .map_or(120, |(w, _)| w);
            to_text(&board, now_ms(), width)
        };
        return match std::io::stdout().write_all(text.as_bytes()) {
            // A reader that stopped early (`| head`) is not a failure.
            Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(LaunchError::Output { source: err })
            }
            _ => Ok(ExitCode::SUCCESS),
        };
    }
    if !std::io::stdout().is_terminal() {
        return Err(LaunchError::Config(crate::config::ConfigError::Invalid(
            "`launch status --watch` needs a terminal; without --watch it prints the board once"
                .into(),
        )));
    }
    watch(&paths, board)?;
    Ok(ExitCode::SUCCESS)
}

/// The board of the run at `paths`: from the run if it answers, else from the store.
fn load(paths: &RunPaths) -> Result<Board, LaunchError> {
    if let Ok(response) = send_to_run(paths, ControlCommand::Status, "board")
        && let Some(board) = response.board
    {
        return Ok(*board);
    }
    stored(paths)
}

fn stored(paths: &RunPaths) -> Result<Board, LaunchError> {
    let target = AuditTarget::Local(default_audit_path(&paths.project_root));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| LaunchError::Board {
            message: err.to_string(),
        })?;
    let report = runtime
        .block_on(async {
            let reader = AuditReader::open(&target).await?;
            load_report(&reader, &paths.session).await
        })
        .map_err(|err| LaunchError::Board {
            message: format!(
                "run {} is not running and its audit store cannot say more: {err}",
                paths.session
            ),
        })?;
    let mut board = Board::from_report(&report);
    if board.finished_ms.is_none() && !matches!(liveness(paths), RunLiveness::Live(_)) {
        board.state = "crashed".into();
    }
    Ok(board)
}

enum Message {
    Board(Box<Board>),
    /// The run closed the watch connection: it ended.
    Ended,
    Key(event::KeyEvent),
    Redraw,
}

fn watch(paths: &RunPaths, mut board: Board) -> Result<(), LaunchError> {
    let (tx, rx) = mpsc::channel();
    if board.live {
        follow(paths, tx.clone());
    }
    let keys = tx;
    std::thread::Builder::new()
        .name("board-keys".into())
        .spawn(move || {
            loop {
                let message = match event::read() {
                    Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => Message::Key(key),
                    Ok(Event::Resize(..)) => Message::Redraw,
                    Ok(_) => continue,
                    Err(_) => return,
                };
                if keys.send(message).is_err() {
                    return;
                }
            }
        })
        .map_err(|err| LaunchError::Board {
            message: err.to_string(),
        })?;
    let mut terminal = ratatui::init();
    let mut note = String::new();
    let mut confirm = false;
    let result = loop {
        let footer = if confirm {
            "stop the run? y stops it, any other key does not".to_owned()
        } else if note.is_empty() {
            KEYS.to_owned()
        } else {
            format!("{note} · {KEYS}")
        };
        if let Err(err) = terminal.draw(|frame| {
            let area = frame.area();
            render(&board, now_ms(), &footer, area, frame.buffer_mut());
        }) {
            break Err(LaunchError::Board {
                message: err.to_string(),
            });
        }
        // Elapsed times tick once a second while an agent works; otherwise the board
        // sleeps until the run or a key wakes it.
        let message = if board.is_active() {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(message) => message,
                Err(mpsc::RecvTimeoutError::Timeout) => Message::Redraw,
                Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
            }
        } else {
            match rx.recv() {
                Ok(message) => message,
                Err(_) => break Ok(()),
            }
        };
        match message {
            Message::Board(next) => board = *next,
            // The run sent its last board (finished) before closing; without it, the
            // run went away under the board: read how the store left it.
            Message::Ended if board.live => {
                if let Ok(last) = stored(paths) {
                    board.settle(&last);
                }
                board.live = false;
            }
            Message::Ended => {}
            Message::Redraw => {}
            Message::Key(key) => {
                let ctrl_c =
                    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
                if confirm {
                    confirm = false;
                    if key.code == KeyCode::Char('y') {
                        note = act(paths, &board, ControlCommand::Stop);
                    } else {
                        note = "not stopped".into();
                    }
                    continue;
                }
                match key.code {
                    _ if ctrl_c => break Ok(()),
                    KeyCode::Char('q') | KeyCode::Esc => break Ok(()),
                    KeyCode::Char('p') => note = act(paths, &board, ControlCommand::Pause),
                    KeyCode::Char('r') => note = act(paths, &board, ControlCommand::Resume),
                    KeyCode::Char('s') if board.live => confirm = true,
                    KeyCode::Char('s') => note = "the run is not running".into(),
                    _ => {}
                }
            }
        }
    };
    ratatui::restore();
    result
}

/// Sends `command` to the run; the answer, for the board's bottom line.
fn act(paths: &RunPaths, board: &Board, command: ControlCommand) -> String {
    if !board.live {
        return "the run is not running".into();
    }
    match send_to_run(paths, command, "board") {
        Ok(response) => crate::control::protocol::clean_text(&response.message, 120),
        Err(err) => crate::control::protocol::clean_text(&err.to_string(), 120),
    }
}

/// Reads the boards the run pushes on a `watch` connection, on a thread of its own.
fn follow(paths: &RunPaths, tx: mpsc::Sender<Message>) {
    let Some(socket) = recorded(paths) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("board-watch".into())
        .spawn(move || {
            let read = || -> std::io::Result<()> {
                let mut stream = UnixStream::connect(&socket)?;
                let request = ControlRequest {
                    command: ControlCommand::Watch,
                    source: "board".into(),
                };
                let mut line = serde_json::to_string(&request)?;
                line.push('\n');
                stream.write_all(line.as_bytes())?;
                for line in BufReader::new(stream).lines() {
                    let board: Board = serde_json::from_str(&line?)?;
                    if tx.send(Message::Board(Box::new(board))).is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            };
            let _ = read();
            let _ = tx.send(Message::Ended);
        });
}

fn now_ms() -> u64 {
    millis(SystemTime::now())
}
