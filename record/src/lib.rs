//! The one definition of what the ox_push plugin and the ox-push-relay service
//! exchange, and of what the relay keeps in its spool.
//!
//! A mail process (the plugin) hands each notification to the relay as one
//! framed, versioned [`frame`] on a unix stream socket; the relay answers each
//! with an acknowledgement once the notification is in its journal. The relay
//! stores the same [`item::Item`] encoding in its journal. Both sides decode
//! everything as if it came from an attacker: every length is checked against
//! the bytes that are there and against a fixed bound before it is used, and
//! nothing is allocated from a length that was not checked.
//!
//! [`url`] is the endpoint URL as Dovecot parses it; the plugin uses it to
//! validate `url=` at config time, the relay to send.

pub mod frame;
pub mod item;
pub mod units;
pub mod url;
mod wire;

pub use frame::{Frame, FrameError, Kind};
pub use item::{Item, Policy, Target};
pub use url::{mask_url, EndpointUrl};
