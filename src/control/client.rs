//! The client side of the control socket, used by `launch ctl`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::control::protocol::{ControlCommand, ControlRequest, ControlResponse};
use crate::control::server::ControlError;

pub fn send(
    socket: &Path,
    command: ControlCommand,
    source: &str,
) -> Result<ControlResponse, ControlError> {
    let connect = |source| ControlError::Connect {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(connect)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(connect)?;
    let request = ControlRequest {
        command,
        source: source.to_owned(),
    };
    let mut line = serde_json::to_string(&request).map_err(|e| ControlError::Protocol {
        path: socket.to_path_buf(),
        message: e.to_string(),
    })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(connect)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(connect)?;
    serde_json::from_str(&answer).map_err(|e| ControlError::Protocol {
        path: socket.to_path_buf(),
        message: e.to_string(),
    })
}
