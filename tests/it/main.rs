//! Integration tests: one binary, the real `intake`, real databases, a real Dovecot.

// Defined before the modules so that every one of them can use it.
/// Generates `NAME_on_sqlite` and `NAME_on_postgres` from one async body taking a `Backend`.
macro_rules! on_both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn on_sqlite() {
                ($body)(Backend::Sqlite).await;
            }
            #[tokio::test]
            async fn on_postgres() {
                ($body)(Backend::Postgres).await;
            }
        }
    };
}

mod client_cli;
mod client_records;
mod corpus;
mod daemon;
mod department_access;
mod dovecot;
mod harness;
mod incident_status;
mod ingest_cli;
mod monitoring;
mod org_rules;
mod outbound;
mod smtp;
mod staff_views;
mod systemd_unit;
mod tidy;
