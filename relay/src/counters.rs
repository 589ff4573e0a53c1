//! The relay's counters (plain numbers, kept under the state's lock), as
//! [`crate::metrics`] shows them.

/// Per endpoint, since the relay started.
#[derive(Default, Clone, Debug)]
pub struct EndpointCounters {
    /// Taken from mail processes.
    pub queued: u64,
    pub sent: u64,
    /// Failed attempts that were retried.
    pub retried: u64,
    pub dropped_age: u64,
    pub dropped_size: u64,
    /// Refused by the middleware (3xx, 4xx other than 408/429): not retried.
    pub refused: u64,
}

/// For the relay as a whole.
#[derive(Default, Clone, Debug)]
pub struct Counters {
    /// Notifications read back from the spool at start.
    pub replayed: u64,
    /// Resent by a mail process after a reconnect, already known.
    pub duplicates: u64,
    /// Records refused (malformed item, invalid URL).
    pub records_refused: u64,
    /// Connections closed for breaking the protocol.
    pub protocol_errors: u64,
    /// Dropped by mail processes before the relay saw them (reported).
    pub dropped_in_mail_processes: u64,
    pub journal_errors: u64,
}
