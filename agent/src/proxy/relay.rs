//! Byte-exact copying between two byte streams (TCP or HBONE), both directions at once.
//!
//! A FIN (or END_STREAM) on one side becomes a half-close on the other, so half-closed
//! protocols work. A reset or error on either side resets the other: never a silent hang.
use std::io;

use nix::sys::socket::{setsockopt, sockopt::Linger};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

use crate::hbone::H2Stream;

/// Per-direction buffer; allocated only while a connection is alive.
const BUF: usize = 64 * 1024;

/// A stream that can be aborted so the peer sees a reset rather than a clean close.
pub trait Abort {
    fn abort(&mut self);
}

impl Abort for TcpStream {
    fn abort(&mut self) {
        reset(self);
    }
}

impl Abort for H2Stream {
    fn abort(&mut self) {
        self.reset();
    }
}

/// Bytes moved (a → b, b → a) and the error that ended the relay, if any.
pub struct Relayed {
    pub a_to_b: u64,
    pub b_to_a: u64,
    pub error: Option<io::Error>,
}

/// Copies until both directions end, either side fails, or `cancel` fires (the pod was
/// unenrolled, the agent is stopping, or policy now forbids the connection): then both
/// sides are reset.
pub async fn relay<A, B>(mut a: A, mut b: B, cancel: &CancellationToken) -> Relayed
where
    A: AsyncRead + AsyncWrite + Unpin + Abort,
    B: AsyncRead + AsyncWrite + Unpin + Abort,
{
    let copied = tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, BUF, BUF) => r,
        _ = cancel.cancelled() => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed by the agent")),
    };
    match copied {
        Ok((a_to_b, b_to_a)) => Relayed {
            a_to_b,
            b_to_a,
            error: None,
        },
        Err(error) => {
            a.abort();
            b.abort();
            Relayed {
                a_to_b: 0,
                b_to_a: 0,
                error: Some(error),
            }
        }
    }
}

/// Makes the coming close of a TCP socket send RST instead of FIN.
pub fn reset(stream: &TcpStream) {
    let _ = setsockopt(
        stream,
        Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    );
}
