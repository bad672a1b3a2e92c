//! intake: IMAP mailboxes in, helpdesk incidents out. ARCHITECTURE.md maps the modules and the
//! path a message takes through them.

pub mod cli;
pub mod config;
pub mod cpu;
pub mod daemon;
pub mod imap;
pub mod ingest;
pub mod memory;
pub mod message;
pub mod monitor;
pub mod outbound;
pub mod pipeline;
pub mod run_lock;
pub mod store;
