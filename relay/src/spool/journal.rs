//! The journal's record framing: `"OXJ1" | kind u8 | length u32 | crc32 u32 |
//! payload`, the CRC (IEEE, as in zlib) over kind, length and payload.
//!
//! Parsing trusts nothing: a length is checked against the bound and the bytes
//! that are there before it is used, and a record whose magic, length or CRC
//! is wrong is skipped by searching for the next magic, so that one torn or
//! corrupt record never hides the records after it.

pub const MAGIC: [u8; 4] = *b"OXJ1";
pub const HEADER: usize = 13;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// An [`ox_push_record::Item`].
    Item = 1,
    /// The 16-byte id of an item that is sent or dropped.
    Done = 2,
}

pub fn encode(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_be_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind as u8]);
    crc.update(&len);
    crc.update(payload);
    out.extend_from_slice(&MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out.extend_from_slice(payload);
}

/// What parsing a journal found.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    pub records: Vec<(Kind, &'a [u8])>,
    /// Offset and reason of each record skipped as corrupt.
    pub skipped: Vec<(usize, String)>,
    /// Offset of an incomplete record at the end (a write cut by a crash).
    pub torn_tail: Option<usize>,
}

/// A valid record at `pos`: its kind, payload and total length.
fn record_at(buf: &[u8], pos: usize, max_payload: usize) -> Result<(Kind, &[u8], usize), String> {
    let rest = &buf[pos..];
    if rest.len() < HEADER {
        return Err("incomplete header".into());
    }
    if rest[..4] != MAGIC {
        return Err("bad magic".into());
    }
    let kind = match rest[4] {
        1 => Kind::Item,
        2 => Kind::Done,
        k => return Err(format!("unknown kind {k}")),
    };
    let len = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) as usize;
    if len > max_payload {
        return Err(format!("length {len} over the bound {max_payload}"));
    }
    if rest.len() - HEADER < len {
        return Err("incomplete payload".into());
    }
    let payload = &rest[HEADER..HEADER + len];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&rest[4..9]);
    crc.update(payload);
    let want = u32::from_be_bytes([rest[9], rest[10], rest[11], rest[12]]);
    if crc.finalize() != want {
        return Err("checksum mismatch".into());
    }
    Ok((kind, payload, HEADER + len))
}

fn next_magic(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(MAGIC.len())
        .position(|w| w == MAGIC)
        .map(|p| p + from)
}

pub fn parse(buf: &[u8], max_payload: usize) -> Parsed<'_> {
    let mut out = Parsed::default();
    let mut pos = 0;
    while pos < buf.len() {
        match record_at(buf, pos, max_payload) {
            Ok((kind, payload, len)) => {
                out.records.push((kind, payload));
                pos += len;
            }
            Err(why) => match next_magic(buf, pos + 1) {
                Some(next) => {
                    out.skipped.push((pos, why));
                    pos = next;
                }
                None => {
                    if why.starts_with("incomplete") {
                        out.torn_tail = Some(pos);
                    } else {
                        out.skipped.push((pos, why));
                    }
                    break;
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(payloads: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in payloads {
            encode(Kind::Done, p, &mut v);
        }
        v
    }

    #[test]
    fn round_trip() {
        let buf = journal(&[b"a", b"bb", b""]);
        let p = parse(&buf, 100);
        let got: Vec<_> = p.records.iter().map(|(_, x)| *x).collect();
        assert_eq!(got, vec![&b"a"[..], b"bb", b""]);
        assert!(p.skipped.is_empty() && p.torn_tail.is_none());
    }

    #[test]
    fn a_corrupt_record_hides_nothing_after_it() {
        let mut buf = journal(&[b"first", b"second", b"third"]);
        let second = HEADER + 5;
        buf[second + HEADER] ^= 0xff; // payload byte of "second"
        let p = parse(&buf, 100);
        let got: Vec<_> = p.records.iter().map(|(_, x)| *x).collect();
        assert_eq!(got, vec![&b"first"[..], b"third"]);
        assert_eq!(p.skipped.len(), 1);
        assert!(p.skipped[0].1.contains("checksum"), "{:?}", p.skipped);
    }

    #[test]
    fn a_crafted_length_is_bounded_and_skipped() {
        let mut buf = journal(&[b"first", b"second", b"third"]);
        let second = HEADER + 5;
        buf[second + 5..second + 9].copy_from_slice(&u32::MAX.to_be_bytes());
        let p = parse(&buf, 1 << 20);
        assert_eq!(p.records.len(), 2);
        assert!(p.skipped[0].1.contains("over the bound"));
    }

    #[test]
    fn a_torn_tail_is_reported_and_ignored() {
        let mut buf = journal(&[b"first", b"second"]);
        buf.truncate(buf.len() - 3);
        let p = parse(&buf, 100);
        assert_eq!(p.records.len(), 1);
        assert_eq!(p.torn_tail, Some(HEADER + 5));
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 12345u64;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|i| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    if i % 17 == 0 {
                        b'O'
                    } else {
                        (state >> 33) as u8
                    }
                })
                .collect();
            let _ = parse(&buf, 64);
        }
    }
}
