//! Cursors: paging through one search while the index changes underneath.
//!
//! `offset` paging re-runs the search on the index as it is now, so a document added or deleted
//! between two pages shifts everything after it: a hit is shown twice or never. A cursor pins
//! the index snapshot the search started on (an [`Index`] clone answers from its commit whatever
//! the writer does later) and serves every page from it, so the pages of one cursor are the
//! pages of one committed state.
//!
//! What the pin costs: the snapshot's vector segments stay in memory (shared with the live view
//! while the writer has not replaced them) and its lexical segment files stay mapped. Garbage
//! collection removing the files of a replaced generation does not disturb it: on Unix a mapped
//! file stays readable after it is unlinked, and the vectors were read into memory at open. So
//! a cursor idle for [`CURSOR_IDLE`] is dropped (the next page is then a clear error), and at
//! most [`MAX_OPEN_CURSORS`] are open at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ibex_embedder::Embedder;
use ibex_indexer::Index;

use crate::error::{Result, SearchError};
use crate::{search, SearchRequest, SearchResults, TotalRelation, MAX_TOP_K};

/// How long a cursor may go unused before it is dropped.
pub const CURSOR_IDLE: Duration = Duration::from_secs(5 * 60);

/// Most cursors open at once.
pub const MAX_OPEN_CURSORS: usize = 1_000;

/// The open cursors of a server (or any long-lived owner of indexes).
pub struct Cursors {
    open: Mutex<HashMap<String, Pinned>>,
    idle: Duration,
    max_open: usize,
}

/// One open cursor.
struct Pinned {
    /// What the cursor belongs to (an index name): a cursor is only valid there.
    scope: String,
    /// The snapshot every page comes from.
    index: Arc<Index>,
    /// The search, with the offset of the next page.
    request: SearchRequest,
    last_used: Instant,
}

impl Default for Cursors {
    fn default() -> Self {
        Cursors::new(CURSOR_IDLE, MAX_OPEN_CURSORS)
    }
}

impl Cursors {
    /// A store whose cursors expire after `idle` unused, holding at most `max_open`.
    pub fn new(idle: Duration, max_open: usize) -> Self {
        Cursors {
            open: Mutex::new(HashMap::new()),
            idle,
            max_open,
        }
    }

    /// Runs the first page of `request` on `index` (a snapshot, which the cursor keeps) and
    /// opens a cursor for the next page: `None` when this page was the last.
    pub fn start(
        &self,
        scope: &str,
        index: impl Into<Arc<Index>>,
        embedder: Option<&dyn Embedder>,
        request: SearchRequest,
    ) -> Result<(SearchResults, Option<String>)> {
        let index = index.into();
        // Refuse before searching, so a client over the limit learns it cheaply.
        self.prune_and_check_room()?;
        let results = search(&index, embedder, &request)?;
        let cursor = match next_offset(&request, &results) {
            Some(offset) => {
                let mut request = request;
                request.offset = offset;
                let mut open = self.lock();
                if open.len() >= self.max_open {
                    return Err(SearchError::TooManyCursors(self.max_open));
                }
                let id = new_cursor_id();
                open.insert(
                    id.clone(),
                    Pinned {
                        scope: scope.to_string(),
                        index,
                        request,
                        last_used: Instant::now(),
                    },
                );
                Some(id)
            }
            None => None,
        };
        Ok((results, cursor))
    }

    /// The next page of cursor `id`, from the snapshot it pinned, and the cursor for the page
    /// after (the same id; `None` when this page was the last, and the cursor is closed).
    /// Concurrent calls with one cursor get successive pages.
    pub fn next(
        &self,
        scope: &str,
        id: &str,
        embedder: Option<&dyn Embedder>,
    ) -> Result<(SearchResults, Option<String>)> {
        let (index, request) = {
            let mut open = self.lock();
            self.prune(&mut open);
            let pinned = open
                .get_mut(id)
                .filter(|p| p.scope == scope)
                .ok_or_else(|| SearchError::CursorNotFound(self.idle.as_secs()))?;
            pinned.last_used = Instant::now();
            let request = pinned.request.clone();
            // The page after this one goes to the next caller, even while this one searches.
            pinned.request.offset = request.offset + request.top_k;
            (pinned.index.clone(), request)
        };
        let results = search(&index, embedder, &request)?;
        let more = next_offset(&request, &results).is_some();
        let mut open = self.lock();
        if !more {
            open.remove(id);
        }
        Ok((results, more.then(|| id.to_string())))
    }

    /// Closes cursor `id` (whether it was open).
    pub fn close(&self, scope: &str, id: &str) -> bool {
        let mut open = self.lock();
        if open.get(id).is_some_and(|p| p.scope == scope) {
            open.remove(id);
            return true;
        }
        false
    }

    /// Cursors open now (expired ones not counted).
    pub fn len(&self) -> usize {
        let mut open = self.lock();
        self.prune(&mut open);
        open.len()
    }

    /// Whether no cursor is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn prune_and_check_room(&self) -> Result<()> {
        let mut open = self.lock();
        self.prune(&mut open);
        if open.len() >= self.max_open {
            return Err(SearchError::TooManyCursors(self.max_open));
        }
        Ok(())
    }

    fn prune(&self, open: &mut HashMap<String, Pinned>) {
        open.retain(|_, p| p.last_used.elapsed() < self.idle);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pinned>> {
        // The map holds no invariant a panicking holder could break halfway.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The offset of the page after `results`, if there is one.
fn next_offset(request: &SearchRequest, results: &SearchResults) -> Option<usize> {
    let returned = match &results.groups {
        Some(groups) => groups.len(),
        None => results.hits.len(),
    };
    let next = request.offset + request.top_k;
    let full = returned == request.top_k;
    let beyond_total = request.group_by.is_none()
        && results.total.relation == TotalRelation::Eq
        && next >= results.total.value;
    (full && !beyond_total && next + request.top_k <= MAX_TOP_K).then_some(next)
}

/// 128 random bits in hex: unguessable, so one client cannot read another's pages.
fn new_cursor_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
