//! Real TCP for the tests: servers that run inside a pod, clients that dial from one.
use std::{
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use nix::poll::{poll, PollFd, PollFlags};
use std::os::fd::AsFd;

use crate::pod::Pod;

/// Longest any single read or write may block before a test calls it a hang.
pub const HANG: Duration = Duration::from_secs(15);

/// An echo server in a pod: optionally sends a banner first (server-speaks-first), then
/// echoes until the client half-closes, then half-closes itself.
pub struct EchoServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(pod: &Pod, port: u16, banner: Option<&'static [u8]>) -> Self {
        Self::start_at(pod, SocketAddr::from((pod.ip, port)), banner)
    }

    /// An echo server on a given address of the pod (e.g. its IPv6 one).
    pub fn start_at(pod: &Pod, addr: SocketAddr, banner: Option<&'static [u8]>) -> Self {
        let listener = pod.run(|| TcpListener::bind(addr).expect("bind echo server"));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                // Wait for a connection, or 100 ms to look at the stop flag again.
                let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
                if poll(&mut fds, 100u16).unwrap_or(0) == 0 {
                    continue;
                }
                let Ok((stream, _)) = listener.accept() else {
                    break;
                };
                std::thread::spawn(move || {
                    let _ = echo(stream, banner);
                });
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

fn echo(mut stream: TcpStream, banner: Option<&[u8]>) -> io::Result<()> {
    stream.set_read_timeout(Some(HANG))?;
    if let Some(b) = banner {
        stream.write_all(b)?;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n])?;
    }
    stream.shutdown(Shutdown::Write)
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Dials `addr` from inside `pod` (the socket belongs to the pod's netns).
pub fn connect(pod: &Pod, addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = pod.run(|| TcpStream::connect_timeout(&addr, HANG))?;
    stream.set_read_timeout(Some(HANG))?;
    stream.set_write_timeout(Some(HANG))?;
    Ok(stream)
}

/// Sends `data`, half-closes, and returns everything the server sent until it closed.
/// Writing and reading run at once, so large transfers do not deadlock on full buffers.
pub fn exchange(stream: TcpStream, data: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut writer = stream.try_clone()?;
    let sender = std::thread::spawn(move || -> io::Result<()> {
        writer.write_all(&data)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut reader = stream;
    let mut received = Vec::new();
    let read = reader.read_to_end(&mut received);
    sender.join().expect("sender thread")?;
    read?;
    Ok(received)
}

/// Deterministic pseudo-random bytes (xorshift), so a corrupted byte cannot go unnoticed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// FNV-1a, to compare large transfers without printing them.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
