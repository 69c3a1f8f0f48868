//! The client side of the control socket, used by `launch ctl`, `launch ls` and the
//! launcher. Finds a run's socket through `<run dir>/control.path`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::control::protocol::{ControlBusy, ControlCommand, ControlRequest, ControlResponse};
use crate::control::server::ControlError;
use crate::control::socket_dir::recorded;
use crate::paths::RunPaths;

/// How long one request may take, busy answers and their retries included.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Pause before asking again after a busy answer.
const BUSY_RETRY: Duration = Duration::from_millis(100);

/// Sends `command` to the run of `paths`, through the socket it recorded.
pub fn send_to_run(
    paths: &RunPaths,
    command: ControlCommand,
    source: &str,
) -> Result<ControlResponse, ControlError> {
    let socket = recorded(paths).ok_or_else(|| ControlError::NoSocket {
        session: paths.session.clone(),
        path: paths.control_path_file(),
    })?;
    send(&socket, command, source)
}

/// Sends `command` to the socket at `socket`; a busy server is asked again until
/// [`ANSWER_WAIT`] has passed.
pub fn send(
    socket: &Path,
    command: ControlCommand,
    source: &str,
) -> Result<ControlResponse, ControlError> {
    let started = Instant::now();
    loop {
        match send_once(
            socket,
            command,
            source,
            ANSWER_WAIT.saturating_sub(started.elapsed()),
        ) {
            Err(ControlError::Busy { .. }) if started.elapsed() + BUSY_RETRY < ANSWER_WAIT => {
                std::thread::sleep(BUSY_RETRY);
            }
            other => return other,
        }
    }
}

fn send_once(
    socket: &Path,
    command: ControlCommand,
    source: &str,
    wait: Duration,
) -> Result<ControlResponse, ControlError> {
    let connect = |source| ControlError::Connect {
        path: socket.to_path_buf(),
        source,
    };
    let protocol = |message: String| ControlError::Protocol {
        path: socket.to_path_buf(),
        message,
    };
    let mut stream = UnixStream::connect(socket).map_err(connect)?;
    let wait = wait.max(Duration::from_millis(100));
    stream.set_read_timeout(Some(wait)).map_err(connect)?;
    stream.set_write_timeout(Some(wait)).map_err(connect)?;
    let request = ControlRequest {
        command,
        source: source.to_owned(),
    };
    let mut line = serde_json::to_string(&request).map_err(|e| protocol(e.to_string()))?;
    line.push('\n');
    // A server over its connection limit answers (busy) and closes without reading:
    // the write may fail while its answer waits to be read.
    let written = stream.write_all(line.as_bytes());
    let mut answer = String::new();
    let read = BufReader::new(stream).read_line(&mut answer);
    if let Ok(busy) = serde_json::from_str::<ControlBusy>(&answer) {
        return Err(ControlError::Busy {
            path: socket.to_path_buf(),
            message: busy.message,
        });
    }
    written.map_err(connect)?;
    read.map_err(connect)?;
    match serde_json::from_str::<ControlResponse>(&answer) {
        Ok(response) => Ok(response),
        Err(_) if answer.is_empty() => {
            Err(protocol("the connection closed without an answer".into()))
        }
        Err(err) => Err(protocol(err.to_string())),
    }
}
