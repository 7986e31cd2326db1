//! Reading a mailbox's folders for reconciling: read-only (`EXAMINE`, `BODY.PEEK`), every
//! step under the server timeout, large folders read in bounded chunks.

use crate::oauth::Credentials;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use futures::TryStreamExt;

use crate::config::MailboxConfig;
use crate::digest::sha256_hex;
use crate::source::imap::{self, ImapSession};

/// UIDs per `UID FETCH` of headers.
const HEADER_CHUNK: usize = 500;
/// UIDs per `UID FETCH` of whole mails (each may be up to the size limit).
const BODY_CHUNK: usize = 20;

/// What identifies a mail in a folder: its Message-ID, or without one the hash of its
/// bytes (what the journal keys it by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub message_id: Option<String>,
    /// Only for mails without a Message-ID.
    pub sha256: Option<String>,
}

/// A read-only connection to one mailbox's server.
pub struct Reader {
    session: ImapSession,
    timeout: Duration,
}

async fn step<T, E: Into<anyhow::Error>>(
    t: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(t, fut).await {
        Ok(r) => r.map_err(|e| e.into().context(what.to_string())),
        Err(_) => bail!("{what}: no answer within {} s (timeout_secs)", t.as_secs()),
    }
}

impl Reader {
    pub async fn open(mb: &MailboxConfig, credentials: &Credentials) -> anyhow::Result<Reader> {
        let connected = imap::connect(mb, credentials).await?;
        Ok(Reader { session: connected.session, timeout: mb.server.timeout })
    }

    /// Opens `folder` read-only; its UIDVALIDITY, or `None` when it does not exist.
    pub async fn examine(&mut self, folder: &str) -> anyhow::Result<Option<u32>> {
        match tokio::time::timeout(self.timeout, self.session.examine(folder)).await {
            Err(_) => bail!("EXAMINE {folder:?}: no answer within {} s", self.timeout.as_secs()),
            Ok(Err(async_imap::error::Error::No(_))) => Ok(None),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("EXAMINE {folder:?}"))),
            Ok(Ok(selected)) => Ok(Some(selected.uid_validity.unwrap_or(0))),
        }
    }

    /// `UID SEARCH <query>` in the open folder, ascending.
    pub async fn search(&mut self, query: &str) -> anyhow::Result<Vec<u32>> {
        let found = step(self.timeout, "UID SEARCH", self.session.uid_search(query)).await?;
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The identity of each of `uids` (mails that vanished meanwhile are left out);
    /// `seen` is told how many were read, chunk by chunk.
    pub async fn identities(&mut self, uids: &[u32], seen: &mut dyn FnMut(u64)) -> anyhow::Result<Vec<Identity>> {
        let mut out = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(HEADER_CHUNK) {
            let items = "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])";
            let headers = self.fetch(chunk, items, |f| f.header().or_else(|| f.body()).map(<[u8]>::to_vec)).await?;
            let mut without_id = Vec::new();
            for (uid, header) in headers {
                match message_id(&header) {
                    Some(id) => out.push(Identity { uid, message_id: Some(id), sha256: None }),
                    None => without_id.push(uid),
                }
            }
            for (uid, raw, _) in self.bodies(&without_id).await? {
                out.push(Identity { uid, message_id: None, sha256: Some(sha256_hex(&raw)) });
            }
            seen(chunk.len() as u64);
        }
        out.sort_by_key(|i| i.uid);
        Ok(out)
    }

    /// The whole mails of `uids`, with when the server received each.
    pub async fn bodies(&mut self, uids: &[u32]) -> anyhow::Result<Vec<(u32, Vec<u8>, Option<SystemTime>)>> {
        let mut out = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(BODY_CHUNK) {
            let mails = self
                .fetch(chunk, "(UID INTERNALDATE BODY.PEEK[])", |f| {
                    f.body().map(|b| (b.to_vec(), f.internal_date().map(SystemTime::from)))
                })
                .await?;
            out.extend(mails.into_iter().map(|(uid, (raw, at))| (uid, raw, at)));
        }
        Ok(out)
    }

    async fn fetch<T>(
        &mut self,
        uids: &[u32],
        items: &str,
        mut read: impl FnMut(&async_imap::types::Fetch) -> Option<T>,
    ) -> anyhow::Result<Vec<(u32, T)>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.timeout;
        let mut stream = step(t, "UID FETCH", self.session.uid_fetch(imap::uid_set(uids), items)).await?;
        let mut out = Vec::with_capacity(uids.len());
        while let Some(fetch) = step(t, "UID FETCH", stream.try_next()).await? {
            if let Some(uid) = fetch.uid.filter(|u| uids.binary_search(u).is_ok()) {
                if let Some(value) = read(&fetch) {
                    out.push((uid, value));
                }
            }
        }
        drop(stream);
        out.sort_by_key(|(uid, _)| *uid);
        out.dedup_by_key(|(uid, _)| *uid);
        Ok(out)
    }

    /// Logs out, not waiting long.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.session.logout()).await.context("logout");
    }
}

/// The Message-ID of a header block, as the journal records it (parsed the same way).
fn message_id(header: &[u8]) -> Option<String> {
    let mut block = header.to_vec();
    block.extend_from_slice(b"\r\n\r\n");
    crate::parse::parse_headers(&block).and_then(|m| m.message_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_read_as_the_journal_records_them() {
        assert_eq!(message_id(b"Message-ID: <abc@host.example>\r\n").as_deref(), Some("abc@host.example"));
        assert_eq!(message_id(b"Message-Id:\r\n <folded@x>\r\n").as_deref(), Some("folded@x"));
        assert_eq!(message_id(b""), None);
    }
}
