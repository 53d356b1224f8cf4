//! Packet capture on a link with tcpdump, and a small pcap reader that yields the TCP
//! segments, so a test can show what actually crossed the wire.
use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context, Result};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// One TCP segment seen on the wire.
#[derive(Debug, Clone)]
pub struct Segment {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: Vec<u8>,
}

pub struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Starts tcpdump on `iface` inside netns `netns`, writing to `file`; returns once it
    /// is listening.
    pub fn start(netns: &str, iface: &str, file: &Path) -> Result<Self> {
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["--", "tcpdump", "-i", iface, "-s", "0", "-U", "-n", "-w"])
            .arg(file)
            .arg("tcp")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start tcpdump (is it installed?)")?;
        let stderr = child.stderr.take().context("tcpdump stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("listening on") => break,
                Some(Ok(_)) => continue,
                _ => {
                    let _ = child.kill();
                    bail!("tcpdump exited before it was listening");
                }
            }
        }
        Ok(Self {
            child,
            file: file.to_path_buf(),
        })
    }

    /// Stops tcpdump (flushing its file) and returns every TCP segment it saw.
    pub fn stop(mut self) -> Result<Vec<Segment>> {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        self.child.wait()?;
        let data = std::fs::read(&self.file)?;
        parse_pcap(&data)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn u16be(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Classic pcap, Ethernet link type, IPv4/TCP (what tcpdump writes on a veth).
pub fn parse_pcap(data: &[u8]) -> Result<Vec<Segment>> {
    if data.len() < 24 {
        bail!("pcap file too short");
    }
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        _ => bail!("not a pcap file (magic {magic:#x})"),
    };
    let u32at = |at: usize| {
        let b = [data[at], data[at + 1], data[at + 2], data[at + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    if u32at(20) != 1 {
        bail!("unexpected link type {}", u32at(20));
    }
    let mut segments = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let caplen = u32at(at + 8) as usize;
        let frame = &data[at + 16..(at + 16 + caplen).min(data.len())];
        at += 16 + caplen;
        if frame.len() < 14 + 20 || u16be(frame, 12) != 0x0800 {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16be(ip, 2)).min(ip.len());
        if ip[9] != 6 || total < ihl + 20 {
            continue;
        }
        let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let tcp = &ip[ihl..total];
        let data_off = usize::from(tcp[12] >> 4) * 4;
        if tcp.len() < data_off {
            continue;
        }
        segments.push(Segment {
            src: SocketAddrV4::new(src_ip, u16be(tcp, 0)),
            dst: SocketAddrV4::new(dst_ip, u16be(tcp, 2)),
            payload: tcp[data_off..].to_vec(),
        });
    }
    Ok(segments)
}
