//! The command-line tools, apart from the service: `init-demo` and the fakes' configuration
//! ([`demo`]), the OX Mail app stand-in ([`device`]), the benchmark's load generator
//! ([`loadgen`]) and the operator commands `listpushusers` / `pushusers` ([`pushusers`]).

pub mod demo;
pub mod device;
pub mod loadgen;
pub mod pushusers;
