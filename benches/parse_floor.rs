//! The parsing floor for `benches/ingest.py`: how long one thread takes to parse every message
//! of the mix, with no IMAP and no database. Two passes over the same bytes:
//! - `mail-parser`: `MessageParser::parse` alone, every part decoded, nothing kept. Any ingest
//!   built on mail-parser does at least this much work per message.
//! - `intake`: `Inbound::parse`, what intake's parser threads run for each message (mail-parser,
//!   SHA-256 of the raw bytes and of each attachment, the fields intake keeps).
//!
//! Each pass runs three times; the fastest is printed, as `mail_parser_seconds intake_seconds`.
//! The input file holds the messages one after another, each after its length as a
//! little-endian u32.
//!
//! Usage: cargo bench --bench parse_floor -- MESSAGES_FILE

use std::hint::black_box;
use std::time::Instant;

use intake::message::Inbound;
use mail_parser::MessageParser;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .skip(1)
        .find(|argument| argument != "--bench")
        .ok_or("usage: parse_floor MESSAGES_FILE")?;
    let bytes = std::fs::read(&path)?;
    let messages = split(&bytes)?;
    let mail_parser = fastest(|| {
        let parser = MessageParser::default();
        for raw in &messages {
            black_box(parser.parse(*raw).map(|message| message.parts.len()));
        }
    });
    let intake = fastest(|| {
        for raw in &messages {
            black_box(Inbound::parse(raw, u64::MAX));
        }
    });
    println!("{mail_parser:.3} {intake:.3}");
    Ok(())
}

/// The least wall time of three runs of `pass` (one thread, CPU-bound: its CPU time too).
fn fastest(pass: impl Fn()) -> f64 {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            pass();
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn split(mut bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut messages = Vec::new();
    while !bytes.is_empty() {
        let (length, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or("the messages file ends inside a length")?;
        let length = u32::from_le_bytes(*length) as usize;
        if rest.len() < length {
            return Err("the messages file ends inside a message".into());
        }
        let (message, rest) = rest.split_at(length);
        messages.push(message);
        bytes = rest;
    }
    Ok(messages)
}
