//! Client references (`C-48213`): short, unique, human-readable, never reused.
//!
//! Every reference ever issued is a row of `client_references`; triggers on `clients` record
//! new ones and refuse one issued before, whoever writes the row (intake, the CLI, a viewer).
//! Here a new one is drawn at random, five digits while that is easy, more when crowded.

use rand::Rng;

use crate::on_tx;

use super::{StoreError, Tx};

/// Random draws per length before a longer reference is tried.
const TRIES_PER_LENGTH: usize = 8;

/// A reference no client has ever had, for a client inserted in this transaction.
pub async fn new_reference(tx: &mut Tx) -> Result<String, StoreError> {
    for reference in draws() {
        if !issued(tx, &reference).await? {
            return Ok(reference);
        }
    }
    Err(exhausted())
}

/// Random references to try in turn: five digits while that is easy, more when crowded.
pub fn draws() -> impl Iterator<Item = String> {
    (5..=9u32).flat_map(|digits| {
        (0..TRIES_PER_LENGTH).map(move |_| {
            let low = 10u64.pow(digits - 1);
            format!("C-{}", rand::rng().random_range(low..low * 10))
        })
    })
}

/// The error when every draw was taken.
pub fn exhausted() -> StoreError {
    StoreError::Failed("no free client reference could be drawn".to_string())
}

/// Was this reference ever issued (to anyone, even a client since deleted)?
pub async fn issued(tx: &mut Tx, reference: &str) -> Result<bool, StoreError> {
    Ok(on_tx!(tx, conn => {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM client_references WHERE reference = $1)",
        )
        .bind(reference)
        .fetch_one(&mut *conn)
        .await?
    }))
}

/// A reference as staff may write it: letters, digits and dashes, 2 to 32 characters,
/// stored upper-case. `None` for anything else.
pub fn normalise(text: &str) -> Option<String> {
    let text = text.trim().to_uppercase();
    let shaped = (2..=32).contains(&text.len())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    shaped.then_some(text)
}

/// Whether a command-line argument names a client by reference rather than by address.
pub fn looks_like_reference(text: &str) -> bool {
    !text.contains('@') && normalise(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_short_upper_case_and_plain() {
        assert_eq!(normalise(" c-48213 ").as_deref(), Some("C-48213"));
        assert_eq!(normalise("ACME-7").as_deref(), Some("ACME-7"));
        for bad in [
            "",
            "C",
            "-C1",
            "C1-",
            "C 1",
            "C_1",
            "ada@contoso.com",
            &"9".repeat(33),
        ] {
            assert_eq!(normalise(bad), None, "{bad:?}");
        }
        assert!(looks_like_reference("C-48213"));
        assert!(!looks_like_reference("ada@contoso.com"));
    }
}
