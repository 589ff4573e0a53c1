//! Frames on the relay socket.
//!
//! Every frame is a 12-byte header, `"OXPR" | version u8 | kind u8 | 0u16 |
//! payload length u32` (big-endian), then the payload. The plugin sends
//! `Notify` (and `Report`); the relay answers every `Notify` with one `Ack`, in
//! order, once the notification is in its journal (or refused, with the reason).
//! `ox-push-stats` sends `StatsRequest` and gets `Stats`. A peer that breaks the
//! protocol gets one `Error` frame naming what was wrong, and the connection is
//! closed.

use crate::item::Item;
use crate::wire::{put_str16, DecodeError, Reader};

pub const MAGIC: [u8; 4] = *b"OXPR";
/// The protocol version this build speaks. A peer with another version gets an
/// `Error` that says so (install the plugin and the relay from one build).
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 12;
/// No payload is ever longer than this (a relay may set a lower bound).
pub const MAX_PAYLOAD: usize = 4 * 1024 * 1024;
/// Longest text in an `Ack` refusal or an `Error`.
const MAX_TEXT: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Notify = 1,
    Ack = 2,
    Report = 3,
    StatsRequest = 4,
    Stats = 5,
    Error = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Notify,
            2 => Kind::Ack,
            3 => Kind::Report,
            4 => Kind::StatsRequest,
            5 => Kind::Stats,
            6 => Kind::Error,
            _ => return None,
        })
    }
}

/// What the relay did with a `Notify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckStatus {
    /// In the journal: the relay owns it now.
    Stored,
    /// The relay already had this id (a resend after a reconnect).
    Duplicate,
    /// Refused for good (malformed item, spool full ...); the text says why.
    Refused(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Notify {
        seq: u64,
        item: Item,
    },
    Ack {
        seq: u64,
        status: AckStatus,
    },
    /// Notifications the sending process dropped before the relay saw them.
    Report {
        dropped: u64,
    },
    StatsRequest,
    /// The relay's counters, as JSON.
    Stats {
        json: Vec<u8>,
    },
    Error {
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    BadMagic,
    UnsupportedVersion(u8),
    UnknownKind(u8),
    /// The header announces more than the receiver accepts.
    TooLarge {
        len: usize,
        max: usize,
    },
    Malformed(Kind, DecodeError),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadMagic => f.write_str("not an ox-push record (bad magic)"),
            FrameError::UnsupportedVersion(v) => write!(
                f,
                "protocol version {v} is not supported (this side speaks {VERSION}: install \
                 the plugin and the relay from one build)"
            ),
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes, at most {max} accepted")
            }
            FrameError::Malformed(kind, e) => write!(f, "malformed {kind:?} frame: {e}"),
        }
    }
}

/// Reads a header: `Ok(None)` until `HEADER_LEN` bytes are there.
pub fn parse_header(buf: &[u8], max_payload: usize) -> Result<Option<(Kind, usize)>, FrameError> {
    if buf.len() < HEADER_LEN {
        // Reject garbage as early as it shows.
        let n = buf.len().min(4);
        if buf[..n] != MAGIC[..n] {
            return Err(FrameError::BadMagic);
        }
        return Ok(None);
    }
    if buf[..4] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if buf[4] != VERSION {
        return Err(FrameError::UnsupportedVersion(buf[4]));
    }
    let kind = Kind::from_u8(buf[5]).ok_or(FrameError::UnknownKind(buf[5]))?;
    let len = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    let max = max_payload.min(MAX_PAYLOAD);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(Some((kind, len)))
}

/// Decodes the first frame of `buf`: `Ok(None)` while it is incomplete,
/// otherwise the frame and the bytes it used.
pub fn decode(buf: &[u8], max_payload: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some((kind, len)) = parse_header(buf, max_payload)? else {
        return Ok(None);
    };
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let payload = &buf[HEADER_LEN..HEADER_LEN + len];
    let frame = decode_payload(kind, payload).map_err(|e| FrameError::Malformed(kind, e))?;
    Ok(Some((frame, HEADER_LEN + len)))
}

fn decode_payload(kind: Kind, payload: &[u8]) -> Result<Frame, DecodeError> {
    let mut r = Reader::new(payload);
    let frame = match kind {
        Kind::Notify => {
            let seq = r.u64("seq")?;
            let item = Item::decode_from(&mut r)?;
            Frame::Notify { seq, item }
        }
        Kind::Ack => {
            let seq = r.u64("seq")?;
            let status = match r.u8("status")? {
                0 => AckStatus::Stored,
                1 => AckStatus::Duplicate,
                2 => AckStatus::Refused(r.str16(MAX_TEXT, "reason")?.to_string()),
                s => return Err(DecodeError(format!("status: unknown value {s}"))),
            };
            Frame::Ack { seq, status }
        }
        Kind::Report => Frame::Report {
            dropped: r.u64("dropped")?,
        },
        Kind::StatsRequest => Frame::StatsRequest,
        Kind::Stats => Frame::Stats {
            json: r.rest().to_vec(),
        },
        Kind::Error => Frame::Error {
            message: r.str16(MAX_TEXT, "message")?.to_string(),
        },
    };
    r.end("frame")?;
    Ok(frame)
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Frame {
    pub fn kind(&self) -> Kind {
        match self {
            Frame::Notify { .. } => Kind::Notify,
            Frame::Ack { .. } => Kind::Ack,
            Frame::Report { .. } => Kind::Report,
            Frame::StatsRequest => Kind::StatsRequest,
            Frame::Stats { .. } => Kind::Stats,
            Frame::Error { .. } => Kind::Error,
        }
    }

    /// Appends the whole frame to `out`; on error nothing is appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind() as u8);
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let r = match self {
            Frame::Notify { seq, item } => {
                out.extend_from_slice(&seq.to_be_bytes());
                item.encode(out)
            }
            Frame::Ack { seq, status } => {
                out.extend_from_slice(&seq.to_be_bytes());
                match status {
                    AckStatus::Stored => out.push(0),
                    AckStatus::Duplicate => out.push(1),
                    AckStatus::Refused(why) => {
                        out.push(2);
                        put_str16(out, clip(why, MAX_TEXT));
                    }
                }
                Ok(())
            }
            Frame::Report { dropped } => {
                out.extend_from_slice(&dropped.to_be_bytes());
                Ok(())
            }
            Frame::StatsRequest => Ok(()),
            Frame::Stats { json } => {
                out.extend_from_slice(json);
                Ok(())
            }
            Frame::Error { message } => {
                put_str16(out, clip(message, MAX_TEXT));
                Ok(())
            }
        };
        let len = out.len() - start - HEADER_LEN;
        let r = r.and_then(|()| {
            if len > MAX_PAYLOAD {
                Err(format!("frame of {len} bytes, at most {MAX_PAYLOAD}"))
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => {
                out[start + 8..start + 12].copy_from_slice(&(len as u32).to_be_bytes());
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests;

/// Asks the relay at `socket` for its counters (what `ox-push-stats` does):
/// the JSON document of its `Stats` answer. Blocking, bounded by `timeout`.
pub fn request_stats(
    socket: &std::path::Path,
    timeout: std::time::Duration,
) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(&Frame::StatsRequest.to_bytes().map_err(Error::other)?)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match decode(&buf, MAX_PAYLOAD) {
            Ok(Some((Frame::Stats { json }, _))) => return Ok(json),
            Ok(Some((Frame::Error { message }, _))) => return Err(Error::other(message)),
            Ok(Some((other, _))) => {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("unexpected {:?} answer", other.kind()),
                ))
            }
            Ok(None) => {}
            Err(e) => return Err(Error::new(ErrorKind::InvalidData, e.to_string())),
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "the relay closed the connection",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
