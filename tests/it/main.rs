//! Integration tests: one binary, the real `intake`, real databases, a real Dovecot.

mod corpus;
mod daemon;
mod dovecot;
mod harness;
mod ingest_cli;
mod outbound;
mod smtp;
mod staff_views;
mod systemd_unit;
mod tidy;
