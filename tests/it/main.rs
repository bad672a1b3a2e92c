//! Integration tests: one binary, the real `intake`, real databases.

mod corpus;
mod harness;
mod ingest_cli;
mod tidy;
