//! Byte-exact copying between two TCP connections, both directions at once.
//!
//! A FIN on one side becomes `shutdown(SHUT_WR)` on the other, so half-closed protocols work.
//! A reset or error on either side resets the other (never a silent hang).
use std::io;

use nix::sys::socket::{setsockopt, sockopt::Linger};
use tokio::net::TcpStream;

/// Per-direction buffer; allocated only while a connection is alive.
const BUF: usize = 64 * 1024;

/// Bytes moved (a → b, b → a) and the error that ended the relay, if any.
pub struct Relayed {
    pub a_to_b: u64,
    pub b_to_a: u64,
    pub error: Option<io::Error>,
}

pub async fn relay(mut a: TcpStream, mut b: TcpStream) -> Relayed {
    match tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, BUF, BUF).await {
        Ok((a_to_b, b_to_a)) => Relayed {
            a_to_b,
            b_to_a,
            error: None,
        },
        Err(error) => {
            reset(&a);
            reset(&b);
            Relayed {
                a_to_b: 0,
                b_to_a: 0,
                error: Some(error),
            }
        }
    }
}

/// Makes the coming close send RST instead of FIN.
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
