//! Server-side HTTP/2 settings and responses for HBONE.
use bytes::Bytes;
use h2::server::{Builder, SendResponse};
use http::{Response, StatusCode};

use super::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};

/// Most streams one client connection may have open at once.
const MAX_STREAMS: u32 = 1000;

pub fn builder() -> Builder {
    let mut b = Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(MAX_STREAMS);
    b
}

/// Answers a CONNECT with an error status and ends the stream.
pub fn refuse(respond: &mut SendResponse<Bytes>, status: StatusCode) {
    let response = Response::builder().status(status).body(());
    if let Ok(response) = response {
        let _ = respond.send_response(response, true);
    }
}

/// Accepts a CONNECT: 200, and the stream stays open for data.
pub fn accept(respond: &mut SendResponse<Bytes>) -> Result<h2::SendStream<Bytes>, h2::Error> {
    let response = Response::builder()
        .status(StatusCode::OK)
        .body(())
        .expect("static response");
    respond.send_response(response, false)
}
