//! Address helpers shared by the programs. All words are network byte order.
use podlock_common::{IpKey, AF_INET, AF_INET6};

/// 127.0.0.0/8 in network byte order, as a mask test on the first octet.
#[inline(always)]
pub fn is_loopback4(ip: u32) -> bool {
    u32::from_be(ip) >> 24 == 127
}

#[inline(always)]
pub fn v4(ip: u32) -> IpKey {
    IpKey {
        family: AF_INET,
        addr: [ip, 0, 0, 0],
    }
}

/// `::ffff:a.b.c.d`?
#[inline(always)]
pub fn is_v4_mapped(ip6: &[u32; 4]) -> bool {
    ip6[0] == 0 && ip6[1] == 0 && ip6[2] == 0xffffu32.to_be()
}

/// An IPv6 address as a key, with v4-mapped addresses normalised to IPv4.
#[inline(always)]
pub fn v6(ip6: [u32; 4]) -> IpKey {
    if is_v4_mapped(&ip6) {
        v4(ip6[3])
    } else {
        IpKey {
            family: AF_INET6,
            addr: ip6,
        }
    }
}

#[inline(always)]
pub fn is_loopback(ip: &IpKey) -> bool {
    if ip.family == AF_INET {
        is_loopback4(ip.addr[0]) || ip.addr[0] == 0
    } else {
        ip.addr[0] == 0
            && ip.addr[1] == 0
            && ip.addr[2] == 0
            && (ip.addr[3] == 1u32.to_be() || ip.addr[3] == 0)
    }
}

pub const LOCALHOST4: u32 = 0x7f00_0001u32.to_be();
pub const LOCALHOST6: [u32; 4] = [0, 0, 0, 1u32.to_be()];
pub const LOCALHOST4_MAPPED: [u32; 4] = [0, 0, 0xffffu32.to_be(), 0x7f00_0001u32.to_be()];

/// Stores an IPv6 address into a context field one 32-bit word at a time: the verifier
/// rejects the block copy the compiler would otherwise emit through a derived ctx pointer.
#[inline(always)]
pub fn write_ip6(field: &mut [u32; 4], ip: &[u32; 4]) {
    for i in 0..4 {
        // SAFETY: `field` is a valid, aligned context field; volatile keeps one store each.
        unsafe { core::ptr::write_volatile(&mut field[i], ip[i]) };
    }
}
