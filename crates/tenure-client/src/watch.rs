//! A resumable watch of the audit stream: when the stream breaks (a node
//! restarts, the watcher fell behind), it is reopened from the event after
//! the last one delivered, and a gap the node reports is passed on.

use std::time::Duration;

use tenure_proto::v1;

use crate::client::{Client, WatchEvent, watch_event};
use crate::transport::Error;

/// What to watch, and from where.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    /// Only events on keys starting with this (empty: every key).
    pub prefix: String,
    /// 0: only events from now on. Otherwise, first the retained events with
    /// a sequence number of at least this, then new ones.
    pub from_sequence: u64,
    /// Every tenant's events (the admin role).
    pub all_tenants: bool,
}

/// An open watch; [`Watch::next`] gives its events in sequence order.
pub struct Watch {
    client: Client,
    options: WatchOptions,
    stream: Option<tonic::Streaming<v1::WatchEvent>>,
    /// The last sequence number delivered (0: none yet).
    last: u64,
}

/// How often a broken watch is reopened before `next` reports the failure.
const REOPEN_TRIES: u32 = 5;

impl Watch {
    pub(crate) async fn open(client: Client, options: WatchOptions) -> Result<Watch, Error> {
        let stream = client.open_watch(&options, options.from_sequence).await?;
        Ok(Watch {
            client,
            options,
            stream: Some(stream),
            last: 0,
        })
    }

    /// The last sequence number delivered: resume from the one after it.
    pub fn last_sequence(&self) -> u64 {
        self.last
    }

    /// The next event. A broken or ended stream (a node stopped, the
    /// watcher fell behind) is reopened, on any node, from the event after
    /// the last one delivered (or from the requested start, when none was);
    /// after five failed reopenings in a row it answers UNAVAILABLE. `None`
    /// never comes from the cluster: a watch follows events until dropped.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, Error>> {
        let mut failures = 0;
        loop {
            if let Some(stream) = &mut self.stream {
                match stream.message().await {
                    Ok(Some(e)) => {
                        if e.sequence <= self.last {
                            continue;
                        }
                        self.last = e.sequence;
                        return Some(watch_event(&e));
                    }
                    // A node ends a watch only when it stops: resume
                    // elsewhere, as after a broken stream.
                    Ok(None) => {
                        tracing::debug!(last = self.last, "watch ended by the node; resuming");
                        self.stream = None;
                    }
                    Err(status) => {
                        let error = Error::from_status(&status);
                        if !error.is_retryable() {
                            return Some(Err(error));
                        }
                        tracing::debug!(error = %error, last = self.last, "watch broke; resuming");
                        self.stream = None;
                    }
                }
            }
            failures += 1;
            if failures > REOPEN_TRIES {
                return Some(Err(Error::Unavailable(
                    "the watch could not be resumed".into(),
                )));
            }
            let from = if self.last == 0 {
                self.options.from_sequence
            } else {
                self.last + 1
            };
            match self.client.open_watch(&self.options, from).await {
                Ok(s) => self.stream = Some(s),
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
