//! The ceiling for `benches/ingest.py`: a bare IMAP fetch of every message in a folder, in the
//! same batches intake uses (100 UIDs per `UID FETCH BODY.PEEK[]`), over one plain connection,
//! with the bytes thrown away. Prints `messages bytes seconds`.
//!
//! Usage: cargo bench --bench imap_ceiling -- HOST PORT USER PASSWORD [FOLDER]

use std::time::Instant;

use futures_util::TryStreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arguments: Vec<String> = std::env::args()
        .skip(1)
        .filter(|argument| argument != "--bench")
        .collect();
    let [host, port, user, password, rest @ ..] = arguments.as_slice() else {
        return Err("usage: imap_ceiling HOST PORT USER PASSWORD [FOLDER]".into());
    };
    let folder = rest.first().map(String::as_str).unwrap_or("INBOX");
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(format!("{host}:{port}")).await?;
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await?;
    let mut session = client
        .login(user, password)
        .await
        .map_err(|(error, _)| error)?;
    session.select(folder).await?;
    let mut uids: Vec<u32> = session.uid_search("ALL").await?.into_iter().collect();
    uids.sort_unstable();
    let mut messages = 0u64;
    let mut bytes = 0u64;
    for chunk in uids.chunks(100) {
        let set: Vec<String> = chunk.iter().map(u32::to_string).collect();
        let stream = session
            .uid_fetch(set.join(","), "(UID BODY.PEEK[])")
            .await?;
        let fetches: Vec<_> = stream.try_collect().await?;
        for fetch in &fetches {
            if let Some(body) = fetch.body() {
                messages += 1;
                bytes += body.len() as u64;
            }
        }
    }
    session.logout().await?;
    println!("{messages} {bytes} {:.3}", started.elapsed().as_secs_f64());
    Ok(())
}
