//! A misbehaving LDAP server for tests: raw BER over TCP on 127.0.0.1. It accepts any simple
//! bind and answers each search with crafted entries whose DN and attribute bytes are whatever
//! the test gives (not UTF-8, not a DN), echoing the paged-results control with an empty cookie.
//! Users are served for a base under `ou=People`, groups for one under `ou=Groups`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// An entry as sent: raw DN bytes and raw attribute names and values.
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub dn: Vec<u8>,
    pub attrs: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
}

impl RawEntry {
    pub fn new(dn: &[u8]) -> RawEntry {
        RawEntry {
            dn: dn.to_vec(),
            attrs: Vec::new(),
        }
    }

    pub fn attr(mut self, name: &[u8], values: &[&[u8]]) -> RawEntry {
        self.attrs
            .push((name.to_vec(), values.iter().map(|v| v.to_vec()).collect()));
        self
    }
}

/// The server; it runs until the test process ends.
pub struct BadLdap {
    pub port: u16,
    /// How long each search waits after its first entry before it sends the rest.
    pub pause: Arc<Mutex<std::time::Duration>>,
    /// Search bases asked for, in order.
    pub searches: Arc<Mutex<Vec<String>>>,
}

const PAGED_OID: &[u8] = b"1.2.840.113556.1.4.319";

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn octets(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

fn integer(tag: u8, v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut i = 0;
    while i < 7
        && ((bytes[i] == 0 && bytes[i + 1] & 0x80 == 0)
            || (bytes[i] == 0xff && bytes[i + 1] & 0x80 != 0))
    {
        i += 1;
    }
    tlv(tag, &bytes[i..])
}

/// One TLV from a slice: (tag, content, rest).
fn split_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let (len, rest) = if len < 0x80 {
        (len as usize, rest)
    } else {
        let n = (len & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (l, rest) = rest.split_at(n);
        (l.iter().fold(0usize, |a, &b| a << 8 | b as usize), rest)
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Reads one whole message (a SEQUENCE) from the socket.
fn read_message(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).ok()?;
    let mut msg = head.to_vec();
    let len = if head[1] < 0x80 {
        head[1] as usize
    } else {
        let n = (head[1] & 0x7f) as usize;
        let mut l = vec![0u8; n];
        s.read_exact(&mut l).ok()?;
        msg.extend_from_slice(&l);
        l.iter().fold(0usize, |a, &b| a << 8 | b as usize)
    };
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    msg.extend(body);
    Some(msg)
}

fn message(id: &[u8], op: &[u8], controls: Option<&[u8]>) -> Vec<u8> {
    let mut c = tlv(0x02, id);
    c.extend_from_slice(op);
    if let Some(ctl) = controls {
        c.extend(tlv(0xa0, ctl));
    }
    tlv(0x30, &c)
}

fn result(tag: u8) -> Vec<u8> {
    let mut c = integer(0x0a, 0);
    c.extend(octets(b""));
    c.extend(octets(b""));
    tlv(tag, &c)
}

fn entry(e: &RawEntry) -> Vec<u8> {
    let mut list = Vec::new();
    for (name, values) in &e.attrs {
        let vals: Vec<u8> = values.iter().flat_map(|v| octets(v)).collect();
        let mut pa = octets(name);
        pa.extend(tlv(0x31, &vals));
        list.extend(tlv(0x30, &pa));
    }
    let mut c = octets(&e.dn);
    c.extend(tlv(0x30, &list));
    tlv(0x64, &c)
}

/// Whether the request's controls (the content of `[0]`) ask for paged results.
fn asks_paged(controls: &[u8]) -> bool {
    let mut rest = controls;
    while let Some((_, ctl, next)) = split_tlv(rest) {
        if let Some((_, oid, _)) = split_tlv(ctl)
            && oid == PAGED_OID
        {
            return true;
        }
        rest = next;
    }
    false
}

fn serve(
    mut s: TcpStream,
    users: &[RawEntry],
    groups: &[RawEntry],
    searches: &Mutex<Vec<String>>,
    pause: &Mutex<std::time::Duration>,
) {
    while let Some(msg) = read_message(&mut s) {
        let Some((_, body, _)) = split_tlv(&msg) else {
            return;
        };
        let Some((_, id, rest)) = split_tlv(body) else {
            return;
        };
        let Some((op, op_body, rest)) = split_tlv(rest) else {
            return;
        };
        let controls = split_tlv(rest)
            .filter(|(t, _, _)| *t == 0xa0)
            .map(|(_, c, _)| c);
        let mut out = Vec::new();
        match op {
            // BindRequest: any credentials
            0x60 => out.extend(message(id, &result(0x61), None)),
            // SearchRequest
            0x63 => {
                let base = split_tlv(op_body)
                    .map(|(_, b, _)| String::from_utf8_lossy(b).to_lowercase())
                    .unwrap_or_default();
                searches.lock().unwrap().push(base.clone());
                let entries = if base.contains("ou=people") {
                    users
                } else if base.contains("ou=groups") {
                    groups
                } else {
                    &[]
                };
                let pause = *pause.lock().unwrap();
                for (i, e) in entries.iter().enumerate() {
                    out.extend(message(id, &entry(e), None));
                    if i == 0 && !pause.is_zero() {
                        if s.write_all(&out).is_err() {
                            return;
                        }
                        out.clear();
                        std::thread::sleep(pause);
                    }
                }
                let ctl = controls.filter(|c| asks_paged(c)).map(|_| {
                    let value = tlv(0x30, &[integer(0x02, 0), octets(b"")].concat());
                    tlv(0x30, &[octets(PAGED_OID), octets(&value)].concat())
                });
                out.extend(message(id, &result(0x65), ctl.as_deref()));
            }
            // UnbindRequest, or anything else (StartTLS...): hang up
            _ => return,
        }
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

impl BadLdap {
    pub fn start(users: Vec<RawEntry>, groups: Vec<RawEntry>) -> BadLdap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        let searches = Arc::new(Mutex::new(Vec::new()));
        let log = searches.clone();
        let pause = Arc::new(Mutex::new(std::time::Duration::ZERO));
        let wait = pause.clone();
        let users = Arc::new(users);
        let groups = Arc::new(groups);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (u, g, l, w) = (users.clone(), groups.clone(), log.clone(), wait.clone());
                std::thread::spawn(move || serve(conn, &u, &g, &l, &w));
            }
        });
        BadLdap {
            port,
            searches,
            pause,
        }
    }
}
