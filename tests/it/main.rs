//! Integration tests: one binary, the real `intake`, real databases.

mod corpus;
mod harness;
